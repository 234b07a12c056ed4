package servicetest_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"sync/atomic"
	"testing"

	"github.com/atrium-iot/atrium/internal/bus"
	"github.com/atrium-iot/atrium/internal/bus/membus"
	"github.com/atrium-iot/atrium/internal/httpx/httpxtest"
	"github.com/atrium-iot/atrium/internal/servicetest"
)

// echo answers "ok" and counts the runs of Run, which waits for its context.
type echo struct {
	running atomic.Bool
	err     error
}

func (e *echo) Handler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "ok") })
}

func (e *echo) Run(ctx context.Context) error {
	e.running.Store(true)
	<-ctx.Done()
	e.running.Store(false)
	return e.err
}

func TestStartStop(t *testing.T) {
	svc := &echo{}
	r := servicetest.Start(t, svc)
	resp, err := http.Get(r.URL)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(b) != "ok" {
		t.Fatalf("answer %q", b)
	}
	r.Stop()
	if svc.running.Load() {
		t.Error("Run still running after Stop")
	}
	if _, err := http.Get(r.URL); err == nil {
		t.Error("the server still answers after Stop")
	}
	r.Stop() // a second Stop, and the one of Cleanup, do nothing
}

func TestRunErrorFails(t *testing.T) {
	rec := &recorder{TB: t}
	servicetest.Start(rec, &echo{err: errors.New("boom")}).Stop()
	if !rec.failed {
		t.Error("Run's error did not fail the test")
	}
}

// TestServeRunWaitReady: Serve answers at once, /readyz once Run has started,
// and Run ends with the test.
func TestServeRunWaitReady(t *testing.T) {
	svc := &ready{}
	t.Run("use", func(t *testing.T) {
		url := servicetest.Serve(t, svc.Handler())
		if a := httpxtest.Get(t, url+"/readyz"); a.Code != http.StatusServiceUnavailable {
			t.Fatalf("readyz before Run: %d", a.Code)
		}
		servicetest.Run(t, svc.Run)
		servicetest.WaitReady(t, url)
	})
	if svc.running.Load() {
		t.Error("Run still running after the test")
	}
}

func TestRunErrorFailsAtTheEnd(t *testing.T) {
	rec := &recorder{TB: t}
	t.Run("use", func(t *testing.T) {
		rec.TB = t
		servicetest.Run(rec, (&echo{err: errors.New("boom")}).Run)
	})
	if !rec.failed {
		t.Error("Run's error did not fail the test")
	}
}

// ready answers /readyz 200 only while Run runs.
type ready struct{ echo }

func (r *ready) Handler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		if !r.running.Load() {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
	})
}

// recorder is a testing.TB that notes a failure instead of failing.
type recorder struct {
	testing.TB
	failed bool
}

func (r *recorder) Errorf(string, ...any) { r.failed = true }

// TestBus: the bus carries messages during the test and is closed after it.
func TestBus(t *testing.T) {
	var b *membus.Bus
	t.Run("use", func(t *testing.T) {
		b = servicetest.Bus(t)
		got := make(chan string, 1)
		if err := b.Subscribe(t.Context(), "q", []string{"x.y"}, func(_ context.Context, m bus.Message) error {
			got <- string(m.Body)
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		if err := b.Publish(t.Context(), "x.y", []byte("hi")); err != nil {
			t.Fatal(err)
		}
		if s := <-got; s != "hi" {
			t.Errorf("delivered %q", s)
		}
	})
	if err := b.Publish(context.Background(), "x.y", []byte("late")); !errors.Is(err, membus.ErrClosed) {
		t.Errorf("publish after the test: %v, want ErrClosed", err)
	}
}

// closer counts its closes.
type closer struct{ closes int }

func (c *closer) Close() error { c.closes++; return nil }

func TestStoreClosesAtTheEnd(t *testing.T) {
	c := &closer{}
	t.Run("opened", func(t *testing.T) {
		if got := servicetest.Store(t, c, nil); got != c || c.closes != 0 {
			t.Fatalf("Store = %p with %d closes, want %p open", got, c.closes, c)
		}
	})
	if c.closes != 1 {
		t.Errorf("closed %d times when the test ended, want 1", c.closes)
	}
}
