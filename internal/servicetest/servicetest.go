// Package servicetest runs one cloud service in a test as atrium runs it: its
// HTTP API on a loopback server and its Run loop (bus consumers, publishers,
// sweeps), until Stop or the end of the test. It knows no service: anything
// with Handler and Run will do.
package servicetest

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/atrium-iot/atrium/internal/bus/membus"
	"github.com/atrium-iot/atrium/internal/logging"
	"github.com/atrium-iot/atrium/internal/testwait"
)

// Bus is the in-process bus, as atrium -bus=memory runs it, logging nothing
// and closed when t ends (closing it sooner is allowed).
func Bus(t testing.TB) *membus.Bus {
	b := membus.New(logging.Discard())
	t.Cleanup(func() { b.Close() })
	return b
}

// Store is a store just opened for a test, st with its opening's err: an error
// fails t, and the store is closed when t ends (closing it sooner is allowed).
func Store[S io.Closer](t testing.TB, st S, err error) S {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

// Service is what every cloud service offers.
type Service interface {
	Handler() http.Handler
	Run(ctx context.Context) error
}

// Running is a service started by Start.
type Running struct {
	URL string // the loopback server's, http://127.0.0.1:port

	t      testing.TB
	srv    *httptest.Server
	cancel context.CancelFunc
	done   chan error
	once   sync.Once
}

// Start serves svc's Handler on a loopback server and runs svc.Run until Stop,
// which the end of the test calls too.
func Start(t testing.TB, svc Service) *Running {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	r := &Running{srv: httptest.NewServer(svc.Handler()), t: t, cancel: cancel, done: make(chan error, 1)}
	r.URL = r.srv.URL
	go func() { r.done <- svc.Run(ctx) }()
	t.Cleanup(r.Stop)
	return r
}

// Stop ends Run, then closes the server and every connection to it (a
// WebSocket's too), and fails the test when Run returned an error. The
// service's store and bus stay open. Later calls do nothing.
func (r *Running) Stop() {
	r.once.Do(func() {
		r.cancel()
		if err := <-r.done; err != nil {
			r.t.Errorf("Run: %v", err)
		}
		r.srv.CloseClientConnections()
		r.srv.Close()
	})
}

// Serve serves h, a service's API, on a loopback server until t ends and
// returns its URL: for tests that drive the service's consumer themselves, and
// start its Run loop later (Run) or not at all.
func Serve(t testing.TB, h http.Handler) string {
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv.URL
}

// Run runs run, a service's Run loop, until t ends; an error it returns fails t.
func Run(t testing.TB, run func(ctx context.Context) error) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
}

// WaitReady waits until the service at url answers GET /readyz with 200; a
// service not listening yet is not ready.
func WaitReady(t testing.TB, url string) {
	t.Helper()
	WaitReadyWithin(t, testwait.Deadline, url)
}

// readyClient polls /readyz: a service that hangs fails one poll, not the wait.
var readyClient = &http.Client{Timeout: 2 * time.Second}

// WaitReadyWithin is WaitReady with a deadline of its own, for a service that
// takes longer to get ready (one that must reach an engine first).
func WaitReadyWithin(t testing.TB, within time.Duration, url string) {
	t.Helper()
	testwait.Within(t, within, url+" ready", func() bool {
		resp, err := readyClient.Get(url + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
}
