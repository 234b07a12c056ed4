// Package agenttest runs `atrium-agent` in a test's process: the flags as the
// program reads them (no environment), stopped and waited for when the test ends.
package agenttest

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"runtime/pprof"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/atrium-iot/atrium/agent"
	"github.com/atrium-iot/atrium/internal/logging"
)

// StopWait bounds how long Stop waits for the agent's Run to return.
const StopWait = 2 * time.Minute

// Running is an agent started by Run, with the configuration it runs on.
type Running struct {
	*agent.Agent
	Config agent.Config

	once    sync.Once
	stopped bool // Stop was called by the test, which then owns Run's error
	cancel  context.CancelFunc
	done    chan error
	err     error
	t       testing.TB
}

// Run parses args, applies edit (when not nil) to the configuration, and starts
// the agent, logging to log (discarded when nil). It is stopped when the test
// ends; an error from its Run then fails the test, unless the test called Stop.
func Run(t testing.TB, log *slog.Logger, edit func(*agent.Config), args ...string) *Running {
	t.Helper()
	cfg, err := agent.ParseFlags(args, func(string) string { return "" }, io.Discard)
	if err != nil {
		t.Fatalf("agent flags %q: %v", args, err)
	}
	if edit != nil {
		edit(&cfg)
	}
	if log == nil {
		log = logging.Discard()
	}
	ctx, cancel := context.WithCancel(context.Background())
	a, err := agent.New(ctx, cfg, log)
	if err != nil {
		cancel()
		t.Fatalf("agent: %v", err)
	}
	r := &Running{Agent: a, Config: cfg, cancel: cancel, done: make(chan error, 1), t: t}
	go func() { r.done <- a.Run(ctx) }()
	t.Cleanup(func() {
		if err := r.halt(); err != nil && !r.stopped {
			t.Errorf("agent: %v", err)
		}
	})
	return r
}

// Stop cancels the agent and waits up to StopWait for its Run to return; it
// returns Run's error (the same on every call).
func (r *Running) Stop() error {
	r.stopped = true
	return r.halt()
}

func (r *Running) halt() error {
	r.once.Do(func() {
		r.cancel()
		select {
		case r.err = <-r.done:
		case <-time.After(StopWait):
			var stacks strings.Builder
			_ = pprof.Lookup("goroutine").WriteTo(&stacks, 1)
			r.t.Errorf("agent did not stop within %v; goroutines:\n%s", StopWait, stacks.String())
			r.err = errors.New("agent did not stop")
		}
	})
	return r.err
}
