package broker

import (
	"bytes"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/atrium-iot/atrium/internal/mqtttest"
)

// readRaw returns the next packet's type and its bytes after the remaining length.
func (rc *rawClient) readRaw() (byte, []byte) {
	rc.t.Helper()
	first, body, err := rc.next()
	if err != nil {
		rc.t.Fatalf("reading a packet: %v", err)
	}
	return first >> 4, body
}

// expectRaw reads the next packet and fails unless it is of type typ with exactly body.
func (rc *rawClient) expectRaw(what string, typ byte, body ...byte) {
	rc.t.Helper()
	gotType, got := rc.readRaw()
	if gotType != typ || !bytes.Equal(got, body) {
		rc.t.Errorf("%s: got type %d body % x, want type %d body % x", what, gotType, got, typ, body)
	}
}

var userProps = packets.Properties{User: []packets.UserProperty{{Key: "a", Val: "2"}}, ContentType: "text/plain"}

// The acknowledgements of MQTT 5 carry a valid reason code and none of the request's
// properties: mochi answered a QoS 1 PUBLISH with reason 0x01 (not a PUBACK code) and
// echoed user properties in PUBACK, PUBREC, PUBCOMP, SUBACK and UNSUBACK, and Paho's
// client drops the connection on such a PUBACK. Mosquitto's answers are the reference.
func TestAcksFollowSpec(t *testing.T) {
	b := startBroker(t, func(c *Config) { c.AllowAnonymous = true })
	rc := connectRaw(t, b, 5, "acks", "", "")

	sub := packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Subscribe, Qos: 1}, PacketID: 3, Properties: userProps,
		Filters: packets.Subscriptions{{Filter: "acks/other", Qos: 1}}}
	if err := rc.send(sub); err != nil {
		t.Fatal(err)
	}
	rc.expectRaw("SUBACK", packets.Suback, 0, 3, 0, 1) // id 3, no properties, granted QoS 1

	pub := packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Publish, Qos: 1}, TopicName: "acks/t", PacketID: 7,
		Payload: []byte("x"), Properties: userProps}
	if err := rc.send(pub); err != nil {
		t.Fatal(err)
	}
	rc.expectRaw("PUBACK", packets.Puback, 0, 7) // Mosquitto: 0x10 "no matching subscribers"; 0x00 (shortened) is as valid

	pub.FixedHeader.Qos, pub.PacketID = 2, 8
	if err := rc.send(pub); err != nil {
		t.Fatal(err)
	}
	rc.expectRaw("PUBREC", packets.Pubrec, 0, 8)
	if err := rc.send(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Pubrel, Qos: 1}, PacketID: 8, Properties: packets.Properties{User: userProps.User}}); err != nil {
		t.Fatal(err)
	}
	rc.expectRaw("PUBCOMP", packets.Pubcomp, 0, 8)

	unsub := packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Unsubscribe, Qos: 1}, PacketID: 9,
		Properties: packets.Properties{User: userProps.User}, Filters: packets.Subscriptions{{Filter: "acks/other"}}}
	if err := rc.send(unsub); err != nil {
		t.Fatal(err)
	}
	rc.expectRaw("UNSUBACK", packets.Unsuback, 0, 9, 0, 0)

	// paho.golang (what Atrium's firmware simulator uses) sees the same.
	c, _, err := connectPaho(t, dialTCP(t, b.Addr()), "acks-paho", "", "")
	if err != nil {
		t.Fatal(err)
	}
	pr, err := c.Publish(ctxT(t), &paho.Publish{QoS: 1, Topic: "acks/t", Payload: []byte("x"),
		Properties: &paho.PublishProperties{User: paho.UserProperties{{Key: "a", Value: "2"}}}})
	if err != nil {
		t.Fatal(err)
	}
	if pr.ReasonCode != 0 || pr.Properties != nil && len(pr.Properties.User) > 0 {
		t.Errorf("paho PUBACK: reason %#x, properties %+v", pr.ReasonCode, pr.Properties)
	}
}

// TestServerKeepAlive: -max-keepalive caps an MQTT 5 client's keep alive, told in the
// CONNACK, and a client silent longer than 1.5 times it is dropped; an MQTT 3.1.1 client,
// which cannot be told, keeps its own.
func TestServerKeepAlive(t *testing.T) {
	b := startBroker(t, func(c *Config) { c.AllowAnonymous = true; c.MaxKeepAlive = 60 * time.Second })
	for _, tc := range []struct {
		asked uint16
		told  uint16 // 0: no Server Keep Alive in the CONNACK
	}{{120, 60}, {0, 60}, {60, 0}, {30, 0}} {
		cp := &paho.Connect{ClientID: "ka", KeepAlive: tc.asked, CleanStart: true}
		c, ack, err := connectWith(t, dialTCP(t, b.Addr()), cp)
		if err != nil {
			t.Fatalf("keep alive %d: %v", tc.asked, err)
		}
		var told uint16
		if ack.Properties != nil && ack.Properties.ServerKeepAlive != nil {
			told = *ack.Properties.ServerKeepAlive
		}
		if told != tc.told {
			t.Errorf("keep alive %d: CONNACK Server Keep Alive %d, want %d", tc.asked, told, tc.told)
		}
		_ = c.Disconnect(&paho.Disconnect{})
	}
	rc := dialRaw(t, b.Addr(), 4)
	if ack := rc.connectSession("ka311", "", "", true); ack.ReasonCode != 0 || ack.Properties.ServerKeepAliveFlag {
		t.Errorf("3.1.1 CONNACK: %+v", ack)
	}

	short := startBroker(t, func(c *Config) { c.AllowAnonymous = true; c.MaxKeepAlive = time.Second })
	silent := dialRaw(t, short.Addr(), 5)
	pk := packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Connect},
		Connect: packets.ConnectParams{ProtocolName: []byte("MQTT"), ClientIdentifier: "silent", Clean: true, Keepalive: 0}}
	if err := silent.send(pk); err != nil {
		t.Fatal(err)
	}
	ack, err := silent.read()
	if err != nil || ack.Properties.ServerKeepAlive != 1 {
		t.Fatalf("CONNACK %+v, %v; want Server Keep Alive 1", ack, err)
	}
	start := time.Now()
	if _, err := silent.read(); err == nil || time.Since(start) > 10*time.Second {
		t.Errorf("a silent client was not dropped after its keep alive (%v, after %v)", err, time.Since(start))
	}
}

// TestSubscribeRefusedByACL is the Paho suite's test_subscribe_failure with device
// credentials: a subscription outside the device's topics is refused, 0x87 (MQTT 5) or
// 0x80 (3.1.1), by paho.golang, a raw 3.1.1 client and mosquitto_sub.
func TestSubscribeRefusedByACL(t *testing.T) {
	b := startBroker(t, nil)
	c := mustConnect(t, b, "sensor_001")
	sa, err := c.Subscribe(ctxT(t), &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{
		{Topic: "test/nosubscribe", QoS: 2}, {Topic: "atrium/r1/sensor_001", QoS: 2}}})
	if err != nil && sa == nil {
		t.Fatal(err)
	}
	if !slices.Equal(sa.Reasons, []byte{0x87, 0x02}) {
		t.Errorf("MQTT 5 SUBACK reasons % x, want 87 02", sa.Reasons)
	}
	rc := connectRaw(t, b, 4, "sensor_001-raw", "sensor_001", devices["sensor_001"])
	if codes, _ := rc.subscribe(2, "test/nosubscribe"); !slices.Equal(codes, []byte{0x80}) {
		t.Errorf("3.1.1 SUBACK % x, want 80", codes)
	}
	_, subBin := mosquittoClients(t)
	for _, v := range []string{"mqttv311", "mqttv5"} {
		out, err := mosq(t, subBin, b, v, append(login("sensor_001"), "-t", "test/nosubscribe", "-W", "5")...)
		if !strings.Contains(out, "All subscription requests were denied") {
			t.Errorf("mosquitto_sub %s: %v, %q; want the subscription denied", v, err, out)
		}
	}
}

// deferHook takes the publishes on deferred/ off mochi's path, as the agent's ingest
// does, and hands them to the test.
type deferHook struct {
	mqtt.HookBase
	got chan deferred
}

type deferred struct {
	cl       *mqtt.Client
	pk       packets.Packet
	received time.Time
}

func (h *deferHook) ID() string           { return "test-defer" }
func (h *deferHook) Provides(b byte) bool { return b == mqtt.OnPublish }
func (h *deferHook) OnPublish(cl *mqtt.Client, pk packets.Packet) (packets.Packet, error) {
	if cl.Net.Inline || !strings.HasPrefix(pk.TopicName, "deferred/") {
		return pk, nil
	}
	h.got <- deferred{cl, pk, time.Now()}
	return Defer(pk)
}

// TestDeferTakesNothing: a publish deferred with Defer is neither acknowledged, nor
// delivered, nor retained by mochi; only what the hook does later answers it. The
// subscriber's PING answer shows that everything sent before it has arrived.
func TestDeferTakesNothing(t *testing.T) {
	h := &deferHook{got: make(chan deferred, 16)}
	b := startBroker(t, func(c *Config) { c.AllowAnonymous = true }, h)
	sub := connectRaw(t, b, 5, "defer-sub", "", "")
	if codes, early := sub.subscribe(1, "deferred/#"); len(codes) != 1 || codes[0] > 2 || len(early) > 0 {
		t.Fatalf("subscribe: codes % x, early %d packets", codes, len(early))
	}
	pub := connectRaw(t, b, 5, "defer-pub", "", "")
	for qos := byte(0); qos <= 1; qos++ {
		if err := pub.send(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Publish, Qos: qos, Retain: true},
			TopicName: "deferred/t", PacketID: uint16(qos), Payload: []byte("x")}); err != nil {
			t.Fatal(err)
		}
		select {
		case <-h.got:
		case <-time.After(waitFor):
			t.Fatalf("QoS %d publish not deferred", qos)
		}
	}
	for _, c := range []*rawClient{pub, sub} {
		if err := c.send(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Pingreq}}); err != nil {
			t.Fatal(err)
		}
		if pk, err := c.read(); err != nil || pk.FixedHeader.Type != packets.Pingresp {
			t.Errorf("after deferred publishes: got packet type %d (%v), want only the PINGRESP", pk.FixedHeader.Type, err)
		}
	}
	if s := b.Stats(); s.Retained != 0 || s.MessagesSent != 0 {
		t.Errorf("retained %d, sent %d; want nothing retained or sent before the hook answers", s.Retained, s.MessagesSent)
	}
}

// TestPublishAsSent: a message a hook took and handed back with Publish reaches
// subscribers as its client sent it: every MQTT 5 property, noLocal and retain as
// published honoured, the expiry counted from when it was received; it is counted as
// received once.
func TestPublishAsSent(t *testing.T) {
	h := &deferHook{got: make(chan deferred, 16)}
	b := startBroker(t, func(c *Config) { c.AllowAnonymous = true }, h)
	// take answers what the hook took as the agent does: PUBACK, then Publish.
	take := func(shift time.Duration) {
		t.Helper()
		d := <-h.got
		if err := Ack(d.cl, d.pk.FixedHeader.Qos, d.pk.PacketID, packets.CodeSuccess); err != nil {
			t.Fatal(err)
		}
		if err := b.Publish(d.cl, d.pk, d.received.Add(-shift)); err != nil {
			t.Fatal(err)
		}
	}

	sub, _, err := connectPaho(t, dialTCP(t, b.Addr()), "sub", "", "")
	if err != nil {
		t.Fatal(err)
	}
	pub, _, err := connectPaho(t, dialTCP(t, b.Addr()), "pub", "", "")
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []struct {
		c    *mqtttest.Client
		opts paho.SubscribeOptions
	}{{sub, paho.SubscribeOptions{Topic: "deferred/#", QoS: 2, RetainAsPublished: true}},
		{pub, paho.SubscribeOptions{Topic: "deferred/#", QoS: 2, NoLocal: true}}} {
		if _, err := s.c.Subscribe(ctxT(t), &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{s.opts}}); err != nil {
			t.Fatal(err)
		}
	}
	expiry := uint32(60)
	props := &paho.PublishProperties{
		ContentType: "application/json", ResponseTopic: "deferred/reply", CorrelationData: []byte{1, 2, 3},
		PayloadFormat: new(byte), MessageExpiry: &expiry, User: paho.UserProperties{{Key: "k", Value: "v"}, {Key: "k", Value: "w"}},
	}
	*props.PayloadFormat = 1
	for _, qos := range []byte{0, 1} {
		done := make(chan error, 1)
		go func() {
			_, err := pub.Publish(ctxT(t), &paho.Publish{QoS: qos, Topic: "deferred/q" + string('0'+qos), Payload: []byte(`{"v":1}`), Properties: props})
			done <- err
		}()
		take(0)
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		msgs := sub.WaitTopic(t, "deferred/q"+string('0'+qos))
		m := msgs[len(msgs)-1]
		p := m.Properties
		if p == nil || p.ContentType != "application/json" || p.ResponseTopic != "deferred/reply" || !bytes.Equal(p.CorrelationData, []byte{1, 2, 3}) ||
			p.PayloadFormat == nil || *p.PayloadFormat != 1 || p.MessageExpiry == nil || *p.MessageExpiry == 0 || *p.MessageExpiry > 60 ||
			len(p.User) != 2 || p.User[0] != (paho.UserProperty{Key: "k", Value: "v"}) || p.User[1] != (paho.UserProperty{Key: "k", Value: "w"}) || m.QoS != qos {
			t.Errorf("QoS %d: delivered %+v with properties %+v", qos, m, p)
		}
	}

	// Retain as published; the expiry counts from when the message was received.
	done := make(chan error, 1)
	go func() {
		_, err := pub.Publish(ctxT(t), &paho.Publish{QoS: 1, Retain: true, Topic: "deferred/retained", Payload: []byte("r"), Properties: props})
		done <- err
	}()
	take(20 * time.Second)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	msgs := sub.WaitTopic(t, "deferred/retained")
	if m := msgs[len(msgs)-1]; !m.Retain || m.Properties.MessageExpiry == nil || *m.Properties.MessageExpiry > 40 {
		t.Errorf("retained: retain %v, expiry %v; want retain as published, at most 40 s left", m.Retain, m.Properties.MessageExpiry)
	}
	if n := b.Stats().Retained; n != 1 {
		t.Errorf("Stats.Retained %d, want 1", n)
	}

	// Expired while the hook held it: delivered to nobody, counted.
	short := uint32(5)
	go func() {
		_, err := pub.Publish(ctxT(t), &paho.Publish{QoS: 1, Topic: "deferred/expired", Payload: []byte("e"),
			Properties: &paho.PublishProperties{MessageExpiry: &short}})
		done <- err
	}()
	take(10 * time.Second)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if n := b.Stats().MessagesExpired; n != 1 {
		t.Errorf("MessagesExpired %d, want 1", n)
	}

	// noLocal: pub received none of its own messages, but receives another client's.
	other, _, err := connectPaho(t, dialTCP(t, b.Addr()), "other", "", "")
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		_, err := other.Publish(ctxT(t), &paho.Publish{QoS: 0, Topic: "deferred/other", Payload: []byte("o")})
		done <- err
	}()
	take(0)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	for _, m := range pub.WaitTopic(t, "deferred/other") {
		if m.Topic != "deferred/other" {
			t.Errorf("noLocal subscriber got its own message on %s", m.Topic)
		}
	}
	for _, m := range sub.WaitTopic(t, "deferred/other") {
		if m.Topic == "deferred/expired" {
			t.Error("an expired message was delivered")
		}
	}
	if got := b.Stats().MessagesReceived; got != 5 {
		t.Errorf("MessagesReceived %d, want 5 (each publish once)", got)
	}
}

// TestGaugesTrue: the gauges say what the broker holds: no retained messages at start
// (mochi counted its own $SYS ones), none once the only one has expired (mochi's count
// stayed), and queued messages of a session until it is gone.
func TestGaugesTrue(t *testing.T) {
	b := startBroker(t, func(c *Config) { c.AllowAnonymous = true })
	if s := b.Stats(); s.Retained != 0 || s.Inflight != 0 || s.Subscriptions != 0 || s.ClientsConnected != 0 {
		t.Fatalf("at start: %+v", s)
	}
	rc := connectRaw(t, b, 5, "gauges", "", "")
	pk := packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Publish, Retain: true}, TopicName: "g/retained", Payload: []byte("r"),
		Properties: packets.Properties{MessageExpiryInterval: 1}}
	if err := rc.send(pk); err != nil {
		t.Fatal(err)
	}
	poll(t, "the retained message", func() bool { return b.Stats().Retained == 1 })
	poll(t, "the retained message to expire", func() bool { return b.Stats().Retained == 0 })

	// A persistent session subscribed at QoS 1, away while 3 messages come.
	away := dialRaw(t, b.Addr(), 5)
	if ack := away.connectSession("away", "", "", false); ack.ReasonCode != 0 {
		t.Fatal("connect away")
	}
	away.subscribe(1, "g/queued")
	poll(t, "the subscription", func() bool { return b.Stats().Subscriptions == 1 })
	_ = away.send(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Disconnect}})
	poll(t, "away to leave", func() bool { return b.Stats().ClientsConnected == 1 })
	for i := range 3 {
		if err := rc.publish("g/queued", 1, uint16(10+i), []byte("q")); err != nil {
			t.Fatal(err)
		}
	}
	poll(t, "3 queued messages", func() bool { return b.Stats().Inflight == 3 })
	// It comes back with a clean start: its session and queue are gone.
	connectRaw(t, b, 5, "away", "", "")
	poll(t, "the queue to go", func() bool { s := b.Stats(); return s.Inflight == 0 && s.Subscriptions == 0 })
}

// TestAcksInOrder: Acks answers a client's deferred publishes in order in one write:
// successes as the four bytes mochi would send, an MQTT 5 refusal with its reason
// code and string; an MQTT 3.1.1 client gets the successes before its refusal and is
// then disconnected, without any acknowledgement after it.
func TestAcksInOrder(t *testing.T) {
	h := &deferHook{got: make(chan deferred, 16)}
	b := startBroker(t, func(c *Config) { c.AllowAnonymous = true }, h)
	take := func(n int) *mqtt.Client {
		t.Helper()
		var cl *mqtt.Client
		for range n {
			select {
			case d := <-h.got:
				cl = d.cl
			case <-time.After(waitFor):
				t.Fatal("publish not deferred")
			}
		}
		return cl
	}

	v5 := connectRaw(t, b, 5, "acks-v5", "", "")
	for id := uint16(1); id <= 4; id++ {
		if err := v5.publish("deferred/a", 1, id, []byte("x")); err != nil {
			t.Fatal(err)
		}
	}
	cl := take(4)
	sent := atomic.LoadInt64(&b.srv.Info.PacketsSent)
	if err := b.Acks(cl, []Puback{{1, packets.CodeSuccess}, {2, packets.ErrQuotaExceeded}, {3, packets.CodeSuccess}, {0x1234, packets.CodeSuccess}}); err != nil {
		t.Fatal(err)
	}
	v5.expectRaw("PUBACK 1", packets.Puback, 0, 1)
	typ, body := v5.readRaw()
	if typ != packets.Puback || len(body) < 4 || body[0] != 0 || body[1] != 2 || body[2] != packets.ErrQuotaExceeded.Code ||
		!bytes.Contains(body, []byte(packets.ErrQuotaExceeded.Reason)) {
		t.Errorf("PUBACK 2: type %d body % x, want id 2, reason %#x and its string", typ, body, packets.ErrQuotaExceeded.Code)
	}
	v5.expectRaw("PUBACK 3", packets.Puback, 0, 3)
	v5.expectRaw("PUBACK 0x1234", packets.Puback, 0x12, 0x34)
	if got := atomic.LoadInt64(&b.srv.Info.PacketsSent) - sent; got != 4 {
		t.Errorf("packets sent counted %d, want 4", got)
	}

	v3 := connectRaw(t, b, 4, "acks-v3", "", "")
	for id := uint16(1); id <= 3; id++ {
		if err := v3.publish("deferred/a", 1, id, []byte("x")); err != nil {
			t.Fatal(err)
		}
	}
	cl = take(3)
	if err := b.Acks(cl, []Puback{{1, packets.CodeSuccess}, {2, packets.ErrUnspecifiedError}, {3, packets.CodeSuccess}}); err != nil {
		t.Fatal(err)
	}
	v3.expectRaw("3.1.1 PUBACK 1", packets.Puback, 0, 1)
	if pk, err := v3.read(); err == nil {
		t.Errorf("3.1.1 client: got %v after a refused publish, want the connection closed", pk.FixedHeader)
	}
}
