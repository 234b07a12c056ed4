// Package mqtttest is the MQTT 5 client (paho.golang) of the tests that talk to a
// broker: the broker's own, the agent's and the simulator's. A Client connects with a
// CONNECT packet the test chooses, keeps every message it receives, publishes and
// waits for the acknowledgement, and is disconnected when the test ends. Serve runs a
// bare mochi-mqtt server for tests that need a broker without the agent's.
package mqtttest

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/listeners"
)

// Deadline bounds a client's CONNECT, each acknowledgement it waits for and each of
// its waits, unless Options.Within says otherwise.
const Deadline = 30 * time.Second

// Options are what a test may choose beyond the CONNECT packet.
type Options struct {
	// Within replaces Deadline.
	Within time.Duration
	// OnServerDisconnect is called with a DISCONNECT the broker sends.
	OnServerDisconnect func(*paho.Disconnect)
}

// Client is a connected paho.golang client that keeps the messages it receives.
type Client struct {
	*paho.Client
	conn   net.Conn
	within time.Duration

	mu   sync.Mutex
	msgs []*paho.Publish
	got  chan struct{} // signalled on every message
}

// Login is a clean-start CONNECT for clientID, as user with password unless user is
// "". Its keep-alive is 0, which turns paho's pinger off: paho writes a packet in
// several writes, which only a bare *net.TCPConn (writev) keeps together, and the
// pinger's PINGREQ would interleave with them on a wrapped, TLS or WebSocket
// connection.
func Login(clientID, user, password string) *paho.Connect {
	cp := &paho.Connect{ClientID: clientID, KeepAlive: 0, CleanStart: true}
	if user != "" {
		cp.Username, cp.UsernameFlag = user, true
		cp.Password, cp.PasswordFlag = []byte(password), true
	}
	return cp
}

// Connect sends cp over conn and returns the client with the CONNACK, or the error
// with the CONNACK when the broker sent one (a refusal), and then closes conn. It
// never fails t, so a test may connect from any goroutine and expect refusals. A
// connected client is disconnected when the test ends.
func Connect(t testing.TB, conn net.Conn, cp *paho.Connect, o Options) (*Client, *paho.Connack, error) {
	t.Helper()
	c := &Client{conn: conn, within: o.Within, got: make(chan struct{}, 1)}
	if c.within <= 0 {
		c.within = Deadline
	}
	c.Client = paho.NewClient(paho.ClientConfig{
		Conn:               conn,
		PacketTimeout:      c.within,
		OnPublishReceived:  []func(paho.PublishReceived) (bool, error){c.record},
		OnServerDisconnect: o.OnServerDisconnect,
	})
	ctx, cancel := context.WithTimeout(context.Background(), c.within)
	defer cancel()
	ack, err := c.Connect(ctx, cp)
	if err != nil {
		_ = conn.Close()
		return nil, ack, err
	}
	t.Cleanup(c.Close)
	return c, ack, nil
}

// Dial connects to addr over TCP and then as Connect does.
func Dial(t testing.TB, addr string, cp *paho.Connect, o Options) (*Client, *paho.Connack, error) {
	t.Helper()
	within := o.Within
	if within <= 0 {
		within = Deadline
	}
	conn, err := net.DialTimeout("tcp", addr, within)
	if err != nil {
		return nil, nil, err
	}
	return Connect(t, conn, cp, o)
}

// MustDial is Dial that fails t when the client is not connected.
func MustDial(t testing.TB, addr string, cp *paho.Connect, o Options) *Client {
	t.Helper()
	c, ack, err := Dial(t, addr, cp, o)
	if err != nil {
		t.Fatalf("connect %s to %s: %v (connack %+v)", cp.ClientID, addr, err, ack)
	}
	return c
}

// Drop closes the connection without a DISCONNECT, as a device that loses power
// does: the broker then sends the client's will.
func (c *Client) Drop() { _ = c.conn.Close() }

// Close sends a DISCONNECT and closes the connection; the end of the test does it
// for a client still connected.
func (c *Client) Close() {
	_ = c.Disconnect(&paho.Disconnect{})
	_ = c.conn.Close()
}

// record keeps a message the client received and signals got.
func (c *Client) record(pr paho.PublishReceived) (bool, error) {
	c.mu.Lock()
	c.msgs = append(c.msgs, pr.Packet)
	c.mu.Unlock()
	select {
	case c.got <- struct{}{}:
	default:
	}
	return true, nil
}

// Messages returns the messages received so far, in the order they arrived.
func (c *Client) Messages() []*paho.Publish {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]*paho.Publish(nil), c.msgs...)
}

// Wait waits until cond holds for the messages received so far and returns them;
// it fails t when cond does not hold within the client's deadline. what names the
// awaited thing in the failure.
func (c *Client) Wait(t testing.TB, what string, cond func([]*paho.Publish) bool) []*paho.Publish {
	t.Helper()
	deadline := time.After(c.within)
	for {
		msgs := c.Messages()
		if cond(msgs) {
			return msgs
		}
		select {
		case <-c.got:
		case <-deadline:
			t.Fatalf("no %s within %v (received %d messages)", what, c.within, len(msgs))
		}
	}
}

// WaitTopic waits until a message on topic has arrived and returns every message
// received so far.
func (c *Client) WaitTopic(t testing.TB, topic string) []*paho.Publish {
	t.Helper()
	return c.Wait(t, "message on "+topic, func(msgs []*paho.Publish) bool {
		for _, m := range msgs {
			if m.Topic == topic {
				return true
			}
		}
		return false
	})
}

// MustSubscribe subscribes to filter with qos and fails t unless the SUBACK grants it.
func (c *Client) MustSubscribe(t testing.TB, filter string, qos byte) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), c.within)
	defer cancel()
	ack, err := c.Subscribe(ctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: filter, QoS: qos}}})
	if err != nil {
		t.Fatalf("subscribe %s: %v", filter, err)
	}
	if len(ack.Reasons) != 1 || ack.Reasons[0] >= 0x80 {
		t.Fatalf("subscribe %s: SUBACK reasons %v", filter, ack.Reasons)
	}
}

// Send publishes payload on topic with qos and, above QoS 0, waits for the
// acknowledgement. It returns the acknowledgement's reason code (a refusal, ≥ 0x80,
// is not an error here), or an error when none came: paho keeps an unacknowledged
// message in its session when the connection drops, so Send stops waiting when the
// client is done.
func (c *Client) Send(topic string, qos byte, payload []byte) (byte, error) {
	ctx, cancel := context.WithTimeout(context.Background(), c.within)
	defer cancel()
	go func() {
		select {
		case <-c.Done():
			cancel()
		case <-ctx.Done():
		}
	}()
	pr, err := c.Publish(ctx, &paho.Publish{QoS: qos, Topic: topic, Payload: payload})
	if pr != nil {
		return pr.ReasonCode, nil
	}
	return 0, err
}

// MustSend is Send that fails t unless the acknowledgement says success.
func (c *Client) MustSend(t testing.TB, topic string, qos byte, payload []byte) {
	t.Helper()
	rc, err := c.Send(topic, qos, payload)
	if err == nil && rc >= 0x80 {
		err = fmt.Errorf("reason code %#x", rc)
	}
	if err != nil {
		t.Fatalf("publish %s %q: %v", topic, payload, err)
	}
}

// Serve runs a bare mochi-mqtt server on a loopback port with one hook (such as
// mochi's auth.AllowHook) and its config, and returns its address. It is closed
// when the test ends: mochi v2.7.9's Close can deadlock on its clients lock while
// clients are still being removed (GetByListener takes the read lock twice), so
// the disconnected clients go first, and a Close that does not return within
// Deadline is left running rather than hang the test.
func Serve(t testing.TB, hook mqtt.Hook, config any) string {
	t.Helper()
	srv := mqtt.New(&mqtt.Options{Logger: slog.New(slog.DiscardHandler)})
	if err := srv.AddHook(hook, config); err != nil {
		t.Fatal(err)
	}
	ln := listeners.NewTCP(listeners.Config{ID: "mqtttest", Address: "127.0.0.1:0"})
	if err := srv.AddListener(ln); err != nil {
		t.Fatal(err)
	}
	if err := srv.Serve(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		deadline := time.Now().Add(Deadline)
		for srv.Clients.Len() > 0 && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
		closed := make(chan struct{})
		go func() {
			_ = srv.Close()
			close(closed)
		}()
		select {
		case <-closed:
		case <-time.After(Deadline):
			t.Logf("mochi Close did not return within %v; left running", Deadline)
		}
	})
	return ln.Address()
}
