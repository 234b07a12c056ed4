package broker

import "github.com/prometheus/client_golang/prometheus"

// collector exposes Stats as Prometheus metrics, read at scrape time.
type collector struct {
	b     *Broker
	descs []metricDesc
}

type metricDesc struct {
	desc  *prometheus.Desc
	kind  prometheus.ValueType
	value func(Stats) int64
}

var _ prometheus.Collector = (*collector)(nil)

// Collector returns a Prometheus collector of the broker's Stats, named atrium_broker_*.
// Register it once, e.g. registry.MustRegister(b.Collector()).
func (b *Broker) Collector() prometheus.Collector {
	d := func(name, help string, kind prometheus.ValueType, value func(Stats) int64) metricDesc {
		return metricDesc{prometheus.NewDesc("atrium_broker_"+name, help, nil, nil), kind, value}
	}
	g, c := prometheus.GaugeValue, prometheus.CounterValue
	return &collector{b: b, descs: []metricDesc{
		d("clients_connected", "MQTT clients connected now.", g, func(s Stats) int64 { return s.ClientsConnected }),
		d("subscriptions", "Subscriptions held now.", g, func(s Stats) int64 { return s.Subscriptions }),
		d("retained_messages", "Retained messages held now.", g, func(s Stats) int64 { return s.Retained }),
		d("inflight_messages", "QoS 1/2 messages awaiting acknowledgement now.", g, func(s Stats) int64 { return s.Inflight }),
		d("messages_received_total", "PUBLISH packets received.", c, func(s Stats) int64 { return s.MessagesReceived }),
		d("messages_expired_total", "Messages whose expiry passed while the agent stored them, delivered to nobody.", c, func(s Stats) int64 { return s.MessagesExpired }),
		d("messages_sent_total", "PUBLISH packets sent.", c, func(s Stats) int64 { return s.MessagesSent }),
		d("messages_dropped_total", "Messages to slow subscribers dropped because their pending writes were full.", c, func(s Stats) int64 { return s.MessagesDropped }),
		d("inflight_dropped_total", "QoS 1/2 messages dropped because a client's inflight quota was full or they expired.", c, func(s Stats) int64 { return s.InflightDropped }),
		d("received_bytes_total", "Bytes received from clients.", c, func(s Stats) int64 { return s.BytesReceived }),
		d("sent_bytes_total", "Bytes sent to clients.", c, func(s Stats) int64 { return s.BytesSent }),
		d("auth_failures_total", "Connections refused for bad or missing credentials.", c, func(s Stats) int64 { return s.AuthFailures }),
		d("logins_throttled_total", "Connections refused as busy by the failed-login throttle.", c, func(s Stats) int64 { return s.LoginsThrottled }),
		d("client_id_refused_total", "Connections refused because the client id is another identity's session.", c, func(s Stats) int64 { return s.ClientIDRefused }),
		d("acl_denied_total", "Publishes, subscriptions, wills and deliveries refused by the topic ACL.", c, func(s Stats) int64 { return s.ACLDenied }),
		d("retained_refused_total", "Retained messages delivered but not retained because their publisher's retained allowance was full.", c, func(s Stats) int64 { return s.RetainedRefused }),
		d("sessions_filtered_total", "Resumed sessions that lost subscriptions or messages the topic ACL no longer allows.", c, func(s Stats) int64 { return s.SessionsFiltered }),
		d("connections_rejected_total", "Connections refused because the broker was full.", c, func(s Stats) int64 { return s.ConnectionsRejected }),
	}}
}

func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	for _, m := range c.descs {
		ch <- m.desc
	}
}

func (c *collector) Collect(ch chan<- prometheus.Metric) {
	s := c.b.Stats()
	for _, m := range c.descs {
		ch <- prometheus.MustNewConstMetric(m.desc, m.kind, float64(m.value(s)))
	}
}
