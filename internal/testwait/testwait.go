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
	WithinState(t, within, what, func() (bool, string) { return cond(), "" })
}

// WithinState is Within for a condition that also describes the state it saw: a
// failure names the last one (its first 2000 bytes).
func WithinState(t testing.TB, within time.Duration, what string, cond func() (ok bool, state string)) {
	t.Helper()
	deadline := time.Now().Add(within)
	for gap := time.Millisecond; ; gap = min(2*gap, 50*time.Millisecond) {
		ok, state := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			if state == "" {
				t.Fatalf("timed out after %s waiting for %s", within, what)
			}
			t.Fatalf("timed out after %s waiting for %s; last: %.2000s", within, what, state)
		}
		time.Sleep(gap)
	}
}
