package servicetest_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"sync/atomic"
	"testing"

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

// recorder is a testing.TB that notes a failure instead of failing.
type recorder struct {
	testing.TB
	failed bool
}

func (r *recorder) Errorf(string, ...any) { r.failed = true }
