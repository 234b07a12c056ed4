package forward

import (
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/atrium-iot/atrium/internal/testwait"
)

// memQueue is a small in-memory Queue with the spool's contract: a batch handed out
// keeps its id and readings until it is acked or dead-lettered.
type memQueue struct {
	mu       sync.Mutex
	items    []queued
	pinned   int // readings in the batch handed out; 0 when none is
	pinnedID string
	seq      int
	acked    []string
	dead     []deadBatch
	ready    chan struct{}
}

type queued struct {
	data []byte
	at   time.Time
}

type deadBatch struct {
	id, reason string
	readings   int
}

var _ Queue = (*memQueue)(nil)

func newMemQueue() *memQueue { return &memQueue{ready: make(chan struct{}, 1)} }

// flushed makes a forwarder with cfg over a new queue holding rs, and flushes it once.
func flushed(t *testing.T, cfg Config, rs ...[]byte) (*memQueue, *Forwarder) {
	t.Helper()
	q := newMemQueue()
	f := New(q, cfg)
	q.Append(rs...)
	if err := f.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	return q, f
}

func (q *memQueue) Append(rs ...[]byte) {
	q.mu.Lock()
	now := time.Now()
	for _, r := range rs {
		q.items = append(q.items, queued{r, now})
	}
	q.mu.Unlock()
	select {
	case q.ready <- struct{}{}:
	default:
	}
}

func (q *memQueue) NextBatch(maxCount, maxBytes int) (Batch, bool, error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.pinned == 0 {
		n, size := 0, 0
		for n < len(q.items) && n < maxCount && (n == 0 || size+len(q.items[n].data) <= maxBytes) {
			size += len(q.items[n].data)
			n++
		}
		if n == 0 {
			return Batch{}, false, nil
		}
		q.pinned, q.pinnedID = n, fmt.Sprintf("b%d", q.seq)
		q.seq++
	}
	b := Batch{ID: q.pinnedID, Readings: make([][]byte, q.pinned)}
	for i := range b.Readings {
		b.Readings[i] = q.items[i].data
	}
	return b, true, nil
}

func (q *memQueue) release(id string) (int, error) {
	if q.pinned == 0 || id != q.pinnedID {
		return 0, fmt.Errorf("batch %q is not the one handed out (%q)", id, q.pinnedID)
	}
	n := q.pinned
	q.items = q.items[n:]
	q.pinned = 0
	return n, nil
}

func (q *memQueue) AckBatch(id string) error {
	q.mu.Lock()
	defer q.mu.Unlock()
	if _, err := q.release(id); err != nil {
		return err
	}
	q.acked = append(q.acked, id)
	return nil
}

func (q *memQueue) DeadLetterBatch(id, reason string) error {
	q.mu.Lock()
	defer q.mu.Unlock()
	n, err := q.release(id)
	if err != nil {
		return err
	}
	q.dead = append(q.dead, deadBatch{id, reason, n})
	return nil
}

func (q *memQueue) Ready() <-chan struct{} { return q.ready }

func (q *memQueue) Pending() (int, time.Time) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if len(q.items) == 0 {
		return 0, time.Time{}
	}
	return len(q.items), q.items[0].at
}

func (q *memQueue) deadLetters() []deadBatch {
	q.mu.Lock()
	defer q.mu.Unlock()
	return append([]deadBatch(nil), q.dead...)
}

// received is one request the test cloud got.
type received struct {
	method, path string
	header       http.Header
	body         []byte // inflated
	at           time.Time
	batchID      string
	readings     []json.RawMessage
}

// answer is what the test cloud says to the n-th batch it receives (from 0).
type answer func(n int, r received) (status int, header http.Header, body string)

// cloud is a real HTTP server standing in for the sensor service.
type cloud struct {
	srv    *httptest.Server
	answer answer
	health int // status of GET /healthz; 0 is 200

	mu      sync.Mutex
	batches []received
	probes  int
}

func newCloud(t *testing.T, a answer) *cloud {
	t.Helper()
	c := &cloud{answer: a}
	c.srv = httptest.NewServer(http.HandlerFunc(c.serve))
	t.Cleanup(c.srv.Close)
	return c
}

func (c *cloud) serve(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path == "/healthz" {
		c.mu.Lock()
		c.probes++
		status := c.health
		c.mu.Unlock()
		w.WriteHeader(max(status, http.StatusOK))
		return
	}
	rec := received{method: r.Method, path: r.URL.Path, header: r.Header.Clone(), at: time.Now()}
	zr, err := gzip.NewReader(r.Body)
	if err != nil {
		http.Error(w, "not gzip: "+err.Error(), http.StatusUnsupportedMediaType)
		return
	}
	if rec.body, err = io.ReadAll(zr); err != nil {
		http.Error(w, "bad gzip: "+err.Error(), http.StatusBadRequest)
		return
	}
	var env struct {
		BatchID  string            `json:"batch_id"`
		Readings []json.RawMessage `json:"readings"`
	}
	if err := json.Unmarshal(rec.body, &env); err != nil {
		http.Error(w, "not JSON: "+err.Error(), http.StatusBadRequest)
		return
	}
	rec.batchID, rec.readings = env.BatchID, env.Readings
	c.mu.Lock()
	n := len(c.batches)
	c.batches = append(c.batches, rec)
	c.mu.Unlock()

	status, header, body := http.StatusOK, http.Header(nil), ""
	if c.answer != nil {
		status, header, body = c.answer(n, rec)
	}
	if body == "" && status == http.StatusOK {
		body = okAnswer(env.BatchID, len(env.Readings))
	}
	for k, v := range header {
		w.Header()[k] = v
	}
	w.WriteHeader(status)
	_, _ = io.WriteString(w, body)
}

func (c *cloud) received() []received {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]received(nil), c.batches...)
}

func (c *cloud) probeCount() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.probes
}

// okAnswer is the sensor service's answer to a batch of n new readings.
func okAnswer(id string, n int) string {
	return fmt.Sprintf(`{"batch_id":%q,"accepted":%d,"duplicates":0,"rejected":[]}`, id, n)
}

// always answers every batch the same way.
func always(status int, header http.Header, body string) answer {
	return func(int, received) (int, http.Header, string) { return status, header, body }
}

// sequence answers the first batches with the given statuses, then 200.
func sequence(statuses ...int) answer {
	return func(n int, _ received) (int, http.Header, string) {
		if n < len(statuses) {
			return statuses[n], nil, ""
		}
		return http.StatusOK, nil, ""
	}
}

func reading(i int) []byte {
	return fmt.Appendf(nil, `{"sensor_id":"s%d","room_id":"r1","type":"co2","value":1%04d,"timestamp":"2025-11-25T12:00:00.000Z"}`, i%3, i)
}

func readings(from, n int) [][]byte {
	rs := make([][]byte, n)
	for i := range rs {
		rs[i] = reading(from + i)
	}
	return rs
}

// testConfig has tiny backoffs; tests change what they need.
func testConfig(url string) Config {
	return Config{
		URL: url, MaxCount: 500, MaxBytes: 1 << 20, Linger: time.Hour,
		MinBackoff: time.Millisecond, MaxBackoff: 5 * time.Millisecond, Timeout: 10 * time.Second,
		ProbeInterval: 10 * time.Millisecond, Logger: slog.New(slog.DiscardHandler),
	}
}

// startRun runs f until the test ends or the returned stop is called.
func startRun(t *testing.T, f *Forwarder) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- f.Run(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("Run returned %v", err)
				}
			case <-time.After(10 * time.Second):
				t.Error("Run did not return 10s after its context ended")
			}
		})
	}
	t.Cleanup(stop)
	return stop
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	testwait.Within(t, 15*time.Second, what, cond)
}

func pending(q *memQueue) int { n, _ := q.Pending(); return n }

func sizes(rs []received) []int {
	out := make([]int, len(rs))
	for i, r := range rs {
		out[i] = len(r.readings)
	}
	return out
}

func equalInts(a, b []int) bool {
	return fmt.Sprint(a) == fmt.Sprint(b)
}

func TestTriggers(t *testing.T) {
	size := len(reading(0))
	tests := []struct {
		name      string
		cfg       func(*Config)
		append    int
		wantSent  []int // batch sizes Run sends by itself
		wantLeft  int   // readings Run leaves for Flush
		minLinger time.Duration
	}{
		{name: "count", cfg: func(c *Config) { c.MaxCount = 5 }, append: 12, wantSent: []int{5, 5}, wantLeft: 2},
		{name: "bytes", cfg: func(c *Config) { c.MaxBytes = 10 * size }, append: 30, wantSent: []int{10, 10, 10}},
		{name: "linger", cfg: func(c *Config) { c.Linger = 100 * time.Millisecond }, append: 3, wantSent: []int{3}, minLinger: 100 * time.Millisecond},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := newCloud(t, nil)
			q := newMemQueue()
			cfg := testConfig(c.srv.URL)
			tc.cfg(&cfg)
			f := New(q, cfg)
			stop := startRun(t, f)

			appended := time.Now()
			q.Append(readings(0, tc.append)...) // Run is waiting: Ready wakes it
			waitFor(t, "Run to send its batches", func() bool {
				return len(c.received()) >= len(tc.wantSent) && pending(q) == tc.wantLeft
			})
			stop()

			got := c.received()
			if !equalInts(sizes(got), tc.wantSent) {
				t.Fatalf("Run sent batches of %v, want %v", sizes(got), tc.wantSent)
			}
			for _, r := range got {
				if n := len(r.body); n > cfg.MaxBytes+64 {
					t.Errorf("batch %s is %d bytes, budget %d", r.batchID, n, cfg.MaxBytes)
				}
			}
			if tc.minLinger > 0 {
				if waited := got[0].at.Sub(appended); waited < tc.minLinger {
					t.Errorf("batch sent %v after the readings came, before the linger of %v", waited, tc.minLinger)
				}
			}
			if err := f.Flush(context.Background()); err != nil {
				t.Fatal(err)
			}
			if n := pending(q); n != 0 {
				t.Fatalf("%d readings left after Flush", n)
			}
			all := c.received()
			if tc.wantLeft > 0 && len(all[len(all)-1].readings) != tc.wantLeft {
				t.Fatalf("Flush sent %d readings, want %d", len(all[len(all)-1].readings), tc.wantLeft)
			}
			// Every reading arrived once, in spool order.
			i := 0
			for _, r := range all {
				for _, raw := range r.readings {
					if string(raw) != string(reading(i)) {
						t.Fatalf("reading %d is %s, want %s", i, raw, reading(i))
					}
					i++
				}
			}
			if i != tc.append {
				t.Fatalf("cloud got %d readings, want %d", i, tc.append)
			}
			if st := f.Stats(); st.Forwarded != int64(tc.append) || st.Batches != int64(len(all)) || !st.CloudReachable {
				t.Fatalf("stats %+v", st)
			}
		})
	}
}

func TestBodyAndHeaders(t *testing.T) {
	tests := []struct {
		name, token, wantAuth string
	}{
		{"with token", "s3cret", "Bearer s3cret"},
		{"without token", "", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := newCloud(t, nil)
			cfg := testConfig(c.srv.URL + "/") // a trailing slash is tolerated
			cfg.Token = tc.token
			flushed(t, cfg, readings(0, 3)...)
			got := c.received()
			if len(got) != 1 {
				t.Fatalf("got %d requests, want 1", len(got))
			}
			r := got[0]
			want := `{"batch_id":"b0","readings":[` + string(reading(0)) + "," + string(reading(1)) + "," + string(reading(2)) + `]}`
			if string(r.body) != want {
				t.Fatalf("body\n got: %s\nwant: %s", r.body, want)
			}
			for h, v := range map[string]string{
				"Content-Encoding": "gzip", "Content-Type": "application/json", "Idempotency-Key": "b0",
				"User-Agent": DefaultUserAgent, "Authorization": tc.wantAuth,
			} {
				if got := r.header.Get(h); got != v {
					t.Errorf("header %s = %q, want %q", h, got, v)
				}
			}
			if r.method != http.MethodPost || r.path != "/sensors/data" {
				t.Errorf("request %s %s, want POST /sensors/data", r.method, r.path)
			}
		})
	}
}

func TestRetries(t *testing.T) {
	tests := []struct {
		name     string
		statuses []int
	}{
		{"503", []int{503}},
		{"429", []int{429}},
		{"500 502 504", []int{500, 502, 504}},
		{"408 and 409", []int{408, 409}},
		{"401 holds the batch", []int{401, 401}},
		{"403 and 404 hold the batch", []int{403, 404}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := newCloud(t, sequence(tc.statuses...))
			q, f := flushed(t, testConfig(c.srv.URL), readings(0, 4)...)
			got := c.received()
			if len(got) != len(tc.statuses)+1 {
				t.Fatalf("cloud got %d attempts, want %d", len(got), len(tc.statuses)+1)
			}
			for i, r := range got {
				if k := r.header.Get("Idempotency-Key"); k != "b0" || r.batchID != "b0" || string(r.body) != string(got[0].body) {
					t.Fatalf("attempt %d: key %q, batch %q: a retry must resend the same batch", i, k, r.batchID)
				}
			}
			st := f.Stats()
			if st.Retries != int64(len(tc.statuses)) || st.Forwarded != 4 || st.Batches != 1 || st.DeadLettered != 0 {
				t.Fatalf("stats %+v", st)
			}
			if want := fmt.Sprintf("cloud answered %d: ", tc.statuses[len(tc.statuses)-1]); !strings.HasPrefix(st.LastError, want) {
				t.Fatalf("LastError %q, want prefix %q", st.LastError, want)
			}
			if len(q.deadLetters()) != 0 {
				t.Fatalf("dead letters %v", q.deadLetters())
			}
		})
	}
}

func TestRetryAfterIsAFloor(t *testing.T) {
	tests := []struct {
		name   string
		header func() string
	}{
		{"seconds", func() string { return "1" }},
		{"http date", func() string { return time.Now().Add(2 * time.Second).UTC().Format(http.TimeFormat) }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := newCloud(t, func(n int, _ received) (int, http.Header, string) {
				if n == 0 {
					return http.StatusServiceUnavailable, http.Header{"Retry-After": {tc.header()},
						"Content-Type": {"application/problem+json"}}, `{"title":"Service Unavailable","status":503,"detail":"store unavailable"}`
				}
				return http.StatusOK, nil, ""
			})
			_, f := flushed(t, testConfig(c.srv.URL), readings(0, 1)...) // backoff alone would be at most 5ms
			got := c.received()
			if len(got) != 2 {
				t.Fatalf("cloud got %d attempts, want 2", len(got))
			}
			if gap := got[1].at.Sub(got[0].at); gap < time.Second {
				t.Fatalf("retried after %v, Retry-After asked for at least 1s", gap)
			}
			if st := f.Stats(); st.LastError != "cloud answered 503: store unavailable" {
				t.Fatalf("LastError %q", st.LastError)
			}
		})
	}
}

func TestParseRetryAfter(t *testing.T) {
	now := time.Date(2025, 11, 25, 12, 0, 0, 0, time.UTC)
	tests := []struct {
		in   string
		want time.Duration
	}{
		{"", 0},
		{"3", 3 * time.Second},
		{" 120 ", 2 * time.Minute},
		{"0", 0},
		{"-5", 0},
		{"99999999", MaxRetryAfter},
		{"Tue, 25 Nov 2025 12:00:10 GMT", 10 * time.Second},
		{"Tue, 25 Nov 2025 11:59:00 GMT", 0},
		{"Wed, 26 Nov 2025 12:00:00 GMT", MaxRetryAfter},
		{"soon", 0},
	}
	for _, tc := range tests {
		t.Run(tc.in, func(t *testing.T) {
			if got := parseRetryAfter(tc.in, now); got != tc.want {
				t.Fatalf("parseRetryAfter(%q) = %v, want %v", tc.in, got, tc.want)
			}
		})
	}
}

func TestBackoffBounds(t *testing.T) {
	f := New(newMemQueue(), Config{URL: "http://127.0.0.1", MinBackoff: 10 * time.Millisecond, MaxBackoff: 200 * time.Millisecond})
	tests := []struct {
		attempt  int
		floor    time.Duration
		min, max time.Duration
	}{
		{0, 0, 10 * time.Millisecond, 10 * time.Millisecond},
		{1, 0, 10 * time.Millisecond, 20 * time.Millisecond},
		{3, 0, 10 * time.Millisecond, 80 * time.Millisecond},
		{10, 0, 10 * time.Millisecond, 200 * time.Millisecond},
		{1000, 0, 10 * time.Millisecond, 200 * time.Millisecond},
		{0, time.Second, time.Second, time.Second},
		{0, time.Hour, MaxRetryAfter, MaxRetryAfter},
	}
	for _, tc := range tests {
		t.Run(fmt.Sprintf("attempt %d floor %v", tc.attempt, tc.floor), func(t *testing.T) {
			for range 200 {
				if d := f.backoff(tc.attempt, tc.floor); d < tc.min || d > tc.max {
					t.Fatalf("backoff = %v, want within [%v, %v]", d, tc.min, tc.max)
				}
			}
		})
	}
}

func TestDeadLetter(t *testing.T) {
	problem := http.Header{"Content-Type": {"application/problem+json"}}
	tests := []struct {
		name       string
		status     int
		header     http.Header
		body       string
		wantReason string
	}{
		{"400 problem", 400, problem, `{"type":"about:blank","title":"Bad Request","status":400,"detail":"body is not a batch of readings"}`,
			"cloud answered 400: body is not a batch of readings"},
		{"400 title only", 400, problem, `{"title":"Bad Request","status":400}`, "cloud answered 400: Bad Request"},
		{"400 plain text", 400, http.Header{"Content-Type": {"text/plain"}}, "bad\n  batch\n", "cloud answered 400: bad batch"},
		{"413 empty", 413, nil, "", "cloud answered 413: Request Entity Too Large"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := newCloud(t, func(n int, _ received) (int, http.Header, string) {
				if n == 0 {
					return tc.status, tc.header, tc.body
				}
				return http.StatusOK, nil, ""
			})
			cfg := testConfig(c.srv.URL)
			cfg.MaxCount = 2
			q, f := flushed(t, cfg, readings(0, 4)...)
			if d := q.deadLetters(); len(d) != 1 || d[0] != (deadBatch{"b0", tc.wantReason, 2}) {
				t.Fatalf("dead letters %+v, want b0 with %q", d, tc.wantReason)
			}
			got := c.received()
			if len(got) != 2 || got[1].batchID != "b1" || string(got[1].readings[0]) != string(reading(2)) {
				t.Fatalf("the next batch must still go: got %d requests", len(got))
			}
			st := f.Stats()
			if st.DeadLettered != 2 || st.Forwarded != 2 || st.Retries != 0 || st.LastError != tc.wantReason {
				t.Fatalf("stats %+v", st)
			}
			wantBudget := int64(cfg.MaxBytes)
			if tc.status == http.StatusRequestEntityTooLarge {
				wantBudget /= 2
			}
			if got := f.maxBytes.Load(); got != wantBudget {
				t.Fatalf("byte budget %d after %d, want %d", got, tc.status, wantBudget)
			}
		})
	}
}

func TestNetworkErrorThenRecovery(t *testing.T) {
	// Reserve an address, then close it: the cloud is down, connections are refused.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	_ = l.Close()

	q := newMemQueue()
	cfg := testConfig("http://" + addr)
	cfg.Linger = time.Millisecond
	// A first backoff of at least 30s: only the health probe can resume sending in time.
	cfg.MinBackoff, cfg.MaxBackoff = 30*time.Second, time.Minute
	f := New(q, cfg)
	startRun(t, f)
	q.Append(readings(0, 5)...)
	waitFor(t, "a failed attempt", func() bool { return f.Stats().Retries >= 1 })
	if st := f.Stats(); st.CloudReachable || st.LastError == "" || st.Forwarded != 0 {
		t.Fatalf("stats while the cloud is down: %+v", st)
	}

	c := &cloud{}
	l2, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatalf("listen again on %s: %v", addr, err)
	}
	srv := &httptest.Server{Listener: l2, Config: &http.Server{Handler: http.HandlerFunc(c.serve)}}
	srv.Start()
	t.Cleanup(srv.Close)
	back := time.Now()

	waitFor(t, "delivery once the cloud is back", func() bool { return pending(q) == 0 })
	if took := time.Since(back); took > 10*time.Second {
		t.Fatalf("sending resumed %v after the cloud came back", took)
	}
	got := c.received()
	if len(got) != 1 || got[0].batchID != "b0" || len(got[0].readings) != 5 {
		t.Fatalf("cloud got %v", sizes(got))
	}
	if c.probeCount() == 0 {
		t.Fatal("the cloud was never probed")
	}
	if st := f.Stats(); !st.CloudReachable || st.Forwarded != 5 || st.LastSuccess.IsZero() {
		t.Fatalf("stats after recovery: %+v", st)
	}
}

func TestFlush(t *testing.T) {
	t.Run("drains the spool ignoring linger", func(t *testing.T) {
		c := newCloud(t, nil)
		q := newMemQueue()
		cfg := testConfig(c.srv.URL)
		cfg.MaxCount = 3
		f := New(q, cfg)
		q.Append(readings(0, 7)...)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := f.Flush(ctx); err != nil {
			t.Fatal(err)
		}
		if got := sizes(c.received()); !equalInts(got, []int{3, 3, 1}) {
			t.Fatalf("batches %v, want [3 3 1]", got)
		}
	})

	t.Run("after Run stopped mid-retry resends the same batch", func(t *testing.T) {
		var mu sync.Mutex
		down := true
		c := newCloud(t, func(int, received) (int, http.Header, string) {
			mu.Lock()
			defer mu.Unlock()
			if down {
				return http.StatusServiceUnavailable, nil, ""
			}
			return http.StatusOK, nil, ""
		})
		q := newMemQueue()
		cfg := testConfig(c.srv.URL)
		cfg.Linger = time.Millisecond
		f := New(q, cfg)
		stop := startRun(t, f)
		q.Append(readings(0, 4)...)
		waitFor(t, "retries", func() bool { return f.Stats().Retries >= 2 })
		stop()
		if n := pending(q); n != 4 {
			t.Fatalf("%d readings pending after Run stopped, want 4 (nothing lost)", n)
		}
		mu.Lock()
		down = false
		mu.Unlock()
		if err := f.Flush(context.Background()); err != nil {
			t.Fatal(err)
		}
		for _, r := range c.received() {
			if r.header.Get("Idempotency-Key") != "b0" {
				t.Fatalf("an attempt used key %q: every attempt of the batch must use b0", r.header.Get("Idempotency-Key"))
			}
		}
	})

	t.Run("deadline with the cloud down keeps everything", func(t *testing.T) {
		c := newCloud(t, always(http.StatusServiceUnavailable, nil, ""))
		q := newMemQueue()
		f := New(q, testConfig(c.srv.URL))
		q.Append(readings(0, 7)...)
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		defer cancel()
		err := f.Flush(ctx)
		if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "7 readings left") {
			t.Fatalf("Flush = %v, want the deadline and 7 readings left", err)
		}
		if n := pending(q); n != 7 || len(q.deadLetters()) != 0 {
			t.Fatalf("pending %d, dead letters %v: nothing may be lost", n, q.deadLetters())
		}
	})
}

func TestProbe(t *testing.T) {
	tests := []struct {
		name       string
		health     int
		closed     bool
		delivered  bool // a batch went just before
		wantErr    bool
		wantProbes int
	}{
		{name: "healthy", health: 200, wantProbes: 1},
		{name: "unhealthy", health: 503, wantErr: true, wantProbes: 1},
		{name: "down", closed: true, wantErr: true},
		{name: "recent delivery skips the network", health: 503, delivered: true, wantProbes: 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := newCloud(t, nil)
			c.health = tc.health
			q := newMemQueue()
			f := New(q, testConfig(c.srv.URL))
			if tc.delivered {
				q.Append(readings(0, 1)...)
				if err := f.Flush(context.Background()); err != nil {
					t.Fatal(err)
				}
			}
			if tc.closed {
				c.srv.Close()
			}
			err := f.Probe(context.Background())
			if (err != nil) != tc.wantErr {
				t.Fatalf("Probe = %v, want error %v", err, tc.wantErr)
			}
			if !tc.closed && c.probeCount() != tc.wantProbes {
				t.Fatalf("%d health checks, want %d", c.probeCount(), tc.wantProbes)
			}
			if got := f.Stats().CloudReachable; got != !tc.wantErr {
				t.Fatalf("CloudReachable = %v after Probe = %v", got, err)
			}
		})
	}
}

func BenchmarkForward(b *testing.B) {
	const total = 100_000
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		_, _ = io.WriteString(w, okAnswer(r.Header.Get("Idempotency-Key"), DefaultMaxCount))
	}))
	defer srv.Close()
	rs := readings(0, total)
	cfg := testConfig(srv.URL)
	cfg.MaxCount = DefaultMaxCount
	b.ReportAllocs()
	var elapsed time.Duration
	for b.Loop() {
		q := newMemQueue()
		q.items = make([]queued, 0, total)
		q.Append(rs...)
		f := New(q, cfg)
		start := time.Now()
		if err := f.Flush(context.Background()); err != nil {
			b.Fatal(err)
		}
		elapsed += time.Since(start)
		if st := f.Stats(); st.Forwarded != total {
			b.Fatalf("forwarded %d", st.Forwarded)
		}
	}
	b.ReportMetric(float64(total*b.N)/elapsed.Seconds(), "readings/s")
}
