package amqpbus

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"net"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/atrium-iot/atrium/internal/bus"
	"github.com/atrium-iot/atrium/internal/bus/bustest"
	"github.com/atrium-iot/atrium/internal/logging"
	"github.com/atrium-iot/atrium/internal/testenv"
)

const testMaxAttempts = 3

// brokerURL returns the broker the integration tests run against.
func brokerURL(tb testing.TB) string {
	tb.Helper()
	return testenv.URL(tb, "ATRIUM_TEST_AMQP_URL")
}

func randomName() string {
	var b [6]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// broker is a plain connection the tests use to inspect and clean up what the
// buses under test declare.
type broker struct {
	url  string
	conn *amqp.Connection
}

func newBroker(tb testing.TB) *broker {
	tb.Helper()
	url := brokerURL(tb)
	conn, err := amqp.Dial(url)
	if err != nil {
		tb.Fatalf("dial %s: %v", url, err)
	}
	tb.Cleanup(func() { conn.Close() })
	return &broker{url: url, conn: conn}
}

func (br *broker) channel(tb testing.TB) *amqp.Channel {
	tb.Helper()
	ch, err := br.conn.Channel()
	if err != nil {
		tb.Fatalf("open channel: %v", err)
	}
	return ch
}

// tap declares a queue named for what (durable, or deleted with its last consumer)
// that takes what b publishes under key, and a channel to read it with; both go
// when the test ends.
func (br *broker) tap(tb testing.TB, b *testBus, what, key string, durable bool) (*amqp.Channel, string) {
	tb.Helper()
	ch := br.channel(tb)
	q := "atrium.test." + what + "." + randomName()
	tb.Cleanup(func() {
		_, _ = ch.QueueDelete(q, false, false, false)
		ch.Close()
	})
	if _, err := ch.QueueDeclare(q, durable, !durable, false, false, nil); err != nil {
		tb.Fatal(err)
	}
	if err := ch.QueueBind(q, key, b.opts.Exchange, false, nil); err != nil {
		tb.Fatal(err)
	}
	return ch, q
}

// testBus is a Bus that remembers the queues subscribed to, so the test can
// delete them.
type testBus struct {
	*Bus
	mu     sync.Mutex
	queues map[string]bool
}

func (b *testBus) Subscribe(ctx context.Context, queue string, patterns []string, h bus.Handler) error {
	b.mu.Lock()
	b.queues[queue] = true
	b.mu.Unlock()
	return b.Bus.Subscribe(ctx, queue, patterns, h)
}

// open makes a bus on its own exchanges and deletes everything it declared when
// the test ends.
func (br *broker) open(tb testing.TB, opts Options) *testBus {
	tb.Helper()
	name := randomName()
	opts.Exchange = "atrium.test." + name
	opts.DeadLetterExchange = opts.Exchange + ".dlx"
	opts.ConnectionName = "atrium-test-" + name
	if opts.MaxAttempts == 0 {
		opts.MaxAttempts = testMaxAttempts
	}
	if opts.RetryDelay == 0 {
		opts.RetryDelay = 20 * time.Millisecond
	}
	if opts.ReconnectMin == 0 {
		opts.ReconnectMin = 20 * time.Millisecond
		opts.ReconnectMax = 500 * time.Millisecond
	}
	if opts.Logger == nil {
		opts.Logger = logging.Discard()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	b, err := New(ctx, br.url, opts)
	if err != nil {
		tb.Fatalf("New: %v", err)
	}
	tbus := &testBus{Bus: b, queues: map[string]bool{}}
	tb.Cleanup(func() {
		_ = b.Close()
		ch := br.channel(tb)
		defer ch.Close()
		tbus.mu.Lock()
		defer tbus.mu.Unlock()
		for q := range tbus.queues {
			for _, name := range []string{q, q + ".retry", q + ".dlq"} {
				if _, err := ch.QueueDelete(name, false, false, false); err != nil {
					tb.Errorf("delete queue %q: %v", name, err)
				}
			}
		}
		for _, ex := range []string{opts.Exchange, opts.DeadLetterExchange} {
			if err := ch.ExchangeDelete(ex, false, false); err != nil {
				tb.Errorf("delete exchange %q: %v", ex, err)
			}
		}
	})
	return tbus
}

// deadLetters takes what is in queue's dead-letter queue, checking that each
// message says why it is there.
func (br *broker) deadLetters(t *testing.T, _ bus.Bus, queue string) []bus.Message {
	ch := br.channel(t)
	defer ch.Close()
	var out []bus.Message
	for {
		d, ok, err := ch.Get(queue+".dlq", true)
		if err != nil {
			t.Fatalf("get from %s.dlq: %v", queue, err)
		}
		if !ok {
			return out
		}
		if reason, _ := d.Headers[HeaderDeathReason].(string); !strings.Contains(reason, "on purpose") {
			t.Errorf("dead letter %s: %s = %q, want the handler's error", d.MessageId, HeaderDeathReason, reason)
		}
		if q, _ := d.Headers[HeaderQueue].(string); q != queue {
			t.Errorf("dead letter %s: %s = %q, want %q", d.MessageId, HeaderQueue, q, queue)
		}
		if n := attemptsOf(d); n != testMaxAttempts {
			t.Errorf("dead letter %s: %s = %d, want %d", d.MessageId, HeaderAttempts, n, testMaxAttempts)
		}
		if d.DeliveryMode != amqp.Persistent {
			t.Errorf("dead letter %s: delivery mode %d, want persistent", d.MessageId, d.DeliveryMode)
		}
		out = append(out, messageOf(d))
	}
}

func TestContract(t *testing.T) {
	br := newBroker(t)
	bustest.Run(t, func(t *testing.T) bus.Bus { return br.open(t, Options{}) }, bustest.Options{
		Durable:     true,
		MaxAttempts: testMaxAttempts,
		DeadLetters: br.deadLetters,
	})
}

// TestMessageProperties checks what other AMQP clients see of a published message.
func TestMessageProperties(t *testing.T) {
	br := newBroker(t)
	b := br.open(t, Options{})
	ch, q := br.tap(t, b, "props", "sensor.#", false)
	if err := b.Publish(t.Context(), bus.SensorDataReceived, []byte(`{"batch_id":"b1"}`)); err != nil {
		t.Fatal(err)
	}
	d, ok, err := ch.Get(q, true)
	if err != nil || !ok {
		t.Fatalf("get: ok=%v err=%v", ok, err)
	}
	checks := []struct {
		name      string
		got, want any
	}{
		{"routing key", d.RoutingKey, bus.SensorDataReceived},
		{"exchange", d.Exchange, b.opts.Exchange},
		{"delivery mode", d.DeliveryMode, amqp.Persistent},
		{"message id set", d.MessageId != "", true},
		{"timestamp set", !d.Timestamp.IsZero(), true},
		{"body", string(d.Body), `{"batch_id":"b1"}`},
	}
	for _, c := range checks {
		t.Run(c.name, func(t *testing.T) {
			if c.got != c.want {
				t.Errorf("got %v, want %v", c.got, c.want)
			}
		})
	}
}

func TestNew(t *testing.T) {
	tests := []struct {
		name    string
		url     string
		wantErr error
	}{
		{name: "not an amqp url", url: "http://127.0.0.1:5672/"},
		// Nothing listens on port 1: New keeps retrying until its ctx ends.
		{name: "broker unreachable", url: "amqp://guest:guest@127.0.0.1:1/", wantErr: context.DeadlineExceeded},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
			defer cancel()
			b, err := New(ctx, tt.url, Options{ReconnectMin: 10 * time.Millisecond, Logger: logging.Discard()})
			if err == nil {
				b.Close()
				t.Fatal("New succeeded, want an error")
			}
			if tt.wantErr != nil && !errors.Is(err, tt.wantErr) {
				t.Errorf("New: %v, want %v", err, tt.wantErr)
			}
		})
	}
}

// dialer opens real TCP connections and lets the test cut them, and refuse new
// ones for a while, as a network outage would.
type dialer struct {
	mu      sync.Mutex
	conns   []net.Conn
	refuse  bool
	dials   atomic.Int64
	refused atomic.Int64
}

func (d *dialer) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	d.mu.Lock()
	refuse := d.refuse
	d.mu.Unlock()
	if refuse {
		d.refused.Add(1)
		return nil, errors.New("test: network down")
	}
	var nd net.Dialer
	c, err := nd.DialContext(ctx, network, addr)
	if err != nil {
		return nil, err
	}
	d.dials.Add(1)
	d.mu.Lock()
	d.conns = append(d.conns, c)
	d.mu.Unlock()
	return c, nil
}

func (d *dialer) setRefuse(v bool) {
	d.mu.Lock()
	d.refuse = v
	d.mu.Unlock()
}

// cut closes every connection dialled so far.
func (d *dialer) cut() {
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, c := range d.conns {
		c.Close()
	}
	d.conns = nil
}

// localPorts returns the local ports of the open connections.
func (d *dialer) localPorts() []int {
	d.mu.Lock()
	defer d.mu.Unlock()
	var ports []int
	for _, c := range d.conns {
		ports = append(ports, c.LocalAddr().(*net.TCPAddr).Port)
	}
	return ports
}

// closeFromServer asks the broker to close the connections on ports.
func closeFromServer(t *testing.T, ports []int) {
	out, err := exec.Command("rabbitmqctl", "-q", "list_connections", "--no-table-headers", "pid", "peer_port").CombinedOutput()
	if err != nil {
		t.Fatalf("rabbitmqctl list_connections: %v\n%s", err, out)
	}
	closed := 0
	for _, line := range strings.Split(string(out), "\n") {
		f := strings.Fields(line)
		if len(f) != 2 {
			continue
		}
		port, _ := strconv.Atoi(f[1])
		for _, p := range ports {
			if p == port {
				if out, err := exec.Command("rabbitmqctl", "-q", "close_connection", f[0], "atrium test: forced close").CombinedOutput(); err != nil {
					t.Fatalf("rabbitmqctl close_connection: %v\n%s", err, out)
				}
				closed++
			}
		}
	}
	if closed == 0 {
		t.Fatalf("no broker connection on ports %v in:\n%s", ports, out)
	}
}

// TestReconnect cuts the bus's connection while messages flow, and checks that
// publishing and consuming carry on with nothing lost.
func TestReconnect(t *testing.T) {
	br := newBroker(t)
	tests := []struct {
		name string
		// disrupt breaks the connection; it returns once it is broken.
		disrupt func(t *testing.T, d *dialer)
	}{
		{
			name: "network drops and stays down",
			disrupt: func(t *testing.T, d *dialer) {
				d.setRefuse(true)
				d.cut()
				// The network comes back only after the bus has tried, and failed,
				// to reconnect; meanwhile the next Publish has to wait.
				go func() {
					deadline := time.Now().Add(20 * time.Second)
					for d.refused.Load() < 3 && time.Now().Before(deadline) {
						time.Sleep(5 * time.Millisecond)
					}
					d.setRefuse(false)
				}()
			},
		},
		{
			name: "broker closes the connection",
			disrupt: func(t *testing.T, d *dialer) {
				if _, err := exec.LookPath("rabbitmqctl"); err != nil {
					t.Skip("rabbitmqctl not installed")
				}
				closeFromServer(t, d.localPorts())
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := &dialer{}
			b := br.open(t, Options{Dial: d.dial})
			p := "t" + randomName()
			subject := p + ".sensor.data.received"

			var mu sync.Mutex
			got := map[string]bool{}
			h := func(_ context.Context, m bus.Message) error {
				mu.Lock()
				got[string(m.Body)] = true
				mu.Unlock()
				return nil
			}
			if err := b.Subscribe(t.Context(), p+".q", []string{subject}, h); err != nil {
				t.Fatal(err)
			}

			const n, breakAt = 300, 100
			for i := range n {
				if i == breakAt {
					tt.disrupt(t, d)
				}
				ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
				err := b.Publish(ctx, subject, []byte(strconv.Itoa(i)))
				cancel()
				if err != nil {
					t.Fatalf("Publish %d: %v", i, err)
				}
			}
			deadline := time.Now().Add(30 * time.Second)
			for {
				mu.Lock()
				have := len(got)
				mu.Unlock()
				if have == n {
					break
				}
				if time.Now().After(deadline) {
					var missing []int
					mu.Lock()
					for i := range n {
						if !got[strconv.Itoa(i)] {
							missing = append(missing, i)
						}
					}
					mu.Unlock()
					t.Fatalf("consumed %d of %d messages; missing %v", have, n, missing)
				}
				time.Sleep(10 * time.Millisecond)
			}
			if refused := d.refused.Load(); tt.name == "network drops and stays down" && refused < 3 {
				t.Errorf("%d dials refused, want the outage to outlast 3 reconnect attempts", refused)
			}
			if dials := d.dials.Load(); dials < 2 {
				t.Errorf("dialled %d times, want a reconnect", dials)
			}
			if err := b.Ping(t.Context()); err != nil {
				t.Errorf("Ping after reconnect: %v", err)
			}
		})
	}
}

func BenchmarkPublishConfirm(b *testing.B) {
	br := newBroker(b)
	bb := br.open(b, Options{})
	// A durable queue with no consumer, so each confirm covers a persisted message.
	br.tap(b, bb, "bench", "bench.#", true)
	bustest.BenchPublish(b, bb)
}
