// Package cloudtest runs `atrium` in a test's process: the flags as the program
// reads them (no environment), the parts on the ports the flags name, stopped and
// waited for when the test ends.
package cloudtest

import (
	"context"
	"io"
	"log/slog"
	"sync"
	"testing"

	"github.com/atrium-iot/atrium/cloud"
	"github.com/atrium-iot/atrium/internal/logging"
)

// Running is an App started by Run.
type Running struct {
	*cloud.App
	stop func()
}

// Stop cancels the App and waits for Run to return, once; an error from Run
// fails the test. It also runs when the test ends.
func (r *Running) Stop() { r.stop() }

// Start is Run with the logs discarded, for a test that never stops the App itself.
func Start(t testing.TB, args ...string) *cloud.App {
	t.Helper()
	return Run(t, nil, args...).App
}

// Run parses args and starts the parts they name, logging to log (discarded when
// nil).
func Run(t testing.TB, log *slog.Logger, args ...string) *Running {
	t.Helper()
	cfg, err := cloud.ParseFlags(args, func(string) string { return "" }, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if log == nil {
		log = logging.Discard()
	}
	ctx, cancel := context.WithCancel(context.Background())
	app, err := cloud.New(ctx, cfg, log)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- app.Run(ctx) }()
	var once sync.Once
	r := &Running{App: app, stop: func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("atrium Run: %v", err)
			}
		})
	}}
	t.Cleanup(r.stop)
	return r
}
