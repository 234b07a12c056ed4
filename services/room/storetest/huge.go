package storetest

import (
	"testing"
	"time"

	"github.com/atrium-iot/atrium/internal/reading"
	"github.com/atrium-iot/atrium/services/room"
)

// huge is a finite value whose double overflows.
const huge = 1.7e308

// testHugeValues: readings near the largest double overflow the sums of their
// rollups. Every batch is still stored, counts, minimums and maximums stay
// exact, and the mean taken from a rollup (reading.Mean) stays within them.
func testHugeValues(t *testing.T, h *harness) {
	h.apply("up", rd("a1", "r1", "energy", huge, at(10*time.Second)), rd("a2", "r1", "energy", huge, at(20*time.Second)))
	checkHuge(t, "one sign", h.snapshot("r1", at(0), at(time.Minute)).Window, 2, huge, huge)
	// The other sign in the same minute, in another batch: the sums meet.
	h.apply("down", rd("a3", "r1", "energy", -huge, at(30*time.Second)), rd("a4", "r1", "energy", -huge, at(40*time.Second)),
		rd("a5", "r1", "energy", -huge, at(50*time.Second)))
	h.apply("more", rd("a6", "r1", "energy", huge, at(time.Minute)))
	checkHuge(t, "both signs", h.snapshot("r1", at(0), at(time.Minute)).Window, 6, -huge, huge)
	for _, b := range []time.Duration{time.Minute, 5 * time.Minute, time.Hour, 24 * time.Hour} {
		what := "history " + b.String()
		st := h.history(room.HistoryQuery{RoomID: "r1", Type: "energy", From: at(0), To: at(2 * time.Hour), Bucket: b, Limit: 100})
		if b > time.Minute {
			checkHuge(t, what, st, 6, -huge, huge)
			continue
		}
		if len(st) != 2 {
			t.Errorf("%s: %+v, want two minutes", what, st)
			continue
		}
		checkHuge(t, what+", first minute", st[:1], 5, -huge, huge)
		checkHuge(t, what+", second minute", st[1:], 1, huge, huge)
	}
}

// checkHuge checks that stats is one rollup of n readings between lo and hi,
// whose mean is lo when lo = hi and within [lo, hi] otherwise.
func checkHuge(t *testing.T, what string, stats []room.Stat, n int64, lo, hi float64) {
	t.Helper()
	if len(stats) != 1 || stats[0].Count != n || stats[0].Min != lo || stats[0].Max != hi {
		t.Errorf("%s: %+v, want one rollup of %d readings in %g…%g", what, stats, n, lo, hi)
		return
	}
	m := reading.Mean(stats[0].Sum, stats[0].Count, stats[0].Min, stats[0].Max)
	if lo == hi && m != lo {
		t.Errorf("%s: mean of %d readings of %g = %g", what, n, lo, m)
	}
}
