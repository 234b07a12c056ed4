// Package cloudtest runs `atrium` in a test's process: the flags as the program
// reads them (no environment), the parts on the ports the flags name, stopped and
// waited for when the test ends.
package cloudtest

import (
	"context"
	"io"
	"testing"

	"github.com/atrium-iot/atrium/cloud"
	"github.com/atrium-iot/atrium/internal/logging"
)

// Start parses args, starts the parts they name and returns the running App. At
// the end of the test it cancels the App and waits for Run to return; an error
// from Run fails the test.
func Start(t testing.TB, args ...string) *cloud.App {
	t.Helper()
	cfg, err := cloud.ParseFlags(args, func(string) string { return "" }, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	app, err := cloud.New(ctx, cfg, logging.Discard())
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- app.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("atrium Run: %v", err)
		}
	})
	return app
}
