package agent

import (
	"github.com/prometheus/client_golang/prometheus"
)

// Every reading a device publishes ends up stored in the cloud, or in a place that
// is counted and can be listed:
//
//   - a dead letter with its reason (`atrium-agent spool dead-letters`,
//     atrium_agent_dead_lettered_total): a message nothing could be read from, a
//     refused field, record or plain number (hook.go), a reading the cloud rejected
//     in an answer that took its batch (forward.SpoolQueue), a batch the cloud refused or whose
//     answers never matched (forward);
//   - a refused PUBACK, counted in atrium_agent_messages_refused_total: the spool
//     could not take the message (full under reject-new, or failing), so the device
//     still has it;
//   - atrium_agent_dropped_total: readings a full drop-oldest spool dropped, the
//     policy's choice; atrium_agent_dead_letters_evicted_total: dead letters evicted
//     to stay within their allowance.
//
// Fields left out on purpose (non-numeric extras of a JSON object) are not readings;
// they are counted per device in /devices and atrium_agent_ignored_fields_total.

// leftOutMetrics count what ingest left out on purpose or could not store.
func (a *Agent) leftOutMetrics() []prometheus.Collector {
	return []prometheus.Collector{
		ignoredCollector{d: &a.devices, desc: prometheus.NewDesc("atrium_agent_ignored_fields_total",
			"Fields of JSON objects left out because they are neither numbers nor readings (firmware versions, flags, null), by device; "+
				"past the first 1000 devices with such fields, the others share device=\"_other\".",
			[]string{"device"}, nil)},
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "atrium_agent_cloud_rejected_total",
			Help: "Readings the cloud rejected in answers that took their batch; each is kept as a dead letter with the cloud's reason.",
		}, func() float64 { return float64(a.fwd.Stats().Rejected) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "atrium_agent_dead_letters_evicted_total",
			Help: "Dead letters evicted (the oldest first) or not kept (larger than the allowance) to stay within the dead-letter allowance.",
		}, func() float64 { return float64(a.spool.Stats().DeadEvicted) }),
	}
}

// ignoredCollector is atrium_agent_ignored_fields_total{device}.
type ignoredCollector struct {
	d    *devices
	desc *prometheus.Desc
}

func (c ignoredCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

func (c ignoredCollector) Collect(ch chan<- prometheus.Metric) {
	for device, n := range c.d.ignoredSeries() {
		ch <- prometheus.MustNewConstMetric(c.desc, prometheus.CounterValue, float64(n), device)
	}
}
