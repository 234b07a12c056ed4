package broker

import (
	"bytes"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/atrium-iot/atrium/internal/mqtttest"
)

// sendRetained publishes a retained QoS 1 message and fails t unless it is acknowledged.
func sendRetained(t testing.TB, c *mqtttest.Client, topic string, payload []byte, props *paho.PublishProperties) {
	t.Helper()
	pr, err := c.Publish(ctxT(t), &paho.Publish{QoS: 1, Retain: true, Topic: topic, Payload: payload, Properties: props})
	if err == nil && pr.ReasonCode >= 0x80 {
		err = fmt.Errorf("reason code %#x", pr.ReasonCode)
	}
	if err != nil {
		t.Fatalf("retained publish %s: %v", topic, err)
	}
}

// connectAs connects another client of device id, as clientID.
func connectAs(t testing.TB, b *Broker, clientID, id string) *mqtttest.Client {
	t.Helper()
	c, ack, err := connectPaho(t, dialTCP(t, b.Addr()), clientID, id, devices[id])
	if err != nil {
		t.Fatalf("connect %s as %s: %v (connack %+v)", clientID, id, err, ack)
	}
	return c
}

// retainedTopics subscribes a new client of device id to filter and returns the
// topics of the retained messages it gets, once b holds held retained messages in
// all and the client has want of them.
func retainedTopics(t testing.TB, b *Broker, id, filter string, held, want int) []string {
	t.Helper()
	poll(t, fmt.Sprintf("%d retained messages held", held), func() bool { return b.Stats().Retained == int64(held) })
	c := connectAs(t, b, fmt.Sprintf("%s-new-%d", id, time.Now().UnixNano()), id)
	defer c.Close()
	c.MustSubscribe(t, filter, 1)
	var topics []string
	c.Wait(t, fmt.Sprintf("%d retained messages", want), func(msgs []*paho.Publish) bool {
		topics = topics[:0]
		for _, m := range msgs {
			if m.Retain && strings.HasPrefix(m.Topic, strings.TrimSuffix(filter, "#")) {
				topics = append(topics, m.Topic)
			}
		}
		return len(topics) >= want
	})
	slices.Sort(topics)
	return topics
}

func subtopics(id string, from, to int) []string {
	var out []string
	for i := from; i <= to; i++ {
		out = append(out, fmt.Sprintf("atrium/r/%s/x%02d", id, i))
	}
	slices.Sort(out)
	return out
}

// TestRetainedAllowance: a device's first 32 retained topics are retained; the rest
// are delivered live but not retained, and counted; deleting one frees its slot;
// replacing one takes no new slot; another device's allowance is its own.
func TestRetainedAllowance(t *testing.T) {
	b := startBroker(t, nil)
	pub := mustConnect(t, b, "sensor_001")
	live := connectAs(t, b, "sensor_001-live", "sensor_001")
	live.MustSubscribe(t, "atrium/r/sensor_001/#", 1)

	for i := 1; i <= 40; i++ {
		sendRetained(t, pub, fmt.Sprintf("atrium/r/sensor_001/x%02d", i), []byte("v1"), nil)
	}
	live.Wait(t, "40 live messages", func(msgs []*paho.Publish) bool { return len(msgs) >= 40 })
	if got, want := retainedTopics(t, b, "sensor_001", "atrium/r/sensor_001/#", 32, 32), subtopics("sensor_001", 1, 32); !slices.Equal(got, want) {
		t.Errorf("retained topics %v, want %v", got, want)
	}
	if n := b.Stats().RetainedRefused; n != 8 {
		t.Errorf("RetainedRefused %d, want 8", n)
	}

	// Replacing its own retained messages takes no new slot.
	for i := 1; i <= 32; i++ {
		sendRetained(t, pub, fmt.Sprintf("atrium/r/sensor_001/x%02d", i), []byte("v2"), nil)
	}
	if n := b.Stats().RetainedRefused; n != 8 {
		t.Errorf("after replacing: RetainedRefused %d, want still 8", n)
	}

	// Another device has an allowance of its own.
	other := mustConnect(t, b, "sensor_002")
	for i := 1; i <= 32; i++ {
		sendRetained(t, other, fmt.Sprintf("atrium/r/sensor_002/x%02d", i), []byte("w"), nil)
	}
	if got, want := retainedTopics(t, b, "sensor_002", "atrium/r/sensor_002/#", 64, 32), subtopics("sensor_002", 1, 32); !slices.Equal(got, want) {
		t.Errorf("sensor_002's retained topics %v, want %v", got, want)
	}
	if n := b.Stats().RetainedRefused; n != 8 {
		t.Errorf("after sensor_002: RetainedRefused %d, want still 8", n)
	}

	// Deleting one (an empty retained payload) always works and frees its slot.
	sendRetained(t, pub, "atrium/r/sensor_001/x01", nil, nil)
	sendRetained(t, pub, "atrium/r/sensor_001/x41", []byte("v1"), nil)
	want := append(subtopics("sensor_001", 2, 32), "atrium/r/sensor_001/x41")
	if got := retainedTopics(t, b, "sensor_001", "atrium/r/sensor_001/#", 64, 32); !slices.Equal(got, want) {
		t.Errorf("after a deletion: retained topics %v, want %v", got, want)
	}
	sendRetained(t, pub, "atrium/r/sensor_001/x42", []byte("v1"), nil)
	if n := b.Stats().RetainedRefused; n != 9 {
		t.Errorf("a 33rd topic again: RetainedRefused %d, want 9", n)
	}
	if topics, size := b.keep.usageOf(retainOwner{id: "sensor_001"}); topics != 32 || size != 32*int64(len("atrium/r/sensor_001/x00")+2) {
		t.Errorf("sensor_001's books: %d topics, %d bytes; want 32, %d", topics, size, 32*(len("atrium/r/sensor_001/x00")+2))
	}
}

// TestRetainedBytes: the byte cap counts what a retained message holds (topic,
// payload, properties); a replacement counts the difference; a refused replacement
// leaves the earlier message retained.
func TestRetainedBytes(t *testing.T) {
	b := startBroker(t, func(c *Config) { c.MaxRetainedBytes = 1000 })
	pub := mustConnect(t, b, "sensor_001")
	topic := func(s string) string { return "atrium/r/sensor_001/" + s } // 22 bytes with a 2-byte name
	sendRetained(t, pub, topic("t1"), bytes.Repeat([]byte("a"), 500), nil)
	sendRetained(t, pub, topic("t2"), bytes.Repeat([]byte("b"), 500), nil) // 1044 in all: refused
	if n := b.Stats().RetainedRefused; n != 1 {
		t.Fatalf("RetainedRefused %d, want 1", n)
	}
	sendRetained(t, pub, topic("t1"), bytes.Repeat([]byte("c"), 978), nil) // 1000 exactly: the difference fits
	sendRetained(t, pub, topic("t1"), bytes.Repeat([]byte("d"), 979), nil) // one byte over: refused, "c" stays
	sendRetained(t, pub, topic("t3"), []byte("e"), &paho.PublishProperties{User: paho.UserProperties{{Key: "k", Value: strings.Repeat("v", 2000)}}})
	if n := b.Stats().RetainedRefused; n != 3 {
		t.Errorf("RetainedRefused %d, want 3", n)
	}
	if n := b.Stats().Retained; n != 1 {
		t.Errorf("%d retained messages held, want 1 (t1)", n)
	}
	// The refused messages were delivered live after their PUBACK, so one may
	// still reach the new subscriber: only the retained ones count here.
	c := connectAs(t, b, "sensor_001-new", "sensor_001")
	c.MustSubscribe(t, topic("#"), 1)
	var kept []*paho.Publish
	c.Wait(t, "t1's retained message", func(msgs []*paho.Publish) bool {
		kept = kept[:0]
		for _, m := range msgs {
			if m.Retain {
				kept = append(kept, m)
			}
		}
		return slices.ContainsFunc(kept, func(m *paho.Publish) bool { return m.Topic == topic("t1") })
	})
	if len(kept) != 1 || !bytes.Equal(kept[0].Payload, bytes.Repeat([]byte("c"), 978)) {
		t.Errorf("retained: %d messages, first %d bytes on %s; want only t1's 978-byte one", len(kept), len(kept[0].Payload), kept[0].Topic)
	}
	sendRetained(t, pub, topic("t1"), nil, nil)
	sendRetained(t, pub, topic("t2"), bytes.Repeat([]byte("b"), 500), nil)
	if n := b.Stats().RetainedRefused; n != 3 {
		t.Errorf("after deleting t1: RetainedRefused %d, want still 3", n)
	}
	poll(t, "t2 retained", func() bool { return b.Stats().Retained == 1 })
}

// TestRetainedExpiryFreesSlot: a retained message that expires (MQTT 5 message
// expiry) gives its slot back.
func TestRetainedExpiryFreesSlot(t *testing.T) {
	b := startBroker(t, func(c *Config) { c.MaxRetained = 2 })
	pub := mustConnect(t, b, "sensor_001")
	expiry := uint32(1)
	sendRetained(t, pub, "atrium/r/sensor_001/a", []byte("1"), &paho.PublishProperties{MessageExpiry: &expiry})
	sendRetained(t, pub, "atrium/r/sensor_001/b", []byte("1"), nil)
	sendRetained(t, pub, "atrium/r/sensor_001/c", []byte("1"), nil)
	if n := b.Stats().RetainedRefused; n != 1 {
		t.Fatalf("RetainedRefused %d, want 1", n)
	}
	poll(t, "the expiring message gone", func() bool { return b.Stats().Retained == 1 })
	sendRetained(t, pub, "atrium/r/sensor_001/c", []byte("1"), nil)
	if n := b.Stats().RetainedRefused; n != 1 {
		t.Errorf("after the expiry: RetainedRefused %d, want still 1", n)
	}
	if got := retainedTopics(t, b, "sensor_001", "atrium/r/sensor_001/#", 2, 2); !slices.Equal(got, []string{"atrium/r/sensor_001/b", "atrium/r/sensor_001/c"}) {
		t.Errorf("retained %v, want b and c", got)
	}
}

// TestRetainedWillAllowance: a retained will over the allowance is sent but not retained.
func TestRetainedWillAllowance(t *testing.T) {
	b := startBroker(t, func(c *Config) { c.MaxRetained = 1 })
	pub := mustConnect(t, b, "sensor_001")
	sendRetained(t, pub, "atrium/r/sensor_001/status", []byte("online"), nil)
	live := connectAs(t, b, "sensor_001-live", "sensor_001")
	live.MustSubscribe(t, "atrium/r/sensor_001/#", 1)
	cp := mqtttest.Login("sensor_001-will", "sensor_001", devices["sensor_001"])
	cp.WillMessage = &paho.WillMessage{Topic: "atrium/r/sensor_001/gone", Payload: []byte("offline"), Retain: true, QoS: 1}
	w, ack, err := connectWith(t, dialTCP(t, b.Addr()), cp)
	if err != nil {
		t.Fatalf("connect with a will: %v (%+v)", err, ack)
	}
	w.Drop()
	live.WaitTopic(t, "atrium/r/sensor_001/gone")
	if s := b.Stats(); s.RetainedRefused != 1 || s.Retained != 1 {
		t.Errorf("RetainedRefused %d, retained %d; want the will refused and only the status retained", s.RetainedRefused, s.Retained)
	}
}

// TestRetainedDeferred: a retained message a hook took off mochi's path (Defer) and
// handed back with Publish is held to its client's allowance there, once.
func TestRetainedDeferred(t *testing.T) {
	h := &deferHook{got: make(chan deferred, 64)}
	b := startBroker(t, func(c *Config) { c.MaxRetained = 3; c.AllowAnonymous = true }, h)
	done := make(chan struct{})
	t.Cleanup(func() { close(done) })
	go func() {
		for {
			select {
			case d := <-h.got:
				_ = b.Acks(d.cl, []Puback{{PacketID: d.pk.PacketID, Code: packets.CodeSuccess}})
				_ = b.Publish(d.cl, d.pk, d.received)
			case <-done:
				return
			}
		}
	}()
	anonymous := func(clientID string) *mqtttest.Client {
		c, ack, err := connectPaho(t, dialTCP(t, b.Addr()), clientID, "", "")
		if err != nil {
			t.Fatalf("connect %s: %v (%+v)", clientID, err, ack)
		}
		return c
	}
	pub := anonymous("deferred-pub")
	for i := 1; i <= 5; i++ {
		sendRetained(t, pub, fmt.Sprintf("deferred/x%d", i), []byte("v"), nil)
	}
	poll(t, "two refused", func() bool { return b.Stats().RetainedRefused == 2 })
	poll(t, "three retained", func() bool { return b.Stats().Retained == 3 })
	if topics, _ := b.keep.usageOf(retainOwner{anonymous: true, id: "deferred-pub"}); topics != 3 {
		t.Errorf("books: %d topics of deferred-pub, want 3", topics)
	}
	// Another anonymous client id has its own allowance.
	other := anonymous("deferred-other")
	sendRetained(t, other, "deferred/y", []byte("v"), nil)
	poll(t, "four retained", func() bool { return b.Stats().Retained == 4 })
	if n := b.Stats().RetainedRefused; n != 2 {
		t.Errorf("RetainedRefused %d, want still 2", n)
	}
}
