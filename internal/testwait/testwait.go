// Package testwait is how tests wait for something that happens in the
// background (a service becoming ready, a bus delivery, an alert): by polling a
// condition, never by sleeping a fixed time.
package testwait

import (
	"testing"
	"time"
)

// Deadline bounds every wait: generous, for a loaded machine.
const Deadline = 30 * time.Second

// For polls cond every 10 ms until it holds, and fails t when it does not hold
// within Deadline. what names the awaited thing in the failure.
func For(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(Deadline)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", Deadline, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
