package agent

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/atrium-iot/atrium/agent/forward"
)

// zeroAsNone maps a flag whose 0 means none (-mismatch-retries: dead-letter at the
// first mismatch; -max-retained: no limit) to a field of forward.Config or
// broker.Config, where 0 means the default and a negative value none.
func zeroAsNone(n int) int {
	if n == 0 {
		return -1
	}
	return n
}

// forwardMismatches is atrium_agent_forward_answer_mismatch_total{reason}: answers of
// the cloud that did not match the batch they answered.
func forwardMismatches(fwd *forward.Forwarder) prometheus.Collector {
	return mismatchCollector{fwd: fwd, desc: prometheus.NewDesc("atrium_agent_forward_answer_mismatch_total",
		"Cloud answers that did not match their batch, by reason: batch_id (another or no batch id), counts (accepted + duplicates + rejected is not what was sent), "+
			"rejected_index (out of range or repeated), body (not an ingest answer), conflict (422: the id is held with other readings). "+
			"The batch is sent again, then dead-lettered after -mismatch-retries.",
		[]string{"reason"}, nil)}
}

type mismatchCollector struct {
	fwd  *forward.Forwarder
	desc *prometheus.Desc
}

func (c mismatchCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

func (c mismatchCollector) Collect(ch chan<- prometheus.Metric) {
	counts := c.fwd.Stats().AnswerMismatches
	for _, r := range forward.MismatchReasons {
		ch <- prometheus.MustNewConstMetric(c.desc, prometheus.CounterValue, float64(counts[r]), r)
	}
}
