package agent

import (
	"bytes"
	"context"
	"strings"
	"sync"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/atrium-iot/atrium/agent/decode"
	"github.com/atrium-iot/atrium/agent/spool"
	"github.com/atrium-iot/atrium/broker"
)

// TopicPrefix is the root of every topic the agent ingests; other topics pass
// through the broker untouched.
const TopicPrefix = "atrium/"

// ingestHook takes every publish inside the broker, before the broker answers it:
// decoded readings are on disk (fsynced) before a QoS 1 PUBACK leaves, and what
// cannot be decoded is dead-lettered with its reason and never blocks the rest.
type ingestHook struct {
	mqtt.HookBase
	a *Agent
}

// ID implements mqtt.Hook.
func (h *ingestHook) ID() string { return "atrium-ingest" }

// Provides implements mqtt.Hook.
func (h *ingestHook) Provides(b byte) bool { return b == mqtt.OnPublish }

// OnPublish implements mqtt.Hook.
func (h *ingestHook) OnPublish(cl *mqtt.Client, pk packets.Packet) (packets.Packet, error) {
	if !strings.HasPrefix(pk.TopicName, TopicPrefix) {
		return pk, nil
	}
	a := h.a
	ctx, cancel := context.WithTimeout(context.Background(), a.cfg.AppendTimeout)
	defer cancel()
	now := a.now()
	form := topicForm(pk.TopicName, pk.Payload)
	res, err := decode.Decode(pk.TopicName, pk.Payload, a.cfg.Site, now)
	if err != nil {
		a.metrics.decoded.WithLabelValues(form, "dead_letter").Inc()
		dl := spool.DeadLetter{Topic: pk.TopicName, Payload: pk.Payload, Reason: err.Error(), At: now}
		if err := a.spool.DeadLetter(ctx, dl); err != nil {
			a.log.Error("dead letter not stored; refusing the message", "topic", pk.TopicName, "err", err)
			return pk, broker.RefusePublish(cl, pk)
		}
		a.log.Debug("payload dead-lettered", "topic", pk.TopicName, "reason", dl.Reason)
		return pk, nil
	}
	a.metrics.decoded.WithLabelValues(res.Form, "ok").Inc()
	if res.Status != nil {
		a.devices.set(*res.Status, now)
		return pk, nil
	}
	data := make([][]byte, len(res.Readings))
	for i, r := range res.Readings {
		data[i] = r.AppendJSON(make([]byte, 0, 160))
	}
	if err := a.spool.Append(ctx, data); err != nil {
		a.metrics.refused.Inc()
		a.log.Warn("readings not spooled; refusing the message", "topic", pk.TopicName, "err", err)
		return pk, broker.RefusePublish(cl, pk)
	}
	if len(res.Readings) > 0 {
		a.devices.seen(res.Readings[0].SensorID, res.Readings[0].RoomID, now)
	}
	return pk, nil
}

// topicForm guesses the payload form from the topic shape, for counting failures.
func topicForm(topic string, payload []byte) string {
	switch strings.Count(topic, "/") {
	case 2:
		if p := bytes.TrimLeft(payload, " \t\r\n"); len(p) > 0 && p[0] == '[' {
			return "senml"
		}
		return "json"
	case 3:
		if strings.HasSuffix(topic, "/status") {
			return "status"
		}
		return "plain"
	default:
		return "invalid"
	}
}

// devices is what the agent knows of its devices: their last status message and
// when it last heard from them.
type devices struct {
	mu sync.Mutex
	m  map[string]*Device
}

// Device is one device as the agent sees it.
type Device struct {
	ID       string    `json:"id"`
	RoomID   string    `json:"room_id"`
	Status   string    `json:"status,omitempty"`
	StatusAt time.Time `json:"status_at,omitzero"`
	LastSeen time.Time `json:"last_seen,omitzero"`
}

func (d *devices) get(id, room string) *Device {
	if d.m == nil {
		d.m = map[string]*Device{}
	}
	dev, ok := d.m[id]
	if !ok {
		dev = &Device{ID: id}
		d.m[id] = dev
	}
	dev.RoomID = room
	return dev
}

func (d *devices) set(s decode.Status, now time.Time) {
	d.mu.Lock()
	defer d.mu.Unlock()
	dev := d.get(s.SensorID, s.RoomID)
	dev.Status, dev.StatusAt = "offline", now
	if s.Online {
		dev.Status = "online"
	}
}

func (d *devices) seen(id, room string, now time.Time) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.get(id, room).LastSeen = now
}

func (d *devices) list() []Device {
	d.mu.Lock()
	defer d.mu.Unlock()
	out := make([]Device, 0, len(d.m))
	for _, dev := range d.m {
		out = append(out, *dev)
	}
	return out
}
