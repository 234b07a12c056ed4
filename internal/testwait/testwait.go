// Package testwait is how tests wait for something that happens in the
// background (a service becoming ready, a bus delivery, an alert): by polling a
// condition, never by sleeping a fixed time.
package testwait

import (
	"testing"
	"time"
)

// Deadline bounds every wait of For: generous, for a loaded machine.
const Deadline = 30 * time.Second

// For polls cond until it holds, and fails t when it does not hold within
// Deadline. what names the awaited thing in the failure.
func For(t testing.TB, what string, cond func() bool) {
	t.Helper()
	Within(t, Deadline, what, cond)
}

// Within is For with a deadline of its own. cond is checked at once, then at
// growing intervals (1 ms up to 50 ms): a quick condition is seen quickly, a slow
// one is not polled in a tight loop.
func Within(t testing.TB, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for gap := time.Millisecond; !cond(); gap = min(2*gap, 50*time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", within, what)
		}
		time.Sleep(gap)
	}
}
