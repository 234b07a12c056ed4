package broker

import (
	"context"
	"log/slog"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
)

// redactPackets wraps the handler that mochi logs to. mochi puts whole packets (and
// wills) in some log records, payloads and CONNECT passwords included; the wrapper
// replaces each with a summary: packet type, client, topic, packet id, QoS and payload
// size.
func redactPackets(h slog.Handler) slog.Handler { return redactor{h} }

type redactor struct{ slog.Handler }

func (r redactor) Handle(ctx context.Context, rec slog.Record) error {
	out := slog.NewRecord(rec.Time, rec.Level, rec.Message, rec.PC)
	rec.Attrs(func(a slog.Attr) bool {
		out.AddAttrs(redact(a))
		return true
	})
	return r.Handler.Handle(ctx, out)
}

func (r redactor) WithAttrs(attrs []slog.Attr) slog.Handler {
	red := make([]slog.Attr, len(attrs))
	for i, a := range attrs {
		red[i] = redact(a)
	}
	return redactor{r.Handler.WithAttrs(red)}
}

func (r redactor) WithGroup(name string) slog.Handler { return redactor{r.Handler.WithGroup(name)} }

func redact(a slog.Attr) slog.Attr {
	v := a.Value.Resolve()
	if v.Kind() == slog.KindGroup {
		g := v.Group()
		red := make([]any, len(g))
		for i, x := range g {
			red[i] = redact(x)
		}
		return slog.Group(a.Key, red...)
	}
	if v.Kind() != slog.KindAny {
		return slog.Attr{Key: a.Key, Value: v}
	}
	switch x := v.Any().(type) {
	case packets.Packet:
		return packetSummary(a.Key, &x)
	case *packets.Packet:
		if x != nil {
			return packetSummary(a.Key, x)
		}
	case mqtt.Will:
		return slog.Group(a.Key, "topic", x.TopicName, "qos", x.Qos, "bytes", len(x.Payload))
	case *mqtt.Will:
		if x != nil {
			return slog.Group(a.Key, "topic", x.TopicName, "qos", x.Qos, "bytes", len(x.Payload))
		}
	}
	return slog.Attr{Key: a.Key, Value: v}
}

func packetSummary(key string, pk *packets.Packet) slog.Attr {
	return slog.Group(key,
		"type", packets.PacketNames[pk.FixedHeader.Type],
		"origin", pk.Origin,
		"topic", pk.TopicName,
		"id", pk.PacketID,
		"qos", pk.FixedHeader.Qos,
		"bytes", len(pk.Payload))
}
