package testenv

import (
	"testing"
	"time"
)

// Poll waits until cond holds, checking it at once and then at growing intervals
// (1 ms up to 50 ms), and fails tb when within passes first: the tests wait on a
// condition, never sleep a fixed time before an assertion.
func Poll(tb testing.TB, within time.Duration, what string, cond func() bool) {
	tb.Helper()
	deadline := time.Now().Add(within)
	for gap := time.Millisecond; !cond(); gap = min(2*gap, 50*time.Millisecond) {
		if time.Now().After(deadline) {
			tb.Fatalf("timed out after %v waiting for %s", within, what)
		}
		time.Sleep(gap)
	}
}
