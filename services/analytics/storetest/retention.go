package storetest

import (
	"context"
	"testing"
	"time"

	"github.com/atrium-iot/atrium/internal/reading"
	"github.com/atrium-iot/atrium/services/analytics"
)

// Pruner is how a Store honours -retention (raw readings) and -rollup-retention
// (the per-minute aggregates every query reads).
type Pruner interface {
	// PruneBefore deletes the readings with a timestamp before readings and the
	// aggregates of the minutes that end at or before rollups (a zero time
	// keeps that kind), and returns how many readings and aggregate rows it
	// deleted. From then on, a reading older than readings is ignored by
	// AddReadings: the store can no longer tell it from one already counted.
	// The latest values, alerts and reports are kept. An adapter's own Prune
	// calls it with now - Retention and now - RollupRetention by its clock.
	PruneBefore(ctx context.Context, readings, rollups time.Time) (nReadings, nRollups int64, err error)
}

// testRetention prunes with the cutoffs a store with a 24 h retention and a
// 72 h rollup retention computes at now: readings past the retention go,
// aggregates outlive them, and a reading older than the cutoff added again is
// not counted twice.
func testRetention(t *testing.T, h *harness) {
	// The clock is the real one truncated to the hour, and every reading is
	// at least two hours from a cutoff, so an engine that expires rows on its
	// own clock (a TTL) agrees with PruneBefore.
	now := time.Now().UTC().Truncate(time.Hour)
	ago := func(h int) time.Time { return now.Add(-time.Duration(h) * time.Hour) }
	in := []reading.Reading{
		rd("s1", "r1", "co2", 1000, ago(100)),                   // past both retentions
		rd("s1", "r1", "co2", 500, ago(48).Add(30*time.Second)), // past the raw retention only
		rd("s1", "r1", "co2", 600, ago(20)),                     // kept
		rd("s1", "r1", "co2", 700, ago(1)),                      // kept
		rd("s2", "r2", "temperature", 21, ago(30)),              // past the raw retention only
	}
	if n := h.add(in...); n != len(in) {
		t.Fatalf("AddReadings = %d, want %d", n, len(in))
	}
	nr, nu, err := h.S.PruneBefore(t.Context(), ago(24), ago(72))
	if err != nil {
		t.Fatalf("PruneBefore: %v", err)
	}
	// Readings: the first, second and fifth. Aggregates: the first reading's
	// minute, once per room and type and once per type.
	if nr != 3 || nu != 2 {
		t.Errorf("PruneBefore deleted %d readings and %d aggregate rows, want 3 and 2", nr, nu)
	}
	// check reads every aggregate back: co2 holds r1's co2 per hour, whose
	// last reading is the latest value.
	check := func(t *testing.T, what string, co2 []analytics.Bucket, latestCO2 float64) {
		t.Helper()
		ctx := t.Context()
		var sum float64
		var count int64
		for _, b := range co2 {
			sum += b.Mean * float64(b.Count)
			count += b.Count
		}
		if n, err := h.S.CountReadings(ctx, ago(200), now.Add(time.Hour)); err != nil || n != count+1 {
			t.Errorf("%s: CountReadings = %d, %v; want %d", what, n, err, count+1)
		}
		got, err := h.S.Series(ctx, analytics.SeriesQuery{RoomID: "r1", Type: "co2", From: ago(200), To: now.Add(time.Hour), Bucket: time.Hour})
		if err != nil {
			t.Fatal(err)
		}
		checkBuckets(t, what+": co2 of r1 per hour", got, co2)
		got, err = h.S.Series(ctx, analytics.SeriesQuery{Type: "co2", From: ago(200), To: now.Add(time.Hour), Bucket: time.Hour})
		if err != nil {
			t.Fatal(err)
		}
		checkBuckets(t, what+": co2 building-wide per hour", got, co2)
		stats, err := h.S.TypeStats(ctx, ago(200), now.Add(time.Hour))
		if err != nil {
			t.Fatal(err)
		}
		checkStats(t, what+": TypeStats", stats, []analytics.TypeStat{
			{Type: "co2", Count: count, Mean: sum / float64(count), Min: 500, Max: 700},
			{Type: "temperature", Count: 1, Mean: 21, Min: 21, Max: 21},
		})
		if e, ok, err := h.S.Extreme(ctx, analytics.SeriesQuery{RoomID: "r1", Type: "co2", From: ago(200), To: now}, true); err != nil || !ok ||
			e.Value != 700 || !e.At.Equal(ago(1)) {
			t.Errorf("%s: highest co2 = %+v, %v, %v; want 700 (the 1000 is gone)", what, e, ok, err)
		}
		latest, err := h.S.Latest(ctx, time.Time{})
		if err != nil || len(latest) != 2 || latest[0].Value != latestCO2 || latest[1].Value != 21 {
			t.Errorf("%s: Latest = %+v, %v; want co2 %v in r1 and temperature 21 in r2", what, latest, err, latestCO2)
		}
	}
	co2 := []analytics.Bucket{
		{Start: ago(48), Count: 1, Mean: 500, Min: 500, Max: 500},
		{Start: ago(20), Count: 1, Mean: 600, Min: 600, Max: 600},
		{Start: ago(1), Count: 1, Mean: 700, Min: 700, Max: 700},
	}
	check(t, "after PruneBefore", co2, 700)

	t.Run("readings older than the cutoff are not counted again", func(t *testing.T) {
		if n := h.add(in...); n != 0 {
			t.Errorf("AddReadings of the same readings = %d, want 0", n)
		}
		if n := h.add(rd("s3", "r1", "co2", 900, ago(30))); n != 0 {
			t.Errorf("AddReadings of a new reading older than the cutoff = %d, want 0", n)
		}
		check(t, "after adding them again", co2, 700)
	})
	t.Run("again", func(t *testing.T) {
		if nr, nu, err := h.S.PruneBefore(t.Context(), ago(24), ago(72)); err != nil || nr != 0 || nu != 0 {
			t.Errorf("PruneBefore again = %d, %d, %v; want nothing deleted", nr, nu, err)
		}
	})
	t.Run("new readings", func(t *testing.T) {
		if n := h.add(rd("s1", "r1", "co2", 650, now)); n != 1 {
			t.Errorf("AddReadings of a new reading = %d, want 1", n)
		}
		check(t, "after a new reading", append(co2[:3:3], analytics.Bucket{Start: now, Count: 1, Mean: 650, Min: 650, Max: 650}), 650)
	})
	t.Run("zero times keep everything", func(t *testing.T) {
		if nr, nu, err := h.S.PruneBefore(t.Context(), time.Time{}, time.Time{}); err != nil || nr != 0 || nu != 0 {
			t.Errorf("PruneBefore(zero, zero) = %d, %d, %v; want nothing deleted", nr, nu, err)
		}
	})
}
