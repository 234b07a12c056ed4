package sqlitestore

import (
	"context"
	"fmt"
	"io"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/atrium-iot/atrium/internal/reading"
	"github.com/atrium-iot/atrium/internal/retention"
	"github.com/atrium-iot/atrium/internal/servicetest"
	"github.com/atrium-iot/atrium/internal/sqlitex"
	"github.com/atrium-iot/atrium/internal/sqlitex/sqlitetest"
	"github.com/atrium-iot/atrium/services/room"
	"github.com/atrium-iot/atrium/services/room/storetest"
)

func TestContract(t *testing.T) {
	sqlitetest.Modes(t, func(t *testing.T, settings sqlitex.Settings) {
		storetest.Run(t, sqlitetest.Opener(t, func(ctx context.Context, path string) (room.Store, error) {
			return Open(ctx, path, Options{Settings: settings})
		}))
	})
}

func TestRetentionContract(t *testing.T) {
	path := sqlitetest.Paths(t)
	storetest.RunRetention(t, func(t *testing.T, name string, r retention.Tiered) storetest.Pruner {
		r.PruneEvery = -1
		return sqlitetest.Open(t, path(name), func(ctx context.Context, path string) (*Store, error) {
			return Open(ctx, path, Options{Tiered: r})
		})
	})
}

// openTest opens a store at path with opts and closes it when t ends.
func openTest(t *testing.T, path string, opts Options) *Store {
	t.Helper()
	s, err := Open(t.Context(), path, opts)
	return servicetest.Store(t, s, err)
}

func TestOpen(t *testing.T) {
	sqlitetest.RunOpen(t, 1, func(ctx context.Context, path, sync string) (io.Closer, error) {
		return Open(ctx, path, Options{Settings: sqlitex.Settings{Synchronous: sync}})
	})
}

// TestQueryPlan checks that the reads behind GET /rooms/{id}/metrics and history
// are primary key range searches: they must not slow down as rollups pile up.
func TestQueryPlan(t *testing.T) {
	s := openTest(t, filepath.Join(t.TempDir(), "plan.db"), Options{})
	pk := "SEARCH rollup_1m USING PRIMARY KEY (room_id=? AND type=? AND start_ms>? AND start_ms<?)"
	noScan := []string{"SCAN rollup", "SCAN l"}
	sqlitetest.RunPlans(t, s.db.Readers,
		sqlitetest.Plan{Name: "window", Query: windowQuery, Want: []string{pk}, Avoid: noScan},
		sqlitetest.Plan{Name: "history", Query: "SELECT start_ms, n, vsum, vmin, vmax FROM rollup_1m WHERE room_id = ? AND type = ? AND start_ms >= ? AND start_ms < ? ORDER BY start_ms",
			Want: []string{pk}, Avoid: noScan},
		sqlitetest.Plan{Name: "latest", Query: `SELECT l.type, l.sensor_id, l.value, l.unit, l.ts_ms FROM latest l JOIN sensors s ON s.id = l.sensor_id AND s.room_id = l.room_id WHERE l.room_id = ?`,
			Want: []string{"SEARCH l USING PRIMARY KEY (room_id=?)", "SEARCH s USING "}, Avoid: noScan},
	)
}

// TestTwoProcessesShareFile runs two stores on one file, as two replicas of the
// service consuming one queue would: every batch is delivered to both, several
// times, concurrently; each is applied exactly once.
func TestTwoProcessesShareFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "shared.db")
	a, b := openTest(t, path, Options{}), openTest(t, path, Options{})
	base := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	const batches = 40
	var wg sync.WaitGroup
	var mu sync.Mutex
	applied := map[string]int{}
	for i := range batches {
		rs := []reading.Reading{
			{SensorID: "s1", RoomID: "r1", Type: "co2", Value: float64(400 + i), Timestamp: base.Add(time.Duration(i) * time.Second)},
			{SensorID: "s2", RoomID: "r1", Type: "co2", Value: 500, Timestamp: base.Add(time.Duration(i) * time.Second)},
		}
		for k, st := range []*Store{a, b, a, b} {
			wg.Go(func() {
				out, err := st.Apply(t.Context(), room.Batch{ID: fmt.Sprintf("b%d", i), Readings: rs, At: base})
				if err != nil {
					t.Errorf("Apply b%d on store %d: %v", i, k%2, err)
					return
				}
				if !out.Duplicate {
					mu.Lock()
					applied[fmt.Sprintf("b%d", i)]++
					mu.Unlock()
				}
			})
		}
	}
	wg.Wait()
	for i := range batches {
		if n := applied[fmt.Sprintf("b%d", i)]; n != 1 {
			t.Errorf("batch b%d applied %d times, want 1", i, n)
		}
	}
	for _, st := range []*Store{a, b} {
		got, err := st.History(t.Context(), room.HistoryQuery{RoomID: "r1", Type: "co2", From: base, To: base.Add(time.Hour), Bucket: time.Hour, Limit: 10})
		if err != nil {
			t.Fatal(err)
		}
		// 400..439 and forty 500s.
		if len(got) != 1 || got[0].Count != 80 || got[0].Sum != 40*400+780+40*500 || got[0].Min != 400 || got[0].Max != 500 {
			t.Errorf("history = %+v, want 80 readings", got)
		}
	}
}
