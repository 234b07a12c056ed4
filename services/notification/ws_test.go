package notification_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/atrium-iot/atrium/internal/httpx/httpxtest"
	"github.com/atrium-iot/atrium/internal/logging"
	"github.com/atrium-iot/atrium/internal/testwait"
	"github.com/atrium-iot/atrium/services/notification"
)

func wsURL(base, query string) string {
	return "ws" + strings.TrimPrefix(base, "http") + "/ws/notifications" + query
}

// dial connects a WebSocket client; rcvbuf > 0 shrinks its socket receive buffer
// (a client that stops reading then stalls the server quickly).
func dial(ctx context.Context, url string, rcvbuf int) (*websocket.Conn, error) {
	d := &net.Dialer{}
	if rcvbuf > 0 {
		d.Control = func(_, _ string, c syscall.RawConn) error {
			var serr error
			err := c.Control(func(fd uintptr) { serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, rcvbuf) })
			return errors.Join(err, serr)
		}
	}
	hc := &http.Client{Transport: &http.Transport{DialContext: d.DialContext}}
	c, _, err := websocket.Dial(ctx, url, &websocket.DialOptions{HTTPClient: hc})
	if err != nil {
		return nil, err
	}
	c.SetReadLimit(1 << 20)
	return c, nil
}

// readers dials n clients of url, each reading in a goroutine of wg: every
// message goes to got with the client's index, until the connection ends or
// got returns false.
func readers(tb testing.TB, wg *sync.WaitGroup, url string, n int, got func(i int, msg []byte) bool) []*websocket.Conn {
	tb.Helper()
	conns := make([]*websocket.Conn, n)
	for i := range n {
		c, err := dial(context.Background(), url, 0)
		if err != nil {
			tb.Fatal(err)
		}
		conns[i] = c
		wg.Go(func() {
			defer c.CloseNow()
			for {
				_, msg, err := c.Read(context.Background())
				if err != nil || !got(i, msg) {
					return
				}
			}
		})
	}
	return conns
}

func TestWebSocketFiltersAndNotifications(t *testing.T) {
	e := start(t, t.TempDir(), notification.Options{})
	ctx := t.Context()
	type sub struct {
		name, query string
		want        []string // titles received, in order
	}
	subs := []sub{
		{"everything", "", []string{"a-info", "b-warning", "building-critical"}},
		{"room a", "?room_id=a", []string{"a-info", "building-critical"}},
		{"warning and above", "?severity=warning", []string{"b-warning", "building-critical"}},
		{"room a critical", "?room_id=a&severity=critical", []string{"building-critical"}},
	}
	conns := make([]*websocket.Conn, len(subs))
	for i, s := range subs {
		c, err := dial(ctx, wsURL(e.url, s.query), 0)
		if err != nil {
			t.Fatal(err)
		}
		defer c.CloseNow()
		conns[i] = c
	}
	testwait.For(t, "clients registered", func() bool { return e.svc.Hub().Clients() == len(subs) })
	for _, n := range []string{
		`{"severity":"info","title":"a-info","room_id":"a","channels":["websocket"]}`,
		`{"severity":"warning","title":"b-warning","room_id":"b","channels":["websocket"]}`,
		`{"severity":"critical","title":"building-critical","message":"evacuate","channels":["websocket"]}`,
	} {
		if a := httpxtest.DoJSON(t, "POST", e.url+"/notifications/send", []byte(n)); a.Code != 202 {
			t.Fatalf("send: %d %s", a.Code, a.Raw)
		}
	}
	for i, s := range subs {
		t.Run(s.name, func(t *testing.T) {
			var got []string
			for range s.want {
				rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
				_, b, err := conns[i].Read(rctx)
				cancel()
				if err != nil {
					t.Fatalf("read after %v: %v", got, err)
				}
				var p notification.Push
				if err := json.Unmarshal(b, &p); err != nil || p.Kind != "notification" || p.Notification == nil {
					t.Fatalf("push %s: %v", b, err)
				}
				got = append(got, p.Notification.Title)
			}
			if !slices.Equal(got, s.want) {
				t.Fatalf("got %v, want %v", got, s.want)
			}
		})
	}
	if n := countEvents(t, e, "type=notification.sent"); n != 3 {
		t.Errorf("%d notification.sent events, want 3", n)
	}
	// A client that sends a message bigger than the read limit is closed.
	c := conns[0]
	_ = c.Write(ctx, websocket.MessageText, []byte(strings.Repeat("x", 4096)))
	rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	for {
		if _, _, err := c.Read(rctx); err != nil {
			if s := websocket.CloseStatus(err); s != websocket.StatusMessageTooBig {
				t.Fatalf("close status %v (%v), want message too big", s, err)
			}
			break
		}
	}
}

func TestWebSocketFanOutWithStalledClient(t *testing.T) {
	c := &clock{t: t0.Add(6 * time.Minute)}
	e := start(t, t.TempDir(), notification.Options{Now: c.Now,
		Hub: notification.HubOptions{QueueSize: 16, SocketBuffer: 4096, WriteTimeout: time.Minute}})
	ctx := t.Context()
	const clients = 200
	type result struct {
		notes int
		alert time.Time
	}
	var mu sync.Mutex
	results := make([]result, clients)
	var wg sync.WaitGroup
	var failures atomic.Int32
	conns := readers(t, &wg, wsURL(e.url, ""), clients, func(i int, b []byte) bool {
		var p notification.Push
		if json.Unmarshal(b, &p) != nil {
			failures.Add(1)
			return false
		}
		mu.Lock()
		switch p.Kind {
		case "notification":
			results[i].notes++
		case "alert.raised":
			results[i].alert = time.Now()
		}
		mu.Unlock()
		return true
	})
	stalled, err := dial(ctx, wsURL(e.url, ""), 2048)
	if err != nil {
		t.Fatal(err)
	}
	defer stalled.CloseNow()
	testwait.For(t, "all clients registered", func() bool { return e.svc.Hub().Clients() == clients+1 })

	// Flood until the stalled client overflows its queue and is dropped.
	filler := fmt.Sprintf(`{"severity":"info","title":"filler","message":%q,"channels":["websocket"]}`, strings.Repeat("z", 4000))
	sent := 0
	for e.svc.Hub().Dropped() == 0 {
		if sent > 2000 {
			t.Fatal("the stalled client was never dropped")
		}
		if a := httpxtest.DoJSON(t, "POST", e.url+"/notifications/send", []byte(filler)); a.Code != 202 {
			t.Fatalf("send: %d", a.Code)
		}
		sent++
	}
	testwait.For(t, "the readers to drain the filler", func() bool {
		mu.Lock()
		defer mu.Unlock()
		for _, r := range results {
			if r.notes < sent {
				return false
			}
		}
		return true
	})

	// An alert reaches every reader within a second.
	begin := time.Now()
	e.publish("b1", notification.Series("s1", "room-1", "co2", t0, time.Minute, notification.Repeat(1250, 6)...)...)
	testwait.For(t, "the alert on every client", func() bool {
		mu.Lock()
		defer mu.Unlock()
		for _, r := range results {
			if r.alert.IsZero() {
				return false
			}
		}
		return true
	})
	var worst time.Duration
	for _, r := range results {
		worst = max(worst, r.alert.Sub(begin))
	}
	t.Logf("%d clients, %d filler messages before the drop, slowest alert delivery %s", clients, sent, worst)
	if worst > time.Second {
		t.Errorf("slowest client got the alert after %s, want within 1s", worst)
	}
	if failures.Load() > 0 {
		t.Errorf("%d clients got undecodable messages", failures.Load())
	}
	if n := e.svc.Hub().Dropped(); n != 1 {
		t.Errorf("%d clients dropped, want only the stalled one", n)
	}

	// The stalled client, reading at last, finds the "too slow" close.
	rctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	for {
		_, _, err := stalled.Read(rctx)
		if err == nil {
			continue
		}
		var ce websocket.CloseError
		if !errors.As(err, &ce) || ce.Code != notification.CloseTooSlow || !strings.Contains(ce.Reason, "too slow") {
			t.Fatalf("stalled client ended with %v, want close %d too slow", err, notification.CloseTooSlow)
		}
		break
	}
	for _, conn := range conns {
		conn.Close(websocket.StatusNormalClosure, "")
	}
	wg.Wait()
}

// BenchmarkFanOut broadcasts to 1,000 WebSocket clients over loopback and reports
// the p99 delivery latency (broadcast to a client's read); the target is ≤50 ms.
func BenchmarkFanOut(b *testing.B) {
	const clients = 1000
	hub := notification.NewHub(logging.Discard(), nil, notification.HubOptions{QueueSize: 1024})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { hub.Serve(w, r, "", 0) }))
	defer srv.Close()
	defer hub.Close()
	var mu sync.Mutex
	var lat []time.Duration
	var got atomic.Int64
	var wg sync.WaitGroup
	readers(b, &wg, wsURL(srv.URL, ""), clients, func(_ int, data []byte) bool {
		var p struct {
			Time time.Time `json:"time"`
		}
		_ = json.Unmarshal(data, &p)
		d := time.Since(p.Time)
		mu.Lock()
		lat = append(lat, d)
		mu.Unlock()
		got.Add(1)
		return true
	})
	for hub.Clients() < clients {
		time.Sleep(time.Millisecond)
	}
	a := notification.Alert{ID: "a", RuleID: "default-co2-warning", RoomID: "room-1", SensorID: "s1", Type: "co2", Severity: "warning", State: "active", Value: 1234}
	b.ResetTimer()
	for n := 0; n < b.N; n++ {
		want := int64(n+1) * clients
		hub.Broadcast(notification.Push{Kind: "alert.raised", Severity: "warning", RoomID: "room-1", Time: time.Now(), Alert: &a})
		for got.Load() < want {
			time.Sleep(100 * time.Microsecond)
		}
	}
	b.StopTimer()
	mu.Lock()
	slices.Sort(lat)
	p50, p99 := lat[len(lat)/2], lat[len(lat)*99/100]
	mu.Unlock()
	b.ReportMetric(float64(p50.Microseconds())/1000, "p50_ms")
	b.ReportMetric(float64(p99.Microseconds())/1000, "p99_ms")
	hub.Close()
	wg.Wait()
}
