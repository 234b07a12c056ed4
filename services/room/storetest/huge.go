package storetest

import (
	"fmt"
	"testing"
	"time"

	"github.com/atrium-iot/atrium/internal/reading"
	"github.com/atrium-iot/atrium/services/room"
)

// huge is a finite value whose double overflows.
const huge = 1.7e308

// testHugeValues: readings near the largest double, each in a batch of its
// own, overflow the sums of their rollups (a store must not add to a stored sum
// in a way that overflows: FerretDB refuses an infinite $inc). Every batch is
// still stored, counts, minimums and maximums stay exact, and the mean taken
// from a rollup (reading.Mean) stays within them; so do a derived series'.
func testHugeValues(t *testing.T, h *harness) {
	h.apply("up1", rd("a1", "r1", "energy", huge, at(10*time.Second)))
	h.apply("up2", rd("a2", "r1", "energy", huge, at(20*time.Second)))
	checkHuge(t, "one sign", h.snapshot("r1", at(0), at(time.Minute)).Window, 2, huge, huge)
	// The other sign in the same minute, in other batches: the sums meet.
	for i, ts := range []time.Duration{30 * time.Second, 40 * time.Second, 50 * time.Second} {
		h.apply(fmt.Sprintf("down%d", i), rd(fmt.Sprintf("a%d", 3+i), "r1", "energy", -huge, at(ts)))
	}
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
	// A derived series takes the same path; its coarser buckets are rebuilt.
	if err := h.S.SetSeries(t.Context(), room.EstimateType, []room.RoomPoints{{RoomID: "r1", Points: []room.Point{{Start: at(0), Value: huge}, {Start: at(time.Minute), Value: huge}}}}); err != nil {
		t.Fatalf("SetSeries: %v", err)
	}
	st := h.history(room.HistoryQuery{RoomID: "r1", Type: room.EstimateType, From: at(0), To: at(time.Hour), Bucket: 5 * time.Minute, Limit: 10})
	checkHuge(t, "derived series", st, 2, huge, huge)
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
