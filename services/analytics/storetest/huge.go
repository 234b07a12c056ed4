package storetest

import (
	"math"
	"testing"
	"time"

	"github.com/atrium-iot/atrium/services/analytics"
)

// huge is a finite value whose double overflows.
const huge = 1.7e308

// testHugeValues: readings near the largest double overflow the sums of the
// aggregates, also with both signs in one minute across calls. Every call is
// stored, counts and bounds stay exact, and every mean is finite and within
// its min and max (the mean of readings all equal to huge is huge).
func testHugeValues(t *testing.T, h *harness) {
	h.add(rd("a1", "r1", "energy", huge, at(10*time.Second)), rd("a2", "r1", "energy", huge, at(20*time.Second)),
		rd("o1", "r1", "occupancy", huge, at(0)), rd("o2", "r1", "occupancy", huge, at(30*time.Second)))
	h.add(rd("a3", "r1", "energy", -huge, at(30*time.Second)), rd("a4", "r1", "energy", -huge, at(40*time.Second)),
		rd("a5", "r1", "energy", -huge, at(50*time.Second)))
	h.add(rd("a6", "r1", "energy", huge, at(time.Minute)))
	within := func(what string, n, wantN int64, mean, lo, hi float64) {
		t.Helper()
		if n != wantN || math.IsNaN(mean) || mean < lo || mean > hi || (lo == hi && mean != lo) {
			t.Errorf("%s: %d readings, mean %v in %g…%g; want %d readings, the mean within", what, n, mean, lo, hi, wantN)
		}
	}
	ctx := t.Context()
	stats, err := h.S.TypeStats(ctx, at(0), at(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if len(stats) != 2 || stats[0].Min != -huge || stats[0].Max != huge || stats[1].Min != huge {
		t.Fatalf("type stats = %+v, want energy in ±%g and occupancy at %g", stats, huge, huge)
	}
	within("energy", stats[0].Count, 6, stats[0].Mean, -huge, huge)
	within("occupancy", stats[1].Count, 2, stats[1].Mean, huge, huge)
	for _, room := range []string{"r1", ""} {
		for _, b := range []time.Duration{time.Minute, time.Hour} {
			bs, err := h.S.Series(ctx, analytics.SeriesQuery{RoomID: room, Type: "energy", From: at(0), To: at(time.Hour), Bucket: b})
			if err != nil {
				t.Fatal(err)
			}
			want := []int64{6}
			if b == time.Minute {
				want = []int64{5, 1}
			}
			if len(bs) != len(want) {
				t.Errorf("series of %q per %s = %+v, want %d buckets", room, b, bs, len(want))
				continue
			}
			for i, bk := range bs {
				within("series bucket "+bk.Start.Format(time.TimeOnly), bk.Count, want[i], bk.Mean, bk.Min, bk.Max)
			}
		}
	}
	f, err := h.S.RoomFigures(ctx, "r1", at(0), at(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if f.OccupancyType != "occupancy" || f.OccupancyMinutes != 1 || f.OccupiedMinutes != 1 {
		t.Errorf("room figures %+v, want one occupied minute", f)
	}
	sum, err := h.S.SummaryFigures(ctx, at(30*time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	if len(sum.Types) != 2 {
		t.Fatalf("summary types = %+v, want energy and occupancy", sum.Types)
	}
	within("summary energy", sum.Types[0].Count, 6, sum.Types[0].Mean, -huge, huge)
	within("summary occupancy", sum.Types[1].Count, 2, sum.Types[1].Mean, huge, huge)
}
