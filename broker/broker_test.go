package broker

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"
	pahopackets "github.com/eclipse/paho.golang/packets"
	"github.com/eclipse/paho.golang/paho"
	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/atrium-iot/atrium/broker/credentials"
	"github.com/atrium-iot/atrium/internal/mqtttest"
	"github.com/atrium-iot/atrium/internal/tlsx/tlsxtest"
)

func TestNewConfigErrors(t *testing.T) {
	creds := writeCredentials(t, devices)
	tests := []struct {
		name string
		cfg  Config
		want string
	}{
		{"no credentials, no anonymous", Config{Addr: "127.0.0.1:0"}, "no credentials file"},
		{"missing credentials file", Config{CredentialsFile: filepath.Join(t.TempDir(), "none.json")}, "no such file"},
		{"tls address without cert", Config{AllowAnonymous: true, TLSAddr: "127.0.0.1:0"}, "certificate"},
		{"cert without tls address", Config{AllowAnonymous: true, TLSCert: "c.pem", TLSKey: "k.pem"}, "without a TLS listen address"},
		{"tiny packet size", Config{CredentialsFile: creds, MaxPacketSize: 10}, "max packet size"},
		{"negative connections", Config{CredentialsFile: creds, MaxConnections: -1}, "max connections"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := New(tt.cfg, testLogger(t))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("New error %v, want one mentioning %q", err, tt.want)
			}
		})
	}
}

func TestAllowed(t *testing.T) {
	tests := []struct {
		id, topic string
		want      bool
	}{
		{"sensor_001", "atrium/room-101/sensor_001", true},
		{"sensor_001", "atrium/room-101/sensor_001/temperature", true},
		{"sensor_001", "atrium/room-101/sensor_001/status", true},
		{"sensor_001", "atrium/room-101/sensor_001/a/b", true},
		{"sensor_001", "atrium/+/sensor_001/#", true},
		{"sensor_001", "atrium/room-101/sensor_001/#", true},
		{"sensor_001", "atrium/room-101/sensor_002", false},
		{"sensor_001", "atrium/room-101/sensor_0011", false},
		{"sensor_001", "atrium/room-101/+", false},
		{"sensor_001", "atrium/room-101/#", false},
		{"sensor_001", "atrium/#", false},
		{"sensor_001", "atrium/#/sensor_001", false},
		{"sensor_001", "atrium/sensor_001", false},
		{"sensor_001", "other/room-101/sensor_001", false},
		{"sensor_001", "#", false},
		{"sensor_001", "$SYS/broker/clients", false},
		{"sensor_001", "$share/g/atrium/+/sensor_001", false},
		{"", "atrium/room-101/", false},
	}
	for _, tt := range tests {
		t.Run(tt.id+" "+tt.topic, func(t *testing.T) {
			if got := allowed(tt.id, tt.topic); got != tt.want {
				t.Errorf("allowed(%q, %q) = %v, want %v", tt.id, tt.topic, got, tt.want)
			}
		})
	}
	if n := testing.AllocsPerRun(100, func() { allowed("sensor_001", "atrium/room-101/sensor_001/temperature") }); n != 0 {
		t.Errorf("allowed allocates %v times a call, want 0", n)
	}
}

func TestConnectAuth(t *testing.T) {
	strict := startBroker(t, nil)
	open := startBroker(t, func(c *Config) { c.AllowAnonymous = true })
	tests := []struct {
		name               string
		b                  *Broker
		clientID, user, pw string
		ok                 bool
	}{
		{"right password", strict, "sensor_001", "sensor_001", devices["sensor_001"], true},
		{"any client id of its own", strict, "lab-board-7", "sensor_002", devices["sensor_002"], true},
		{"wrong password", strict, "sensor_001", "sensor_001", "guess", false},
		{"other device's password", strict, "sensor_001", "sensor_001", devices["sensor_002"], false},
		{"unknown device", strict, "sensor_999", "sensor_999", devices["sensor_001"], false},
		{"anonymous", strict, "anon", "", "", false},
		{"another device's client id", strict, "sensor_002", "sensor_001", devices["sensor_001"], false}, // 0x85, see below
		{"the broker's own inline client id", strict, "inline", "sensor_001", devices["sensor_001"], false},
		{"anonymous allowed", open, "anon", "", "", true},
		{"credentials still checked when anonymous allowed", open, "sensor_001", "sensor_001", "guess", false},
	}
	for _, tt := range tests {
		t.Run("mqtt5/"+tt.name, func(t *testing.T) {
			failures := tt.b.Stats().AuthFailures
			_, ack, err := connectPaho(t, dialTCP(t, tt.b.Addr()), tt.clientID, tt.user, tt.pw)
			if tt.ok {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatal("connected")
			}
			if idRefused(tt.clientID) {
				if ack == nil || ack.ReasonCode != packets.ErrClientIdentifierNotValid.Code {
					t.Fatalf("connack %+v, want reason 0x85", ack)
				}
				return
			}
			if ack == nil || ack.ReasonCode != packets.ErrBadUsernameOrPassword.Code {
				t.Fatalf("connack %+v, want reason 0x86", ack)
			}
			if got := tt.b.Stats().AuthFailures; got <= failures {
				t.Errorf("auth failures %d, want more than %d", got, failures)
			}
		})
		t.Run("mqtt311/"+tt.name, func(t *testing.T) {
			rc := dialRaw(t, tt.b.Addr(), 4)
			code := rc.connect(tt.clientID, tt.user, tt.pw)
			want := byte(0)
			switch {
			case !tt.ok && idRefused(tt.clientID):
				want = 2 // identifier rejected
			case !tt.ok:
				want = 5 // mochi maps 0x86 to 3.1.1's 5 "not authorized"
			}
			if code != want {
				t.Fatalf("return code %d, want %d", code, want)
			}
			if !tt.ok {
				if _, err := rc.read(); err == nil {
					t.Error("connection left open after refusal")
				}
			}
		})
	}
}

// idRefused reports whether TestConnectAuth's right credentials are refused for their
// client id alone.
func idRefused(clientID string) bool { return clientID == "sensor_002" || clientID == "inline" }

func TestPublishACL(t *testing.T) {
	rec := &recordHook{}
	b := startBroker(t, func(c *Config) { c.AllowAnonymous = true }, rec)
	// An anonymous client (allowed here) sees everything that gets through.
	watcher, _, err := connectPaho(t, dialTCP(t, b.Addr()), "watcher", "", "")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := watcher.Subscribe(ctxT(t), &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: "#", QoS: 1}}}); err != nil {
		t.Fatal(err)
	}
	// sensor_002 subscribes to its own topics: it must not see sensor_001 impersonating it.
	victim := mustConnect(t, b, "sensor_002")
	if _, err := victim.Subscribe(ctxT(t), &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: "atrium/+/sensor_002/#", QoS: 1}}}); err != nil {
		t.Fatal(err)
	}
	dev := mustConnect(t, b, "sensor_001")

	tests := []struct {
		topic  string
		reason byte
	}{
		{"atrium/room-101/sensor_001", 0},
		{"atrium/room-101/sensor_001/temperature", 0},
		{"atrium/room-101/sensor_002", 0x87},
		{"atrium/room-101/sensor_002/temperature", 0x87},
		{"atrium/sensor_001", 0x87},
		{"other/room-101/sensor_001", 0x87},
	}
	for _, tt := range tests {
		t.Run("mqtt5 qos1 "+tt.topic, func(t *testing.T) {
			resp, err := dev.Publish(ctxT(t), &paho.Publish{Topic: tt.topic, QoS: 1, Payload: []byte("21.5")})
			if resp == nil {
				t.Fatalf("no PUBACK: %v", err)
			}
			if resp.ReasonCode != tt.reason {
				t.Errorf("PUBACK reason 0x%02x, want 0x%02x", resp.ReasonCode, tt.reason)
			}
		})
	}
	t.Run("mqtt5 qos0 to another device is dropped", func(t *testing.T) {
		if _, err := dev.Publish(ctxT(t), &paho.Publish{Topic: "atrium/room-101/sensor_002", QoS: 0, Payload: []byte("q0")}); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("mqtt311", func(t *testing.T) {
		rc := connectRaw(t, b, 4, "sensor_001-v3", "sensor_001", devices["sensor_001"])
		if err := rc.publish("atrium/room-101/sensor_002", 0, 0, []byte("v3 q0")); err != nil {
			t.Fatal(err)
		}
		if err := rc.publish("atrium/room-101/sensor_001/humidity", 1, 7, []byte("40")); err != nil {
			t.Fatal(err)
		}
		ack, err := rc.read()
		if err != nil || ack.FixedHeader.Type != packets.Puback || ack.PacketID != 7 {
			t.Fatalf("want PUBACK 7 for own topic, got type %d id %d, %v", ack.FixedHeader.Type, ack.PacketID, err)
		}
		if err := rc.publish("atrium/room-101/sensor_002", 1, 8, []byte("v3 q1")); err != nil {
			t.Fatal(err)
		}
		for { // 3.1.1 cannot refuse one message: the client is disconnected.
			pk, err := rc.read()
			if err != nil {
				break
			}
			if pk.FixedHeader.Type == packets.Puback {
				t.Fatal("PUBACK for a refused 3.1.1 publish")
			}
		}
	})

	// The marker is published last by the same client: once the watcher has it, any
	// refused message would have arrived before it.
	const marker = "atrium/room-101/sensor_001/marker"
	if _, err := dev.Publish(ctxT(t), &paho.Publish{Topic: marker, QoS: 1, Payload: []byte("end")}); err != nil {
		t.Fatal(err)
	}
	for _, m := range watcher.WaitTopic(t, marker) {
		if !strings.Contains(m.Topic, "/sensor_001") || !strings.HasPrefix(m.Topic, "atrium/") {
			t.Errorf("watcher received refused message on %s (%q)", m.Topic, m.Payload)
		}
	}
	for _, topic := range rec.seen() {
		if !allowed("sensor_001", topic) {
			t.Errorf("ingest hook saw refused message on %s", topic)
		}
	}
	if msgs := victim.Messages(); len(msgs) != 0 {
		t.Errorf("sensor_002 received %d messages published by sensor_001, first on %s", len(msgs), msgs[0].Topic)
	}
	if b.Stats().ACLDenied == 0 {
		t.Error("ACL denials not counted")
	}
}

func TestSubscribeACL(t *testing.T) {
	b := startBroker(t, nil)
	dev := mustConnect(t, b, "sensor_001")
	tests := []struct {
		filter string
		ok     bool
	}{
		{"atrium/+/sensor_001/#", true},
		{"atrium/room-101/sensor_001", true},
		{"atrium/#", false},
		{"#", false},
		{"atrium/+/sensor_002/#", false},
		{"atrium/+/+/temperature", false},
		{"$SYS/#", false},
		{"$share/g/atrium/+/sensor_001", false},
	}
	for _, tt := range tests {
		t.Run(tt.filter, func(t *testing.T) {
			ack, _ := dev.Subscribe(ctxT(t), &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: tt.filter, QoS: 1}}})
			if ack == nil || len(ack.Reasons) != 1 {
				t.Fatalf("suback %+v", ack)
			}
			if granted := ack.Reasons[0] < 0x80; granted != tt.ok {
				t.Errorf("reason 0x%02x, want granted=%v", ack.Reasons[0], tt.ok)
			}
		})
	}
	t.Run("mqtt311", func(t *testing.T) {
		rc := connectRaw(t, b, 4, "sensor_002", "sensor_002", devices["sensor_002"])
		err := rc.send(packets.Packet{
			FixedHeader: packets.FixedHeader{Type: packets.Subscribe, Qos: 1},
			PacketID:    3,
			Filters:     packets.Subscriptions{{Filter: "atrium/#", Qos: 1}, {Filter: "atrium/+/sensor_002/#", Qos: 1}},
		})
		if err != nil {
			t.Fatal(err)
		}
		ack, err := rc.read()
		if err != nil || ack.FixedHeader.Type != packets.Suback {
			t.Fatalf("want SUBACK, got type %d, %v", ack.FixedHeader.Type, err)
		}
		if !bytes.Equal(ack.ReasonCodes, []byte{0x80, 1}) {
			t.Errorf("suback codes %x, want 80 01", ack.ReasonCodes)
		}
	})
}

func TestDeviceAddedWhileRunning(t *testing.T) {
	b := startBroker(t, nil)
	pw, err := credentials.Add(b.cfg.CredentialsFile, "sensor_new")
	if err != nil {
		t.Fatal(err)
	}
	// The broker looks at the file at most once a second: retry until it has.
	poll(t, "new device accepted", func() bool {
		rc := dialRaw(t, b.Addr(), 4)
		defer rc.conn.Close()
		return rc.connect("sensor_new", "sensor_new", pw) == 0
	})
}

// blockingHook holds every publish in OnPublish until released, like an ingest hook
// waiting for fsync.
type blockingHook struct {
	mqtt.HookBase
	entered chan string
	release chan struct{}
	refuse  bool
}

func (h *blockingHook) ID() string           { return "test-blocking" }
func (h *blockingHook) Provides(b byte) bool { return b == mqtt.OnPublish }
func (h *blockingHook) OnPublish(cl *mqtt.Client, pk packets.Packet) (packets.Packet, error) {
	h.entered <- DeviceID(cl)
	<-h.release
	if h.refuse {
		return pk, RefusePublish(cl, pk)
	}
	return pk, nil
}

func TestPubackFollowsOnPublish(t *testing.T) {
	hook := &blockingHook{entered: make(chan string, 1), release: make(chan struct{})}
	b := startBroker(t, nil, hook)
	dev := mustConnect(t, b, "sensor_001")

	done := make(chan error, 1)
	go func() {
		_, err := dev.Publish(context.Background(), &paho.Publish{Topic: "atrium/r/sensor_001", QoS: 1, Payload: []byte("1")})
		done <- err
	}()
	select {
	case id := <-hook.entered:
		if id != "sensor_001" {
			t.Errorf("DeviceID = %q, want sensor_001", id)
		}
	case <-time.After(waitFor):
		t.Fatal("OnPublish not called")
	}
	// The hook is blocked: there must be no PUBACK yet. Give a wrong broker time to send one.
	select {
	case err := <-done:
		t.Fatalf("publish completed (err %v) while OnPublish was still blocked", err)
	case <-time.After(300 * time.Millisecond):
	}
	close(hook.release)
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("publish: %v", err)
		}
	case <-time.After(waitFor):
		t.Fatal("no PUBACK after OnPublish returned")
	}
}

func TestRefusePublish(t *testing.T) {
	hook := &blockingHook{entered: make(chan string, 16), release: make(chan struct{}), refuse: true}
	close(hook.release)
	b := startBroker(t, func(c *Config) { c.AllowAnonymous = true }, hook)
	watcher, _, err := connectPaho(t, dialTCP(t, b.Addr()), "watcher", "", "")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := watcher.Subscribe(ctxT(t), &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: "#"}}}); err != nil {
		t.Fatal(err)
	}

	t.Run("mqtt5 qos1 gets a failure PUBACK", func(t *testing.T) {
		dev := mustConnect(t, b, "sensor_001")
		resp, _ := dev.Publish(ctxT(t), &paho.Publish{Topic: "atrium/r/sensor_001", QoS: 1, Payload: []byte("1")})
		if resp == nil || resp.ReasonCode != packets.ErrUnspecifiedError.Code {
			t.Fatalf("PUBACK %+v, want reason 0x80", resp)
		}
	})
	t.Run("mqtt311 qos1 is disconnected without PUBACK", func(t *testing.T) {
		rc := connectRaw(t, b, 4, "sensor_002", "sensor_002", devices["sensor_002"])
		if err := rc.publish("atrium/r/sensor_002", 1, 9, []byte("1")); err != nil {
			t.Fatal(err)
		}
		pk, err := rc.read()
		if err == nil {
			t.Fatalf("got packet type %d, want the connection closed", pk.FixedHeader.Type)
		}
	})
	if n := len(watcher.Messages()); n != 0 {
		t.Errorf("refused messages reached a subscriber: %d", n)
	}
}

type aclHook struct{ mqtt.HookBase }

func (h *aclHook) ID() string           { return "test-acl" }
func (h *aclHook) Provides(b byte) bool { return b == mqtt.OnACLCheck }

func TestAddHookRules(t *testing.T) {
	b, err := New(Config{Addr: "127.0.0.1:0", CredentialsFile: writeCredentials(t, devices)}, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if err := b.AddHook(&aclHook{}, nil); err == nil {
		t.Error("a hook providing OnACLCheck was accepted")
	}
	if err := b.AddHook(&recordHook{}, nil); err != nil {
		t.Errorf("OnPublish hook refused: %v", err)
	}
	if err := b.Start(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	if err := b.AddHook(&recordHook{}, nil); err == nil {
		t.Error("AddHook after Start accepted")
	}
}

func TestTLSListener(t *testing.T) {
	ca := tlsxtest.NewCA(t, "Atrium Test CA")
	srv := ca.Server(t, "atrium test broker")
	pool := x509.NewCertPool()
	pool.AddCert(ca.Cert)
	b := startBroker(t, func(c *Config) {
		c.TLSAddr, c.TLSCert, c.TLSKey = "127.0.0.1:0", srv.CertFile, srv.KeyFile
	})
	if b.TLSAddr() == "" || strings.HasSuffix(b.TLSAddr(), ":0") || b.TLSAddr() == b.Addr() {
		t.Fatalf("TLSAddr %q (Addr %q)", b.TLSAddr(), b.Addr())
	}
	d := &tls.Dialer{Config: &tls.Config{RootCAs: pool, ServerName: "127.0.0.1"}}
	conn, err := d.DialContext(ctxT(t), "tcp", b.TLSAddr())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	dev, _, err := connectPaho(t, pahopackets.NewThreadSafeConn(conn), "sensor_001", "sensor_001", devices["sensor_001"])
	if err != nil {
		t.Fatal(err)
	}
	if _, err := dev.Publish(ctxT(t), &paho.Publish{Topic: "atrium/r/sensor_001", QoS: 1, Payload: []byte("1")}); err != nil {
		t.Errorf("publish over TLS: %v", err)
	}
	t.Run("wrong password over TLS refused", func(t *testing.T) {
		conn, err := d.DialContext(ctxT(t), "tcp", b.TLSAddr())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { conn.Close() })
		if _, _, err := connectPaho(t, pahopackets.NewThreadSafeConn(conn), "sensor_001", "sensor_001", "guess"); err == nil {
			t.Error("connected")
		}
	})
	t.Run("plain MQTT on the TLS port fails", func(t *testing.T) {
		rc := dialRaw(t, b.TLSAddr(), 4)
		_ = rc.send(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Connect},
			Connect: packets.ConnectParams{ProtocolName: []byte("MQTT"), ClientIdentifier: "x", Clean: true}})
		if pk, err := rc.read(); err == nil && pk.FixedHeader.Type == packets.Connack {
			t.Error("got a CONNACK over plain TCP")
		}
	})
}

func TestWebSocketListener(t *testing.T) {
	b := startBroker(t, func(c *Config) { c.WSAddr = "127.0.0.1:0" })
	if b.WSAddr() == "" || strings.HasSuffix(b.WSAddr(), ":0") {
		t.Fatalf("WSAddr %q", b.WSAddr())
	}
	ws, resp, err := websocket.Dial(ctxT(t), "ws://"+b.WSAddr()+"/mqtt", &websocket.DialOptions{Subprotocols: []string{"mqtt"}})
	if err != nil {
		t.Fatal(err)
	}
	if got := resp.Header.Get("Sec-WebSocket-Protocol"); got != "mqtt" {
		t.Errorf("subprotocol %q, want mqtt", got)
	}
	conn := websocket.NetConn(context.Background(), ws, websocket.MessageBinary)
	t.Cleanup(func() { conn.Close() })
	dev, _, err := connectPaho(t, conn, "sensor_001", "sensor_001", devices["sensor_001"])
	if err != nil {
		t.Fatal(err)
	}
	const topic = "atrium/r/sensor_001/temperature"
	if _, err := dev.Subscribe(ctxT(t), &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: "atrium/+/sensor_001/#", QoS: 1}}}); err != nil {
		t.Fatal(err)
	}
	if _, err := dev.Publish(ctxT(t), &paho.Publish{Topic: topic, QoS: 1, Payload: []byte("21.5")}); err != nil {
		t.Fatal(err)
	}
	if msgs := dev.WaitTopic(t, topic); string(msgs[len(msgs)-1].Payload) != "21.5" {
		t.Errorf("payload %q", msgs[len(msgs)-1].Payload)
	}
}

func TestMaxConnections(t *testing.T) {
	b := startBroker(t, func(c *Config) { c.MaxConnections = 2 })
	first := mustConnect(t, b, "sensor_001")
	mustConnect(t, b, "sensor_002")

	_, ack, err := connectPaho(t, dialTCP(t, b.Addr()), "sensor_001-b", "sensor_001", devices["sensor_001"])
	if err == nil || ack == nil || ack.ReasonCode != packets.ErrServerBusy.Code {
		t.Fatalf("third client: err %v, connack %+v; want reason 0x89 server busy", err, ack)
	}
	rc := dialRaw(t, b.Addr(), 4)
	if code := rc.connect("sensor_001-c", "sensor_001", devices["sensor_001"]); code != 3 {
		t.Errorf("3.1.1 return code %d, want 3 server unavailable", code)
	}
	poll(t, "both refusals counted", func() bool { return b.Stats().ConnectionsRejected == 2 })

	if err := first.Disconnect(&paho.Disconnect{}); err != nil {
		t.Fatal(err)
	}
	poll(t, "a free slot", func() bool { return b.Stats().ClientsConnected < 2 })
	if _, _, err := connectPaho(t, dialTCP(t, b.Addr()), "sensor_001", "sensor_001", devices["sensor_001"]); err != nil {
		t.Errorf("connect after a slot freed: %v", err)
	}
}

func TestMaxPacketSize(t *testing.T) {
	b := startBroker(t, func(c *Config) { c.MaxPacketSize = 1024 })
	_, ack, err := connectPaho(t, dialTCP(t, b.Addr()), "sensor_002", "sensor_002", devices["sensor_002"])
	if err != nil {
		t.Fatal(err)
	}
	if ack.Properties == nil || ack.Properties.MaximumPacketSize == nil || *ack.Properties.MaximumPacketSize != 1024 {
		t.Errorf("CONNACK does not advertise maximum packet size 1024: %+v", ack.Properties)
	}

	for _, version := range []byte{4, 5} {
		t.Run(map[byte]string{4: "mqtt311", 5: "mqtt5"}[version], func(t *testing.T) {
			rc := connectRaw(t, b, version, "sensor_001", "sensor_001", devices["sensor_001"])
			if err := rc.publish("atrium/r/sensor_001", 1, 1, bytes.Repeat([]byte("x"), 900)); err != nil {
				t.Fatal(err)
			}
			if pk, err := rc.read(); err != nil || pk.FixedHeader.Type != packets.Puback {
				t.Fatalf("under the limit: type %d, %v; want PUBACK", pk.FixedHeader.Type, err)
			}
			_ = rc.publish("atrium/r/sensor_001", 1, 2, bytes.Repeat([]byte("x"), 2000))
			for {
				pk, err := rc.read()
				if err != nil {
					if !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) && !strings.Contains(err.Error(), "reset") {
						t.Errorf("read after oversize: %v, want the connection closed", err)
					}
					break
				}
				if pk.FixedHeader.Type == packets.Puback {
					t.Fatal("oversize packet acknowledged")
				}
			}
		})
	}
}

// gatedConn stops reading while stalled, like a subscriber whose process hangs.
type gatedConn struct {
	net.Conn
	stalled atomic.Bool
	gate    chan struct{}
}

func (g *gatedConn) Read(p []byte) (int, error) {
	if g.stalled.Load() {
		<-g.gate
	}
	return g.Conn.Read(p)
}

// TestQoS0FanOut publishes a burst of QoS 0 messages to a subscriber that stops reading
// meanwhile. With mochi's default of 8,192 pending writes per client, what does not fit
// in the queue and the socket buffers is dropped; with this package's default none is.
func TestQoS0FanOut(t *testing.T) {
	const n = 20_000
	payload := bytes.Repeat([]byte("p"), 2048)
	tests := []struct {
		name        string
		pending     int
		wantDropped bool
	}{
		{"mochi default 8192", 8192, true},
		{"broker default", 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := startBroker(t, func(c *Config) { c.AllowAnonymous = true; c.MaxPendingWrites = tt.pending })
			raw := dialTCP(t, b.Addr())
			// A small receive buffer (no autotuning) keeps the kernel from absorbing the burst.
			if err := raw.(*net.TCPConn).SetReadBuffer(64 << 10); err != nil {
				t.Fatal(err)
			}
			gc := &gatedConn{Conn: raw, gate: make(chan struct{})}
			var received atomic.Int64
			sub, _, err := connectPaho(t, gc, "slow-subscriber", "", "")
			if err != nil {
				t.Fatal(err)
			}
			sub.AddOnPublishReceived(func(paho.PublishReceived) (bool, error) {
				received.Add(1)
				return true, nil
			})
			if _, err := sub.Subscribe(ctxT(t), &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: "atrium/#"}}}); err != nil {
				t.Fatal(err)
			}
			gc.stalled.Store(true)

			pub, _, err := connectPaho(t, dialTCP(t, b.Addr()), "publisher", "", "")
			if err != nil {
				t.Fatal(err)
			}
			for i := range n {
				if _, err := pub.Publish(ctxT(t), &paho.Publish{Topic: "atrium/r/sensor_001", Payload: payload}); err != nil {
					t.Fatalf("publish %d: %v", i, err)
				}
			}
			poll(t, "the broker to read every publish", func() bool { return b.Stats().MessagesReceived >= n })
			gc.stalled.Store(false)
			close(gc.gate)
			poll(t, "every message delivered or dropped", func() bool {
				return received.Load()+b.Stats().MessagesDropped >= n
			})
			dropped := b.Stats().MessagesDropped
			t.Logf("pending writes %d: received %d, dropped %d", b.cfg.MaxPendingWrites, received.Load(), dropped)
			if tt.wantDropped && dropped == 0 {
				t.Errorf("no message dropped: the test no longer shows the limit")
			}
			if !tt.wantDropped && (dropped != 0 || received.Load() != n) {
				t.Errorf("received %d of %d, dropped %d", received.Load(), n, dropped)
			}
		})
	}
}

func TestClose(t *testing.T) {
	b, err := New(Config{Addr: "127.0.0.1:0", WSAddr: "127.0.0.1:0", CredentialsFile: writeCredentials(t, devices)}, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Start(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	disconnected := make(chan byte, 1)
	cp := mqtttest.Login("sensor_001", "sensor_001", devices["sensor_001"])
	cp.KeepAlive = 30
	if _, _, err := mqtttest.Connect(t, dialTCP(t, b.Addr()), cp, mqtttest.Options{Within: waitFor,
		OnServerDisconnect: func(d *paho.Disconnect) { disconnected <- d.ReasonCode }}); err != nil {
		t.Fatal(err)
	}
	// A connection that never sends CONNECT must not hold Close up.
	idle := dialTCP(t, b.Addr())

	closeInTime(t, b)
	select {
	case code := <-disconnected:
		if code != packets.ErrServerShuttingDown.Code {
			t.Errorf("DISCONNECT reason 0x%02x, want 0x8b", code)
		}
	case <-time.After(waitFor):
		t.Error("client not told of the shutdown")
	}
	_ = idle.SetReadDeadline(time.Now().Add(waitFor))
	if _, err := idle.Read(make([]byte, 1)); err == nil {
		t.Error("idle connection still open")
	}
	if c, err := net.DialTimeout("tcp", b.Addr(), time.Second); err == nil {
		c.Close()
		t.Error("still accepting after Close")
	}
	if err := b.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}

// TestCloseWhileClientsLeave closes the broker while clients are still connecting
// and leaving. mochi v2.7.9's own Close can deadlock when a client is removed while
// it lists a listener's clients; Close must return every time.
func TestCloseWhileClientsLeave(t *testing.T) {
	for round := range 5 {
		t.Run(fmt.Sprintf("round=%d", round), func(t *testing.T) {
			b, err := New(Config{Addr: "127.0.0.1:0", AllowAnonymous: true}, testLogger(t))
			if err != nil {
				t.Fatal(err)
			}
			if err := b.Start(ctxT(t)); err != nil {
				t.Fatal(err)
			}
			const n = 200
			clients := make([]*rawClient, n)
			for i := range clients {
				clients[i] = dialRaw(t, b.Addr(), 4)
				if code := clients[i].connect(fmt.Sprintf("leaver-%d", i), "", ""); code != packets.CodeSuccess.Code {
					t.Fatalf("client %d: CONNACK 0x%02x", i, code)
				}
			}
			// Half of them leave (a clean session: mochi removes the client) while
			// Close runs.
			var wg sync.WaitGroup
			for i := 0; i < n; i += 2 {
				wg.Go(func() {
					_ = clients[i].send(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Disconnect}})
					_ = clients[i].conn.Close()
				})
			}
			closeInTime(t, b)
			wg.Wait()
			if left := len(b.srv.Clients.GetAll()); left > 1 { // the inline client stays
				t.Errorf("%d clients left after Close", left-1)
			}
			for i := 1; i < n; i += 2 {
				_ = clients[i].conn.SetReadDeadline(time.Now().Add(waitFor))
				if _, err := io.Copy(io.Discard, clients[i].conn); err != nil {
					t.Fatalf("client %d: connection not closed by the broker: %v", i, err)
				}
			}
		})
	}
}

func TestConnectTimeout(t *testing.T) {
	b := startBroker(t, func(c *Config) { c.ConnectTimeout = 200 * time.Millisecond })
	idle := dialTCP(t, b.Addr())
	_ = idle.SetReadDeadline(time.Now().Add(waitFor))
	if _, err := idle.Read(make([]byte, 1)); err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
		t.Errorf("read: %v; want the broker to close a connection that sends no CONNECT", err)
	}
	// Keepalive 0 after CONNECT clears the connect deadline.
	rc := dialRaw(t, b.Addr(), 4)
	pk := packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Connect}, Connect: packets.ConnectParams{
		ProtocolName: []byte("MQTT"), ClientIdentifier: "sensor_001", Clean: true,
		UsernameFlag: true, Username: []byte("sensor_001"), PasswordFlag: true, Password: []byte(devices["sensor_001"])}}
	if err := rc.send(pk); err != nil {
		t.Fatal(err)
	}
	if ack, err := rc.read(); err != nil || ack.ReasonCode != 0 {
		t.Fatalf("connack %d, %v", ack.ReasonCode, err)
	}
	// A connection opened after the CONNECT: once the broker has closed it for its
	// silence, the connect deadline rc had, set earlier, has passed as well.
	later := dialTCP(t, b.Addr())
	_ = later.SetReadDeadline(time.Now().Add(waitFor))
	if _, err := later.Read(make([]byte, 1)); err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("read: %v; want the broker to close a connection that sends no CONNECT", err)
	}
	if err := rc.publish("atrium/r/sensor_001", 1, 5, []byte("1")); err != nil {
		t.Fatal(err)
	}
	if ack, err := rc.read(); err != nil || ack.FixedHeader.Type != packets.Puback {
		t.Errorf("connection closed after CONNECT by the connect timeout: %v", err)
	}
}

func TestCollector(t *testing.T) {
	b := startBroker(t, nil)
	dev := mustConnect(t, b, "sensor_001")
	if _, err := dev.Publish(ctxT(t), &paho.Publish{Topic: "atrium/r/sensor_001", QoS: 1, Payload: []byte("1")}); err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewPedanticRegistry()
	if err := reg.Register(b.Collector()); err != nil {
		t.Fatal(err)
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, mf := range mfs {
		m := mf.GetMetric()[0]
		got[mf.GetName()] = m.GetCounter().GetValue() + m.GetGauge().GetValue()
	}
	if got["atrium_broker_messages_received_total"] < 1 || got["atrium_broker_clients_connected"] != 1 {
		t.Errorf("metrics %v", got)
	}
	if _, ok := got["atrium_broker_messages_dropped_total"]; !ok {
		t.Error("no dropped-messages counter")
	}
}
