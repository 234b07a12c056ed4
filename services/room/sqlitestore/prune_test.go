package sqlitestore

import (
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/atrium-iot/atrium/internal/reading"
	"github.com/atrium-iot/atrium/internal/retention"
	"github.com/atrium-iot/atrium/internal/sqlitex"
	"github.com/atrium-iot/atrium/internal/sqlitex/sqlitetest"
	"github.com/atrium-iot/atrium/services/room"
	"github.com/atrium-iot/atrium/services/room/storetest"
)

// TestPruneChunks prunes more rollups and more series than one chunk takes,
// with Apply calls going on, and checks the cutoff of each tier exactly.
func TestPruneChunks(t *testing.T) {
	base := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	now := base.Add(10 * 24 * time.Hour)
	s := openTest(t, filepath.Join(t.TempDir(), "prune.db"), Options{
		Settings: sqlitex.Settings{Synchronous: "NORMAL"},
		Tiered:   retention.Tiered{Policy: retention.Policy{Retention: 24 * time.Hour, PruneEvery: -1, Now: func() time.Time { return now }}, RollupRetention: 72 * time.Hour},
	})
	ctx := t.Context()
	// 300 rooms (more than pruneSeries) with one old reading each, and a busy
	// room with a reading a minute for three days before the cutoff (4 320
	// minute rollups, more than pruneChunk).
	minuteCut := now.Add(-24 * time.Hour)
	var rs []reading.Reading
	for i := range 300 {
		rs = append(rs, reading.Reading{SensorID: fmt.Sprintf("s%03d", i), RoomID: fmt.Sprintf("r%03d", i), Type: "co2", Value: 1, Timestamp: base})
	}
	for m := range 3 * 24 * 60 {
		rs = append(rs, reading.Reading{SensorID: "busy", RoomID: "busy", Type: "co2", Value: 1, Timestamp: minuteCut.Add(-time.Duration(m+1) * time.Minute)})
	}
	// The minute that ends at the cutoff goes; the one that ends after it stays.
	edge := []reading.Reading{
		{SensorID: "edge", RoomID: "edge", Type: "co2", Value: 1, Timestamp: minuteCut.Add(-time.Minute)},
		{SensorID: "edge", RoomID: "edge", Type: "co2", Value: 2, Timestamp: minuteCut.Add(-time.Millisecond)},
		{SensorID: "edge", RoomID: "edge", Type: "co2", Value: 3, Timestamp: minuteCut.Add(-time.Minute + time.Millisecond)},
		{SensorID: "edge", RoomID: "edge", Type: "co2", Value: 4, Timestamp: minuteCut},
	}
	for i := 0; i < len(rs); i += 1000 {
		if _, err := s.Apply(ctx, room.Batch{ID: fmt.Sprintf("b%d", i), Readings: rs[i:min(i+1000, len(rs))], At: now}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.Apply(ctx, room.Batch{ID: "edge", Readings: edge, At: now}); err != nil {
		t.Fatal(err)
	}
	count := func(table string) (n int) {
		t.Helper()
		if err := s.db.Readers.QueryRowContext(ctx, "SELECT count(*) FROM "+table+" WHERE room_id <> 'live'").Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	before := map[string]int{}
	for _, tr := range tiers {
		before[tr.table] = count(tr.table)
	}

	done := make(chan error, 1)
	go func() {
		var err error
		for i := 0; err == nil && i < 50; i++ {
			_, err = s.Apply(ctx, room.Batch{ID: fmt.Sprintf("live%d", i), At: now,
				Readings: []reading.Reading{{SensorID: "live", RoomID: "live", Type: "co2", Value: 1, Timestamp: now.Add(time.Duration(i) * time.Second)}}})
		}
		done <- err
	}()
	n, err := s.Prune(ctx)
	if err != nil {
		t.Fatalf("Prune: %v", err)
	}
	if err := <-done; err != nil {
		t.Fatalf("Apply during Prune: %v", err)
	}
	// Minute rollups: the 300 rooms', the busy room's 4 320 and the edge room's
	// first minute. Five-minute and hour rollups (cutoff 72 h ago): the 300
	// rooms' (ten days old) and the busy room's first day (288 and 24).
	want := map[string]int{"rollup_1m": 300 + 3*24*60 + 1, "rollup_5m": 300 + 288, "rollup_1h": 300 + 24}
	var total int
	for _, tr := range tiers {
		if got := before[tr.table] - count(tr.table); got != want[tr.table] {
			t.Errorf("%s: %d rollups deleted, want %d", tr.table, got, want[tr.table])
		}
		total += want[tr.table]
	}
	if n != int64(total) {
		t.Errorf("Prune = %d, want %d", n, total)
	}
	got, err := s.History(ctx, room.HistoryQuery{RoomID: "edge", Type: "co2", From: minuteCut.Add(-time.Hour), To: now, Bucket: time.Minute, Limit: 10})
	if err != nil || len(got) != 1 || !got[0].Start.Equal(minuteCut) || got[0].Count != 1 {
		t.Errorf("edge room at 1m = %+v, %v; want only the minute starting at the cutoff", got, err)
	}
}

// TestPruneAtOpen: with a retention, the pruner runs right after Open.
func TestPruneAtOpen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "open.db")
	storetest.RunPruneAtOpen(t, func(t *testing.T, r retention.Tiered) room.Store {
		return openTest(t, path, Options{Tiered: r})
	})
}

// TestPrunePlan checks that a chunk's statements are primary key searches.
func TestPrunePlan(t *testing.T) {
	s := openTest(t, filepath.Join(t.TempDir(), "plan.db"), Options{})
	want, avoid := []string{"SEARCH rollup_1m USING PRIMARY KEY ("}, []string{"SCAN rollup", "TEMP B-TREE"}
	sqlitetest.RunPlans(t, s.db.Readers,
		sqlitetest.Plan{Name: "next series", Query: "SELECT room_id, type FROM rollup_1m WHERE (room_id, type) > (?, ?) ORDER BY room_id, type LIMIT 1",
			Args: []any{"r", "co2"}, Want: want, Avoid: avoid},
		sqlitetest.Plan{Name: "delete chunk", Query: "DELETE FROM rollup_1m WHERE (room_id, type, start_ms) IN (SELECT room_id, type, start_ms FROM rollup_1m WHERE room_id = ? AND type = ? AND start_ms <= ? LIMIT ?)",
			Args: []any{"r", "co2", 1, 2000}, Want: want, Avoid: avoid},
	)
}
