// Package bus defines how Atrium's services exchange events: subjects, the message
// and the Bus interface. Adapters: membus (in-process, the embedded default) and
// amqpbus (RabbitMQ, at scale).
package bus

import (
	"context"
	"strings"
)

// Subjects (RabbitMQ routing keys) of the events Atrium's services exchange.
const (
	SensorDataReceived  = "sensor.data.received"
	RoomMetricsUpdated  = "room.metrics.updated"
	AlertRaised         = "alert.raised"
	AlertResolved       = "alert.resolved"
	SensorStatusChanged = "sensor.status.changed"
)

// Message is one event on the bus. ID is unique per published message and stays the
// same across redeliveries, so consumers can be idempotent.
type Message struct {
	ID      string
	Subject string
	Body    []byte
}

// Handler handles one message. Returning an error asks for redelivery; a message
// that keeps failing is dead-lettered. Delivery is at least once.
type Handler func(ctx context.Context, m Message) error

// Bus publishes events and delivers them to named, durable consumer queues. Every
// queue gets each matching message once; consumers sharing a queue share its load.
type Bus interface {
	// Publish returns once the bus has taken responsibility for the message
	// (for RabbitMQ: the publisher confirm).
	Publish(ctx context.Context, subject string, body []byte) error
	// Subscribe binds queue to the subject patterns (AMQP topic syntax: * one word,
	// # zero or more) and delivers to h until ctx ends or the bus closes.
	Subscribe(ctx context.Context, queue string, patterns []string, h Handler) error
	// Ping reports whether the bus is reachable.
	Ping(ctx context.Context) error
	Close() error
}

// Match reports whether subject matches an AMQP topic pattern.
func Match(pattern, subject string) bool {
	return match(strings.Split(pattern, "."), strings.Split(subject, "."))
}

func match(p, s []string) bool {
	for len(p) > 0 {
		switch p[0] {
		case "#":
			if len(p) == 1 {
				return true
			}
			for i := 0; i <= len(s); i++ {
				if match(p[1:], s[i:]) {
					return true
				}
			}
			return false
		case "*":
			if len(s) == 0 {
				return false
			}
		default:
			if len(s) == 0 || s[0] != p[0] {
				return false
			}
		}
		p, s = p[1:], s[1:]
	}
	return len(s) == 0
}
