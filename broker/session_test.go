package broker

import (
	"bufio"
	"fmt"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/eclipse/paho.golang/paho"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/atrium-iot/atrium/broker/credentials"
	"github.com/atrium-iot/atrium/internal/mqtttest"
)

// publishQoS1 publishes as sensor_001 from a client of its own and waits for the PUBACK.
func publishQoS1(t *testing.T, b *Broker, clientID, topic, payload string, retain bool) {
	t.Helper()
	c, _, err := connectPaho(t, dialTCP(t, b.Addr()), clientID, "sensor_001", devices["sensor_001"])
	if err != nil {
		t.Fatal(err)
	}
	resp, err := c.Publish(ctxT(t), &paho.Publish{Topic: topic, QoS: 1, Retain: retain, Payload: []byte(payload)})
	if err != nil || resp == nil || resp.ReasonCode != 0 {
		t.Fatalf("publish %s: %v %+v", topic, err, resp)
	}
	_ = c.Disconnect(&paho.Disconnect{})
}

// offline waits until the broker has noticed that clientID's connection ended.
func offline(t *testing.T, b *Broker, clientID string) {
	t.Helper()
	poll(t, clientID+" offline", func() bool {
		cl, ok := b.srv.Clients.Get(clientID)
		return ok && cl.Closed()
	})
}

// TestClientIDTakeover: a persistent session belongs to the device that made it.
// Another device using the same client id is refused (MQTT 5: 0x85; 3.1.1: return code
// 2), receives nothing of the session, and does not disconnect the owner; the owner
// comes back to its queued messages.
func TestClientIDTakeover(t *testing.T) {
	b := startBroker(t, nil)
	const fixed = "esp32-client" // the same firmware default on every board

	kicked := make(chan byte, 1)
	expiry := uint32(300)
	owner, _, err := mqtttest.Connect(t, dialTCP(t, b.Addr()), &paho.Connect{ClientID: fixed, Username: "sensor_001", UsernameFlag: true,
		Password: []byte(devices["sensor_001"]), PasswordFlag: true, CleanStart: false,
		Properties: &paho.ConnectProperties{SessionExpiryInterval: &expiry}},
		mqtttest.Options{Within: waitFor, OnServerDisconnect: func(d *paho.Disconnect) { kicked <- d.ReasonCode }})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := owner.Subscribe(ctxT(t), &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: "atrium/+/sensor_001/#", QoS: 1}}}); err != nil {
		t.Fatal(err)
	}

	attempt := func(t *testing.T) {
		t.Helper()
		refused := b.Stats().ClientIDRefused
		_, ack, err := connectWith(t, dialTCP(t, b.Addr()), &paho.Connect{ClientID: fixed, Username: "sensor_002", UsernameFlag: true,
			Password: []byte(devices["sensor_002"]), PasswordFlag: true, CleanStart: false,
			Properties: &paho.ConnectProperties{SessionExpiryInterval: &expiry}})
		if err == nil || ack == nil || ack.ReasonCode != packets.ErrClientIdentifierNotValid.Code {
			t.Fatalf("MQTT 5 takeover: err %v, connack %+v; want reason 0x85", err, ack)
		}
		rc := dialRaw(t, b.Addr(), 4)
		ackv3 := rc.connectSession(fixed, "sensor_002", devices["sensor_002"], false)
		if ackv3.ReasonCode != 2 || ackv3.SessionPresent {
			t.Fatalf("3.1.1 takeover: return code %d, session present %v; want 2 without session", ackv3.ReasonCode, ackv3.SessionPresent)
		}
		for { // nothing of the session follows the refusal: the connection just ends
			pk, err := rc.read()
			if err != nil {
				break
			}
			t.Errorf("3.1.1 takeover: got packet type %d (%s %q) after the refusal", pk.FixedHeader.Type, pk.TopicName, pk.Payload)
		}
		if got := b.Stats().ClientIDRefused; got < refused+2 {
			t.Errorf("client id refusals counted %d, want at least %d", got, refused+2)
		}
	}

	t.Run("while the owner is connected", func(t *testing.T) {
		attempt(t)
		// The owner is still connected and served.
		const topic = "atrium/r/sensor_001/after-attempt"
		if _, err := owner.Publish(ctxT(t), &paho.Publish{Topic: topic, QoS: 1, Payload: []byte("1")}); err != nil {
			t.Fatalf("owner publish after the attempt: %v", err)
		}
		owner.WaitTopic(t, topic)
		select {
		case code := <-kicked:
			t.Fatalf("owner disconnected by the attempt (reason 0x%02x)", code)
		default:
		}
	})

	t.Run("while the owner is away", func(t *testing.T) {
		if err := owner.Disconnect(&paho.Disconnect{}); err != nil {
			t.Fatal(err)
		}
		offline(t, b, fixed)
		publishQoS1(t, b, "pub", "atrium/r/sensor_001/queued", "for the owner", false)
		attempt(t)

		back := dialRaw(t, b.Addr(), 5)
		ack := back.connectSession(fixed, "sensor_001", devices["sensor_001"], false)
		if ack.ReasonCode != 0 || !ack.SessionPresent {
			t.Fatalf("owner back: reason 0x%02x, session present %v", ack.ReasonCode, ack.SessionPresent)
		}
		for { // its queued message (and the earlier one again, if its PUBACK had not left before the DISCONNECT)
			pk, err := back.read()
			if err != nil {
				t.Fatalf("owner back: %v before its queued message", err)
			}
			if !allowed("sensor_001", pk.TopicName) {
				t.Errorf("owner back: got %s %q", pk.TopicName, pk.Payload)
			}
			if pk.TopicName == "atrium/r/sensor_001/queued" && string(pk.Payload) == "for the owner" {
				break
			}
		}
	})
}

// TestClientIDTakeoverMosquitto plays TestClientIDTakeover with mosquitto_sub and
// mosquitto_pub, MQTT 3.1.1 and 5.
func TestClientIDTakeoverMosquitto(t *testing.T) {
	pubBin, subBin := mosquittoClients(t)
	b := startBroker(t, nil)
	for _, version := range []string{"mqttv311", "mqttv5"} {
		t.Run(version, func(t *testing.T) {
			fixed := "fixed-" + version
			as := func(id string) []string { return []string{"-i", fixed, "-c", "-q", "1", "-u", id, "-P", devices[id]} }

			// The owner makes a persistent session with a subscription, and leaves.
			args := append(as("sensor_001"), "-t", "atrium/+/sensor_001/#", "-E")
			if out, err := mosq(t, subBin, b, version, args...); err != nil {
				t.Fatalf("owner subscribe: %v: %s", err, out)
			}
			offline(t, b, fixed)
			args = append(login("sensor_001"), "-t", "atrium/r/sensor_001/t", "-m", "queued-"+version, "-q", "1")
			if out, err := mosq(t, pubBin, b, version, args...); err != nil {
				t.Fatalf("publish: %v: %s", err, out)
			}

			// Another device with the same client id is refused and gets nothing.
			args = append(as("sensor_002"), "-t", "atrium/+/sensor_002/#", "-v", "-C", "1", "-W", "10")
			out, err := mosq(t, subBin, b, version, args...)
			if err == nil || strings.Contains(out, "queued") {
				t.Fatalf("takeover by sensor_002: err %v, output %q; want refused, nothing received", err, out)
			}
			if want := map[string]string{"mqttv311": "identifier rejected", "mqttv5": "client identifier not valid"}[version]; !strings.Contains(strings.ToLower(out), want) {
				t.Errorf("takeover refusal %q, want %q", out, want)
			}

			// The owner comes back to its message.
			args = append(as("sensor_001"), "-t", "atrium/+/sensor_001/#", "-v", "-C", "1", "-W", "20")
			out, err = mosq(t, subBin, b, version, args...)
			if err != nil || strings.TrimSpace(out) != "atrium/r/sensor_001/t queued-"+version {
				t.Fatalf("owner back: err %v, output %q", err, out)
			}
		})
	}
}

// TestWillOutsideOwnTopics: mochi publishes a will without asking the ACL, so a device
// could publish on another device's topic through its will. The broker drops such a
// will at CONNECT (the client stays connected); a will on the device's own topics is
// delivered.
func TestWillOutsideOwnTopics(t *testing.T) {
	for _, version := range []byte{4, 5} {
		t.Run(map[byte]string{4: "mqtt311", 5: "mqtt5"}[version], func(t *testing.T) {
			b := startBroker(t, nil)
			victim := mustConnect(t, b, "sensor_002")
			own := mustConnect(t, b, "sensor_001")
			if _, err := victim.Subscribe(ctxT(t), &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: "atrium/+/sensor_002/#", QoS: 1}}}); err != nil {
				t.Fatal(err)
			}
			if _, err := own.Subscribe(ctxT(t), &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: "atrium/+/sensor_001/#", QoS: 1}}}); err != nil {
				t.Fatal(err)
			}
			for i, topic := range []string{"atrium/r/sensor_002/status", "atrium/r/sensor_001/status"} {
				id := fmt.Sprintf("willer-%d", i)
				rc := dialRaw(t, b.Addr(), version)
				pk := packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Connect}, Connect: packets.ConnectParams{
					ProtocolName: []byte("MQTT"), ClientIdentifier: id, Clean: true, Keepalive: 30,
					UsernameFlag: true, Username: []byte("sensor_001"), PasswordFlag: true, Password: []byte(devices["sensor_001"]),
					WillFlag: true, WillTopic: topic, WillPayload: []byte("offline-" + id), WillQos: 1}}
				if err := rc.send(pk); err != nil {
					t.Fatal(err)
				}
				if ack, err := rc.read(); err != nil || ack.ReasonCode != 0 {
					t.Fatalf("connect with a will on %s: 0x%02x, %v", topic, ack.ReasonCode, err)
				}
				rc.conn.Close() // no DISCONNECT: the will is due
				poll(t, id+" gone", func() bool { _, there := b.srv.Clients.Get(id); return !there })
			}
			own.WaitTopic(t, "atrium/r/sensor_001/status") // the will on its own topic
			if _, err := victim.Publish(ctxT(t), &paho.Publish{Topic: "atrium/r/sensor_002/marker", QoS: 1, Payload: []byte("end")}); err != nil {
				t.Fatal(err)
			}
			for _, m := range victim.WaitTopic(t, "atrium/r/sensor_002/marker") {
				if m.Topic != "atrium/r/sensor_002/marker" {
					t.Errorf("sensor_002 received %s %q: sensor_001's will on its topic", m.Topic, m.Payload)
				}
			}
		})
	}
}

// TestResumedSessionACL: when a device resumes its session, what the topic ACL no
// longer allows it is dropped before anything is sent: subscriptions, queued messages
// and unacknowledged ones. Retained messages and wills reach it only through the ACL
// too. The rules change here through the hook (in production the ACL is fixed per
// device, but a session may outlive the rules it was made under).
func TestResumedSessionACL(t *testing.T) {
	for _, version := range []byte{4, 5} {
		t.Run(map[byte]string{4: "mqtt311", 5: "mqtt5"}[version], func(t *testing.T) {
			b := startBroker(t, nil)
			const secret, ok = "atrium/r/sensor_001/secret", "atrium/r/sensor_001/ok"
			holder := dialRaw(t, b.Addr(), version)
			if ack := holder.connectSession("board-7", "sensor_001", devices["sensor_001"], false); ack.ReasonCode != 0 {
				t.Fatalf("connect: 0x%02x", ack.ReasonCode)
			}
			if codes, _ := holder.subscribe(1000, "atrium/+/sensor_001/#", secret); codes[0] != 1 || codes[1] != 1 {
				t.Fatalf("suback %x", codes)
			}
			// One message received but never acknowledged: mochi would send it again on resume.
			publishQoS1(t, b, "pub-1", secret, "inflight-secret", false)
			if pk, err := holder.read(); err != nil || string(pk.Payload) != "inflight-secret" {
				t.Fatalf("first delivery: %q, %v", pk.Payload, err)
			}
			holder.conn.Close()
			offline(t, b, "board-7")
			publishQoS1(t, b, "pub-2", secret, "queued-secret", false)
			publishQoS1(t, b, "pub-3", ok, "queued-ok", false)
			publishQoS1(t, b, "pub-4", secret, "retained-secret", true)

			// New rules: sensor_001 may still publish to .../secret, but not read it.
			b.auth.setRule(func(id, topic string, write bool) bool {
				return allowed(id, topic) && (write || !strings.HasSuffix(topic, "/secret"))
			})
			subs := b.Stats().Subscriptions
			back := dialRaw(t, b.Addr(), version)
			if ack := back.connectSession("board-7", "sensor_001", devices["sensor_001"], false); ack.ReasonCode != 0 || !ack.SessionPresent {
				t.Fatalf("resume: 0x%02x, session present %v", ack.ReasonCode, ack.SessionPresent)
			}
			if got := b.Stats().Subscriptions; got != subs-1 {
				t.Errorf("subscriptions %d after resume, want %d (the forbidden one dropped)", got, subs-1)
			}
			var got []packets.Packet
			codes, early := back.subscribe(1001, "atrium/+/sensor_001/#", secret) // again: retained messages follow
			got = append(got, early...)
			if codes[0] != 1 || codes[1] < 0x80 {
				t.Errorf("suback %x, want the secret filter refused", codes)
			}

			// A will on the secret topic (allowed to publish) must not reach the holder either.
			willer := dialRaw(t, b.Addr(), version)
			will := packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Connect}, Connect: packets.ConnectParams{
				ProtocolName: []byte("MQTT"), ClientIdentifier: "willer", Clean: true, Keepalive: 30,
				UsernameFlag: true, Username: []byte("sensor_001"), PasswordFlag: true, Password: []byte(devices["sensor_001"]),
				WillFlag: true, WillTopic: secret, WillPayload: []byte("will-secret"), WillQos: 1}}
			if err := willer.send(will); err != nil {
				t.Fatal(err)
			}
			if ack, err := willer.read(); err != nil || ack.ReasonCode != 0 {
				t.Fatalf("willer connect: 0x%02x, %v", ack.ReasonCode, err)
			}
			willer.conn.Close() // no DISCONNECT: the will is published
			poll(t, "the will sent", func() bool { _, there := b.srv.Clients.Get("willer"); return !there })
			publishQoS1(t, b, "pub-5", ok, "marker", false)

			for !containsPayload(got, "marker") {
				pk, err := back.read()
				if err != nil {
					t.Fatalf("reading after resume: %v (got %d messages)", err, len(got))
				}
				if pk.FixedHeader.Type != packets.Publish {
					continue
				}
				got = append(got, pk)
				if pk.FixedHeader.Qos > 0 {
					_ = back.send(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Puback}, PacketID: pk.PacketID})
				}
			}
			if !containsPayload(got, "queued-ok") {
				t.Error("the allowed queued message was not delivered on resume")
			}
			for _, pk := range got {
				if strings.Contains(string(pk.Payload), "secret") || strings.HasSuffix(pk.TopicName, "/secret") {
					t.Errorf("resumed session received %s %q, which its ACL no longer allows", pk.TopicName, pk.Payload)
				}
			}
			if b.Stats().SessionsFiltered != 1 {
				t.Errorf("sessions filtered %d, want 1", b.Stats().SessionsFiltered)
			}
		})
	}
}

func containsPayload(pks []packets.Packet, payload string) bool {
	for _, pk := range pks {
		if string(pk.Payload) == payload {
			return true
		}
	}
	return false
}

// TestConcurrentClaims: two devices connecting at once with one client id cannot both
// get it: exactly one is accepted, every time.
func TestConcurrentClaims(t *testing.T) {
	b := startBroker(t, nil)
	for round := range 20 {
		id := fmt.Sprintf("race-%d", round)
		var accepted atomic.Int32
		var answered, done sync.WaitGroup
		answered.Add(2)
		for _, dev := range []string{"sensor_001", "sensor_002"} {
			done.Go(func() {
				c, err := net.DialTimeout("tcp", b.Addr(), waitFor)
				if err != nil {
					answered.Done()
					return
				}
				defer c.Close()
				rc := &rawClient{t: t, conn: c, r: bufio.NewReader(c), version: 5}
				pk := packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Connect}, Connect: packets.ConnectParams{
					ProtocolName: []byte("MQTT"), ClientIdentifier: id, Clean: true, Keepalive: 30,
					UsernameFlag: true, Username: []byte(dev), PasswordFlag: true, Password: []byte(devices[dev])}}
				if rc.send(pk) == nil {
					if ack, err := rc.read(); err == nil && ack.ReasonCode == 0 {
						accepted.Add(1)
					}
				}
				answered.Done()
				answered.Wait() // the winner stays connected until both have their answer
			})
		}
		done.Wait()
		if n := accepted.Load(); n != 1 {
			t.Fatalf("round %d: %d devices accepted with client id %s, want exactly 1", round, n, id)
		}
	}
}

// TestDeviceRemovedWhileConnected: once a device is removed from the credentials file
// (and the broker has reloaded it), its connection may no longer publish.
func TestDeviceRemovedWhileConnected(t *testing.T) {
	b := startBroker(t, nil)
	dev := mustConnect(t, b, "sensor_001")
	if resp, err := dev.Publish(ctxT(t), &paho.Publish{Topic: "atrium/r/sensor_001", QoS: 1, Payload: []byte("1")}); err != nil || resp.ReasonCode != 0 {
		t.Fatalf("publish before removal: %v %+v", err, resp)
	}
	if err := credentials.Remove(b.cfg.CredentialsFile, "sensor_001"); err != nil {
		t.Fatal(err)
	}
	// The file is read again at a connection attempt, at most once a second.
	poll(t, "the removal in force", func() bool {
		_ = dialRaw(t, b.Addr(), 4).connect("probe", "sensor_002", devices["sensor_002"])
		resp, _ := dev.Publish(ctxT(t), &paho.Publish{Topic: "atrium/r/sensor_001", QoS: 1, Payload: []byte("1")})
		return resp != nil && resp.ReasonCode == packets.ErrNotAuthorized.Code
	})
}
