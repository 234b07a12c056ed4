package sqlitestore

import (
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/atrium-iot/atrium/internal/reading"
	"github.com/atrium-iot/atrium/internal/retention"
	"github.com/atrium-iot/atrium/internal/servicetest"
	"github.com/atrium-iot/atrium/internal/sqlitex/sqlitetest"
	"github.com/atrium-iot/atrium/internal/testwait"
	"github.com/atrium-iot/atrium/services/analytics"
)

var base = time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)

// openTest opens a store at path with opts and closes it when t ends.
func openTest(t *testing.T, path string, opts Options) *Store {
	t.Helper()
	s, err := Open(t.Context(), path, opts)
	return servicetest.Store(t, s, err)
}

func co2(sensor, room string, v float64, ts time.Time) reading.Reading {
	return reading.Reading{SensorID: sensor, RoomID: room, Type: "co2", Value: v, Timestamp: ts}
}

// TestPrune prunes by the store's clock more keys and rows than one chunk
// takes, and checks both cutoffs exactly.
func TestPrune(t *testing.T) {
	now := base.Add(10 * 24 * time.Hour)
	path := filepath.Join(t.TempDir(), "prune.db")
	ctx := t.Context()
	rawCut, rollCut := now.Add(-24*time.Hour), now.Add(-72*time.Hour)
	// Stored by an earlier run without retention.
	var rs []reading.Reading
	for i := range 300 { // more series and rooms than pruneKeys, ten days old
		rs = append(rs, co2(fmt.Sprintf("s%03d", i), fmt.Sprintf("r%03d", i), 1, base))
	}
	for m := range 3000 { // more readings of one series than pruneChunk
		rs = append(rs, co2("busy", "busy", 1, rawCut.Add(-time.Duration(m+1)*time.Second)))
	}
	rs = append(rs,
		co2("edge", "edge", 1, rawCut.Add(-time.Millisecond)),              // raw: gone
		co2("edge", "edge", 2, rawCut),                                     // raw: kept
		co2("edge", "edge", 3, rollCut.Add(-time.Minute)),                  // its minute ends at the cutoff: gone
		co2("edge", "edge", 4, rollCut.Add(-time.Minute+time.Millisecond)), // the same minute
		co2("edge", "edge", 5, rollCut),                                    // the next minute: kept
	)
	s := openTest(t, path, Options{})
	if _, err := s.AddReadings(ctx, rs); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openTest(t, path, Options{
		Tiered: retention.Tiered{Policy: retention.Policy{Retention: 24 * time.Hour, PruneEvery: -1, Now: func() time.Time { return now }}, RollupRetention: 72 * time.Hour},
	})
	nr, nu, err := s.Prune(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// Raw: 300 + 3000 + edge's 1, 3, 4, 5. Aggregates: the 300 rooms' minute
	// rows, their one type row, and edge's first minute (a room row and a type
	// row).
	if want := int64(300 + 3000 + 4); nr != want {
		t.Errorf("Prune deleted %d readings, want %d", nr, want)
	}
	if want := int64(300 + 1 + 2); nu != want {
		t.Errorf("Prune deleted %d aggregate rows, want %d", nu, want)
	}
	count := func(q string, args ...any) (n int64) {
		t.Helper()
		if err := s.db.Readers.QueryRowContext(ctx, q, args...).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	if n := count("SELECT count(*) FROM readings WHERE ts < ?", rawCut.UnixMilli()); n != 0 {
		t.Errorf("%d readings older than the cutoff left", n)
	}
	if n := count("SELECT count(*) FROM room_minute WHERE minute < ?", analytics.Minute(rollCut)); n != 0 {
		t.Errorf("%d room aggregates older than the cutoff left", n)
	}
	got, err := s.Series(ctx, analytics.SeriesQuery{RoomID: "edge", Type: "co2", From: rollCut.Add(-time.Hour), To: rollCut.Add(time.Hour), Bucket: time.Minute})
	if err != nil || len(got) != 1 || got[0].Mean != 5 {
		t.Errorf("edge's minutes around the rollup cutoff = %+v, %v; want only the one starting at it", got, err)
	}
	// A reading older than the retention is ignored by the clock alone.
	if n, err := s.AddReadings(ctx, []reading.Reading{co2("late", "late", 1, rawCut.Add(-time.Second)), co2("late", "late", 2, rawCut)}); err != nil || n != 1 {
		t.Errorf("AddReadings around the raw cutoff = %d, %v; want 1", n, err)
	}
}

// TestPruneAtOpen: with a retention, the pruner runs right after Open.
func TestPruneAtOpen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "open.db")
	now := base.Add(48 * time.Hour)
	s, err := Open(t.Context(), path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.AddReadings(t.Context(), []reading.Reading{co2("s1", "r1", 1, base), co2("s1", "r1", 2, now)}); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openTest(t, path, Options{Tiered: retention.Tiered{Policy: retention.Policy{Now: func() time.Time { return now }}, RollupRetention: 24 * time.Hour}})
	testwait.Within(t, 10*time.Second, "the prune at open: one reading left", func() bool {
		n, err := s.CountReadings(t.Context(), base, now.Add(time.Minute))
		if err != nil {
			t.Fatal(err)
		}
		return n == 1
	})
}

// TestPrunePlan checks that the chunks' statements search an index.
func TestPrunePlan(t *testing.T) {
	s := openTest(t, filepath.Join(t.TempDir(), "plan.db"), Options{})
	plan := func(name, query, table string, args ...any) sqlitetest.Plan {
		return sqlitetest.Plan{Name: name, Query: query, Args: args, Want: []string{"SEARCH " + table + " USING"}, Avoid: []string{"SCAN " + table, "TEMP B-TREE"}}
	}
	sqlitetest.RunPlans(t, s.db.Readers,
		plan("next series", readingsByKey.next, "readings", 1),
		plan("readings chunk", readingsByKey.del, "readings", 1, 1, 1),
		plan("next room and type", roomMinutesByKey.next, "room_minute", "r", "co2"),
		plan("room chunk", roomMinutesByKey.del, "room_minute", "r", "co2", 1, 1),
		plan("type chunk", deleteTypeMinutes, "type_minute", 1, 1),
	)
}
