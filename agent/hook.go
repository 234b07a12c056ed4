package agent

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"sync"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/atrium-iot/atrium/agent/decode"
	"github.com/atrium-iot/atrium/agent/spool"
	"github.com/atrium-iot/atrium/broker"
	"github.com/atrium-iot/atrium/internal/reading"
)

// TopicPrefix is the root of every topic the agent ingests; other topics pass
// through the broker untouched.
const TopicPrefix = "atrium/"

// ingestHook takes every publish inside the broker, before the broker answers it:
// decoded readings are on disk (fsynced) before a QoS 1 PUBACK leaves, and what
// cannot be decoded is dead-lettered with its reason and never blocks the rest.
//
// It also takes the wills (last will messages) the broker sends for devices that
// went away without a DISCONNECT: mochi publishes those without calling OnPublish,
// and a device's will on its status topic is how the agent learns it is offline.
type ingestHook struct {
	mqtt.HookBase
	a *Agent
}

var _ mqtt.Hook = (*ingestHook)(nil)

// ID implements mqtt.Hook.
func (h *ingestHook) ID() string { return "atrium-ingest" }

// Provides implements mqtt.Hook.
func (h *ingestHook) Provides(b byte) bool { return b == mqtt.OnPublish || b == mqtt.OnWillSent }

// OnPublish implements mqtt.Hook.
func (h *ingestHook) OnPublish(cl *mqtt.Client, pk packets.Packet) (packets.Packet, error) {
	if !strings.HasPrefix(pk.TopicName, TopicPrefix) {
		return pk, nil
	}
	if !h.ingest(pk) {
		return pk, broker.RefusePublish(cl, pk)
	}
	return pk, nil
}

// OnWillSent implements mqtt.Hook. The broker does not check a will's topic against
// the device ACL, so a device's will counts only on its own topics.
func (h *ingestHook) OnWillSent(cl *mqtt.Client, pk packets.Packet) {
	if !strings.HasPrefix(pk.TopicName, TopicPrefix) {
		return
	}
	if id := broker.DeviceID(cl); id != "" {
		if _, sensor, _ := strings.Cut(strings.TrimPrefix(pk.TopicName, TopicPrefix), "/"); sensor != id && !strings.HasPrefix(sensor, id+"/") {
			h.a.log.Warn("will on another device's topic ignored", "device", id, "topic", pk.TopicName)
			return
		}
	}
	if !h.ingest(pk) {
		h.a.log.Warn("will not taken", "topic", pk.TopicName)
	}
}

// ingest decodes one message and spools its readings, records its status, or
// dead-letters it. It returns false when the message could not be stored.
func (h *ingestHook) ingest(pk packets.Packet) bool {
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
			return false
		}
		a.log.Debug("payload dead-lettered", "topic", pk.TopicName, "reason", dl.Reason)
		return true
	}
	if res.Status != nil {
		a.metrics.decoded.WithLabelValues(res.Form, "ok").Inc()
		a.devices.set(*res.Status, now)
		return true
	}
	if len(res.Invalid) > 0 {
		// The message's invalid readings are dead-lettered (one record with the whole
		// payload and every reason); its valid readings are spooled below.
		a.metrics.decoded.WithLabelValues(res.Form, "dead_letter").Inc()
		reasons := make([]string, len(res.Invalid))
		for i, bad := range res.Invalid {
			reasons[i] = bad.Reason
		}
		reason := strings.Join(reasons, "; ")
		if len(res.Readings) > 0 {
			reason = fmt.Sprintf("%d of %d readings invalid (the other %d were kept): %s",
				len(res.Invalid), len(res.Invalid)+len(res.Readings), len(res.Readings), reason)
		}
		dl := spool.DeadLetter{Topic: pk.TopicName, Payload: pk.Payload, Reason: reason, At: now}
		if err := a.spool.DeadLetter(ctx, dl); err != nil {
			a.log.Error("dead letter not stored; refusing the message", "topic", pk.TopicName, "err", err)
			return false
		}
		if len(res.Readings) == 0 {
			return true
		}
	} else {
		a.metrics.decoded.WithLabelValues(res.Form, "ok").Inc()
	}
	a.stamps.distinct(res.Readings, now)
	data := make([][]byte, len(res.Readings))
	for i, r := range res.Readings {
		data[i] = r.AppendJSON(make([]byte, 0, 160))
	}
	if err := a.spool.Append(ctx, data); err != nil {
		a.metrics.refused.Inc()
		a.log.Warn("readings not spooled; refusing the message", "topic", pk.TopicName, "err", err)
		return false
	}
	if len(res.Readings) > 0 {
		a.devices.seen(res.Readings[0].SensorID, res.Readings[0].RoomID, now)
	}
	return true
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

// stamps keeps the timestamps the agent gives readings that came without one
// distinct per sensor: two plain numbers from one device within the same
// millisecond would otherwise share an identity (sensor, type, time), and the cloud
// would drop the second as a duplicate. A later one is moved 1 ms past the previous.
type stamps struct {
	mu   sync.Mutex
	last map[string]int64 // sensor id → last receiver-stamped Unix ms
}

func (s *stamps) distinct(rs []reading.Reading, now time.Time) {
	if len(rs) == 0 {
		return
	}
	nowMS := now.UnixMilli()
	var stamped bool
	for _, r := range rs {
		if r.Timestamp.UnixMilli() == nowMS {
			stamped = true
		}
	}
	if !stamped {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.last == nil {
		s.last = map[string]int64{}
	}
	id := rs[0].SensorID
	ms := nowMS
	if last, ok := s.last[id]; ok && ms <= last {
		ms = last + 1
	}
	s.last[id] = ms
	if ms == nowMS {
		return
	}
	for i := range rs {
		if rs[i].Timestamp.UnixMilli() == nowMS {
			rs[i].Timestamp = time.UnixMilli(ms).UTC()
		}
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
