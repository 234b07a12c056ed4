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

// OnPublish implements mqtt.Hook. QoS 0 and 1 publishes on atrium/ topics are
// decoded here and handed to the pipeline, which spools many connections' messages
// in one fsynced commit and then sends each PUBACK (see pipeline.go); mochi is told
// not to answer them itself (broker.Defer). QoS 2 publishes are spooled here, before mochi answers.
func (h *ingestHook) OnPublish(cl *mqtt.Client, pk packets.Packet) (packets.Packet, error) {
	if cl.Net.Inline || !strings.HasPrefix(pk.TopicName, TopicPrefix) {
		return pk, nil // our own deliveries, and topics the agent does not ingest
	}
	j := h.prepare(pk)
	if pk.FixedHeader.Qos <= 1 && h.a.pipe != nil {
		j.cl, j.received = cl, time.Now()
		j.props = deliveredProperties(pk)
		if h.a.pipe.add(j) {
			return broker.Defer(pk)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), h.a.cfg.AppendTimeout)
	defer cancel()
	if err := h.a.commit(ctx, []*job{j}); err != nil {
		h.a.log.Warn("message not spooled; refusing it", "topic", pk.TopicName, "err", err)
		return pk, broker.RefusePublish(cl, pk)
	}
	h.a.taken(j)
	return pk, nil
}

// OnWillSent implements mqtt.Hook: mochi sends a device's will (its "offline"
// status) without calling OnPublish.
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
	ctx, cancel := context.WithTimeout(context.Background(), h.a.cfg.AppendTimeout)
	defer cancel()
	if err := h.a.commit(ctx, []*job{h.prepare(pk)}); err != nil {
		h.a.log.Warn("will not taken", "topic", pk.TopicName, "err", err)
	}
}

// job is one publish on its way to the spool: its readings as JSON and, when some
// or all of it could not be used, its dead letters: the whole message when nothing
// in it could be read, else one per refused reading, field or record.
type job struct {
	cl *mqtt.Client // nil for publishes handled synchronously
	// What the answer needs of the publish (not the packet itself: mochi's
	// packets.Packet is over 1 KiB, and a job lives until its PUBACK).
	topic    string
	payload  []byte
	qos      byte
	retain   bool
	packetID uint16
	// For its delivery to subscribers once spooled (pipeline jobs only): the
	// publish's MQTT 5 properties (nil when it had none to deliver), and when the
	// broker read it, from which its message expiry counts.
	props    *packets.Properties
	received time.Time

	data [][]byte
	dead []spool.DeadLetter
	err  error

	// What the message left out on purpose (non-numeric JSON fields), counted
	// against its device once the message is taken.
	device, room string
	ignored      int
}

// deliveredProperties is a copy of the properties of pk that go with it to its
// subscribers, or nil when it has none.
func deliveredProperties(pk packets.Packet) *packets.Properties {
	p := &pk.Properties
	if pk.ProtocolVersion < 5 || !p.PayloadFormatFlag && p.MessageExpiryInterval == 0 && p.ContentType == "" &&
		p.ResponseTopic == "" && len(p.CorrelationData) == 0 && len(p.User) == 0 {
		return nil
	}
	return &packets.Properties{
		PayloadFormat: p.PayloadFormat, PayloadFormatFlag: p.PayloadFormatFlag,
		MessageExpiryInterval: p.MessageExpiryInterval, ContentType: p.ContentType,
		ResponseTopic: p.ResponseTopic, CorrelationData: p.CorrelationData, User: p.User,
	}
}

// deliver hands a spooled pipeline job's message to the broker's subscribers
// exactly as its device sent it (see broker.Broker.Publish).
func (a *Agent) deliver(j *job) {
	pk := packets.Packet{
		FixedHeader: packets.FixedHeader{Type: packets.Publish, Qos: j.qos, Retain: j.retain},
		TopicName:   j.topic, Payload: j.payload, PacketID: j.packetID,
	}
	if j.props != nil {
		pk.Properties = *j.props
	}
	if err := a.broker.Publish(j.cl, pk, j.received); err != nil {
		a.log.Debug("delivery to subscribers failed", "topic", j.topic, "err", err)
	}
}

// prepare decodes and validates one publish. A status message is applied at once.
// Every reading of the message ends up in the spool or in a dead letter with its
// reason: a message nothing can be read from is one dead letter with the whole
// payload; otherwise each refused part is a dead letter of its own (its payload is
// that part alone) and the other readings are spooled.
func (h *ingestHook) prepare(pk packets.Packet) *job {
	a := h.a
	now := a.now()
	j := &job{topic: pk.TopicName, payload: pk.Payload, qos: pk.FixedHeader.Qos,
		retain: pk.FixedHeader.Retain, packetID: pk.PacketID}
	res, err := decode.Decode(pk.TopicName, pk.Payload, a.cfg.Site, now)
	if err != nil {
		a.metrics.decoded.WithLabelValues(topicForm(pk.TopicName, pk.Payload), "dead_letter").Inc()
		j.dead = []spool.DeadLetter{{Topic: pk.TopicName, Payload: pk.Payload, Reason: err.Error(), At: now}}
		return j
	}
	if res.Status != nil {
		a.metrics.decoded.WithLabelValues(res.Form, "ok").Inc()
		a.devices.set(*res.Status, now)
		return j
	}
	result := "ok"
	switch {
	case len(res.Invalid) > 0 && len(res.Readings) > 0:
		result = "partial"
	case len(res.Invalid) > 0:
		result = "dead_letter"
	}
	a.metrics.decoded.WithLabelValues(res.Form, result).Inc()
	if len(res.Invalid) > 0 {
		j.dead = make([]spool.DeadLetter, len(res.Invalid))
		for i, bad := range res.Invalid {
			j.dead[i] = spool.DeadLetter{Topic: pk.TopicName, Payload: bad.Payload, Reason: bad.Reason, At: now}
		}
	}
	if res.Ignored > 0 {
		j.ignored = res.Ignored
		if len(res.Readings) > 0 {
			j.device, j.room = res.Readings[0].SensorID, res.Readings[0].RoomID
		} else {
			j.device, j.room = res.Invalid[0].Reading.SensorID, res.Invalid[0].Reading.RoomID
		}
	}
	if len(res.Readings) == 0 {
		return j
	}
	a.stamps.distinct(res.Readings, now)
	// One allocation for the readings' JSON (the spool copies them); if the buffer
	// has to grow, the readings already in it keep the old array.
	j.data = make([][]byte, len(res.Readings))
	buf := make([]byte, 0, 160*len(res.Readings))
	for i, r := range res.Readings {
		start := len(buf)
		buf = r.AppendJSON(buf)
		j.data[i] = buf[start:len(buf):len(buf)]
	}
	a.devices.seen(res.Readings[0].SensorID, res.Readings[0].RoomID, now)
	return j
}

// taken counts what a job left out, once the message is on disk: counted before,
// a message refused and sent again would count twice.
func (a *Agent) taken(j *job) {
	if j.err == nil && j.ignored > 0 {
		a.devices.ignore(j.device, j.room, j.ignored)
	}
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

// devices is what the agent knows of its devices: their last status message, when
// it last heard from them, and what it left out of their messages.
type devices struct {
	mu sync.Mutex
	m  map[string]*Device

	series       int   // devices with a series of ignored fields in /metrics
	otherIgnored int64 // ignored fields of the devices past maxDeviceSeries
}

// maxDeviceSeries bounds the per-device series of atrium_agent_ignored_fields_total:
// the first devices to send ignored fields get one each, later ones share
// device="_other". With device credentials the devices are the credentials file's;
// with -allow-anonymous any topic could make a new one.
const maxDeviceSeries = 1000

// otherDevices is the device label of the ignored fields past maxDeviceSeries.
const otherDevices = "_other"

// Device is one device as the agent sees it.
type Device struct {
	ID       string    `json:"id"`
	RoomID   string    `json:"room_id"`
	Status   string    `json:"status,omitempty"`
	StatusAt time.Time `json:"status_at,omitzero"`
	LastSeen time.Time `json:"last_seen,omitzero"`
	// IgnoredFields counts the fields of its JSON objects that were not numbers
	// and not readings (firmware versions, flags), left out since the agent started.
	IgnoredFields int64 `json:"ignored_fields"`

	series bool // its ignored fields have a series of their own in /metrics
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

// ignore counts n ignored fields of a device's message.
func (d *devices) ignore(id, room string, n int) {
	d.mu.Lock()
	defer d.mu.Unlock()
	dev := d.get(id, room)
	dev.IgnoredFields += int64(n)
	if !dev.series {
		if d.series < maxDeviceSeries {
			dev.series = true
			d.series++
		} else {
			d.otherIgnored += int64(n)
		}
	}
}

// ignoredSeries returns the ignored fields by device label, for /metrics.
func (d *devices) ignoredSeries() map[string]int64 {
	d.mu.Lock()
	defer d.mu.Unlock()
	out := make(map[string]int64, d.series+1)
	for id, dev := range d.m {
		if dev.series {
			out[id] = dev.IgnoredFields
		}
	}
	if d.otherIgnored > 0 {
		out[otherDevices] = d.otherIgnored
	}
	return out
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
