package broker

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/atrium-iot/atrium/internal/mqtttest"
	"github.com/atrium-iot/atrium/internal/testwait"

	"github.com/eclipse/paho.golang/paho"
	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
	"golang.org/x/crypto/bcrypt"
)

// waitFor is the generous deadline of every wait in these tests (a noisy 2-core machine,
// the race detector).
const waitFor = 30 * time.Second

// devices are the credentials every test broker knows.
var devices = map[string]string{
	"sensor_001": "pw-sensor-001-secret",
	"sensor_002": "pw-sensor-002-secret",
}

// writeCredentials writes a credentials file by hand (the documented format), with the
// cheapest bcrypt cost so that tests stay quick under the race detector.
func writeCredentials(t testing.TB, devs map[string]string) string {
	t.Helper()
	return writeCredentialsAt(t, devs, bcrypt.MinCost)
}

// writeCredentialsAt writes a credentials file with hashes of the given cost.
func writeCredentialsAt(t testing.TB, devs map[string]string, cost int) string {
	t.Helper()
	type device struct {
		ID   string `json:"id"`
		Hash string `json:"hash"`
	}
	var doc struct {
		Devices []device `json:"devices"`
	}
	for id, pw := range devs {
		h, err := bcrypt.GenerateFromPassword([]byte(pw), cost)
		if err != nil {
			t.Fatal(err)
		}
		doc.Devices = append(doc.Devices, device{id, string(h)})
	}
	b, err := json.Marshal(doc)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "credentials.json")
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn}))
}

// startBroker starts a broker on 127.0.0.1:0 with the test devices, after applying edit
// to its config, and closes it at the end of the test.
func startBroker(t testing.TB, edit func(*Config), hooks ...mqtt.Hook) *Broker {
	t.Helper()
	cfg := Config{Addr: "127.0.0.1:0", CredentialsFile: writeCredentials(t, devices)}
	if edit != nil {
		edit(&cfg)
	}
	b, err := New(cfg, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range hooks {
		if err := b.AddHook(h, nil); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	if err := b.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := b.Close(); err != nil {
			t.Error(err)
		}
	})
	return b
}

// connectPaho connects an MQTT 5 client as user (no username when user is "").
func connectPaho(t testing.TB, conn net.Conn, clientID, user, password string) (*mqtttest.Client, *paho.Connack, error) {
	t.Helper()
	return connectWith(t, conn, mqtttest.Login(clientID, user, password))
}

func connectWith(t testing.TB, conn net.Conn, cp *paho.Connect) (*mqtttest.Client, *paho.Connack, error) {
	t.Helper()
	return mqtttest.Connect(t, conn, cp, mqtttest.Options{Within: waitFor})
}

func dialTCP(t testing.TB, addr string) net.Conn {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, waitFor)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// mustConnect connects device id over TCP with its right password.
func mustConnect(t testing.TB, b *Broker, id string) *mqtttest.Client {
	t.Helper()
	c, ack, err := connectPaho(t, dialTCP(t, b.Addr()), id, id, devices[id])
	if err != nil {
		t.Fatalf("connect %s: %v (connack %+v)", id, err, ack)
	}
	return c
}

func ctxT(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	t.Cleanup(cancel)
	return ctx
}

// rawClient speaks MQTT 3.1.1 (or 5) packet by packet with mochi's codec, to test what
// paho.golang (MQTT 5 only, and polite about limits) cannot send.
type rawClient struct {
	t       testing.TB
	conn    net.Conn
	r       *bufio.Reader
	version byte
}

func dialRaw(t testing.TB, addr string, version byte) *rawClient {
	c := dialTCP(t, addr)
	return &rawClient{t: t, conn: c, r: bufio.NewReader(c), version: version}
}

// connectRaw dials b with a raw client of version and connects it as clientID (as
// user with password unless user is ""), failing the test unless b accepts it.
func connectRaw(t testing.TB, b *Broker, version byte, clientID, user, password string) *rawClient {
	t.Helper()
	rc := dialRaw(t, b.Addr(), version)
	if code := rc.connect(clientID, user, password); code != 0 {
		t.Fatalf("connect %s as %q: return code %#x", clientID, user, code)
	}
	return rc
}

// encoders are the packet types a rawClient sends, with mochi's encoder of each.
var encoders = map[byte]func(*packets.Packet, *bytes.Buffer) error{
	packets.Connect:     (*packets.Packet).ConnectEncode,
	packets.Publish:     (*packets.Packet).PublishEncode,
	packets.Subscribe:   (*packets.Packet).SubscribeEncode,
	packets.Disconnect:  (*packets.Packet).DisconnectEncode,
	packets.Puback:      (*packets.Packet).PubackEncode,
	packets.Pubrel:      (*packets.Packet).PubrelEncode,
	packets.Unsubscribe: (*packets.Packet).UnsubscribeEncode,
	packets.Pingreq:     (*packets.Packet).PingreqEncode,
}

// decoders are the packet types a rawClient decodes; it returns others with their
// fixed header only.
var decoders = map[byte]func(*packets.Packet, []byte) error{
	packets.Connack:    (*packets.Packet).ConnackDecode,
	packets.Puback:     (*packets.Packet).PubackDecode,
	packets.Suback:     (*packets.Packet).SubackDecode,
	packets.Publish:    (*packets.Packet).PublishDecode,
	packets.Disconnect: (*packets.Packet).DisconnectDecode,
}

func (rc *rawClient) send(pk packets.Packet) error {
	pk.ProtocolVersion = rc.version
	encode, ok := encoders[pk.FixedHeader.Type]
	if !ok {
		return fmt.Errorf("cannot send packet type %d", pk.FixedHeader.Type)
	}
	var buf bytes.Buffer
	if err := encode(&pk, &buf); err != nil {
		return err
	}
	_, err := rc.conn.Write(buf.Bytes())
	return err
}

// next reads the next packet's first byte (type and flags) and its bytes after the
// remaining length.
func (rc *rawClient) next() (byte, []byte, error) {
	_ = rc.conn.SetReadDeadline(time.Now().Add(waitFor))
	first, err := rc.r.ReadByte()
	if err != nil {
		return 0, nil, err
	}
	n, _, err := packets.DecodeLength(rc.r)
	if err != nil {
		return 0, nil, err
	}
	body := make([]byte, n)
	if _, err := io.ReadFull(rc.r, body); err != nil {
		return 0, nil, err
	}
	return first, body, nil
}

// read returns the next packet, or an error (io.EOF when the broker closed the connection).
func (rc *rawClient) read() (packets.Packet, error) {
	var pk packets.Packet
	pk.ProtocolVersion = rc.version
	first, body, err := rc.next()
	if err != nil {
		return pk, err
	}
	if err := pk.FixedHeader.Decode(first); err != nil {
		return pk, err
	}
	if decode, ok := decoders[pk.FixedHeader.Type]; ok {
		err = decode(&pk, body)
	}
	return pk, err
}

// connect sends CONNECT with a clean session and returns the CONNACK's reason (return) code.
func (rc *rawClient) connect(clientID, user, password string) byte {
	rc.t.Helper()
	return rc.connectSession(clientID, user, password, true).ReasonCode
}

// connectSession sends CONNECT, asking for a persistent session unless clean (MQTT 5:
// kept 5 minutes), and returns the CONNACK.
func (rc *rawClient) connectSession(clientID, user, password string, clean bool) packets.Packet {
	rc.t.Helper()
	pk := packets.Packet{
		FixedHeader: packets.FixedHeader{Type: packets.Connect},
		Connect: packets.ConnectParams{
			ProtocolName:     []byte("MQTT"),
			ClientIdentifier: clientID,
			Clean:            clean,
			Keepalive:        30,
		},
	}
	if !clean && rc.version == 5 {
		pk.Properties.SessionExpiryInterval, pk.Properties.SessionExpiryIntervalFlag = 300, true
	}
	if user != "" {
		pk.Connect.UsernameFlag, pk.Connect.Username = true, []byte(user)
		pk.Connect.PasswordFlag, pk.Connect.Password = true, []byte(password)
	}
	if err := rc.send(pk); err != nil {
		rc.t.Fatal(err)
	}
	ack, err := rc.read()
	if err != nil {
		rc.t.Fatalf("reading CONNACK: %v", err)
	}
	if ack.FixedHeader.Type != packets.Connack {
		rc.t.Fatalf("got packet type %d, want CONNACK", ack.FixedHeader.Type)
	}
	return ack
}

// subscribe sends SUBSCRIBE (QoS 1 for each filter) and returns the SUBACK's codes,
// with the PUBLISH packets that arrived before it.
func (rc *rawClient) subscribe(id uint16, filters ...string) (codes []byte, early []packets.Packet) {
	rc.t.Helper()
	pk := packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Subscribe, Qos: 1}, PacketID: id}
	for _, f := range filters {
		pk.Filters = append(pk.Filters, packets.Subscription{Filter: f, Qos: 1})
	}
	if err := rc.send(pk); err != nil {
		rc.t.Fatal(err)
	}
	for {
		got, err := rc.read()
		if err != nil {
			rc.t.Fatalf("waiting for SUBACK: %v", err)
		}
		switch got.FixedHeader.Type {
		case packets.Suback:
			return got.ReasonCodes, early
		case packets.Publish:
			early = append(early, got)
		}
	}
}

func (rc *rawClient) publish(topic string, qos byte, id uint16, payload []byte) error {
	return rc.send(packets.Packet{
		FixedHeader: packets.FixedHeader{Type: packets.Publish, Qos: qos},
		TopicName:   topic,
		PacketID:    id,
		Payload:     payload,
	})
}

// recordHook records the messages that pass the ACL (what the agent's ingest would see).
type recordHook struct {
	mqtt.HookBase
	mu     sync.Mutex
	topics []string
}

func (h *recordHook) ID() string           { return "test-record" }
func (h *recordHook) Provides(b byte) bool { return b == mqtt.OnPublish }
func (h *recordHook) seen() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]string(nil), h.topics...)
}
func (h *recordHook) OnPublish(_ *mqtt.Client, pk packets.Packet) (packets.Packet, error) {
	h.mu.Lock()
	h.topics = append(h.topics, pk.TopicName)
	h.mu.Unlock()
	return pk, nil
}

// poll waits until cond holds.
func poll(t testing.TB, what string, cond func() bool) {
	t.Helper()
	testwait.Within(t, waitFor, what, cond)
}

// closeInTime closes b, failing the test when Close errs or has not returned
// within waitFor.
func closeInTime(t *testing.T, b *Broker) {
	t.Helper()
	closed := make(chan error, 1)
	go func() { closed <- b.Close() }()
	select {
	case err := <-closed:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(waitFor):
		t.Fatal("Close did not return")
	}
}
