package mongostore

import (
	"context"
	"fmt"
	"testing"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/atrium-iot/atrium/internal/mongox/mongotest"
	"github.com/atrium-iot/atrium/internal/reading"
	"github.com/atrium-iot/atrium/services/sensor"
)

// rollupTotals sums the counts and values of the hourly buckets of sensors.
func rollupTotals(t *testing.T, s *Store, sensors []string) (n int64, sum float64) {
	t.Helper()
	for _, id := range sensors {
		rs, err := s.Rollups(t.Context(), id, "co2", time.Time{}, time.Time{})
		if err != nil {
			t.Fatalf("Rollups %s: %v", id, err)
		}
		for _, r := range rs {
			n += r.Count
			sum += r.Sum
		}
	}
	return n, sum
}

// TestRollupsRedoCountsEveryBucket redoes a batch whose first bucket was
// already counted (a resumed batch): on FerretDB 1.24 an update command stops
// at its first failed statement, so an upsert that expects a duplicate key
// must not share a command with the buckets still to count.
func TestRollupsRedoCountsEveryBucket(t *testing.T) {
	c := mongotest.Client(t)
	hour := time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC)
	tests := []struct {
		name  string
		first int // buckets counted by the run that died
		total int // buckets of the batch
	}{
		{"first bucket counted", 1, 4},
		{"none counted", 0, 3},
		{"all counted", 3, 3},
		{"more than a chunk", 5, 70},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := openTest(t, mongotest.Database(t, c, "sensor_redo_"+tc.name), Options{})
			var all []reading.Reading
			for i := range tc.total {
				all = append(all, co2(fmt.Sprintf("s%02d", i), hour, float64(400+i)))
			}
			if err := s.updateRollups(t.Context(), "b1", all[:tc.first]); err != nil {
				t.Fatalf("first run: %v", err)
			}
			if err := s.updateRollups(t.Context(), "b1", all); err != nil {
				t.Fatalf("redo: %v", err)
			}
			for i, r := range all {
				rs, err := s.Rollups(t.Context(), r.SensorID, "co2", time.Time{}, time.Time{})
				if err != nil {
					t.Fatalf("Rollups: %v", err)
				}
				if len(rs) != 1 || rs[0].Count != 1 || rs[0].Sum != r.Value || rs[0].Min != r.Value || rs[0].Max != r.Value {
					t.Fatalf("bucket %d (%s) = %+v, want one bucket counting %v once", i, r.SensorID, rs, r.Value)
				}
			}
		})
	}
}

// TestRollupsConcurrentIngest ingests batches that create the same buckets
// at once, from two stores (two processes) and from one store's goroutines:
// every stored reading is counted in its bucket.
func TestRollupsConcurrentIngest(t *testing.T) {
	c := mongotest.Client(t)
	hour := time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC)
	tests := []struct {
		name    string
		stores  int
		writers int
	}{
		{"one store four goroutines", 1, 4},
		{"two stores", 2, 2},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			db := mongotest.Database(t, c, "sensor_conc_"+tc.name)
			stores := make([]*Store, tc.stores)
			for i := range stores {
				stores[i] = openTest(t, db, Options{})
			}
			const sensors, rounds = 6, 5
			var ids []string
			for i := range sensors {
				ids = append(ids, fmt.Sprintf("s%d", i))
			}
			var g errgroup.Group
			var want int64
			var wantSum float64
			for w := range tc.writers {
				var batches []sensor.Batch
				for round := range rounds {
					b := sensor.Batch{ID: fmt.Sprintf("w%d-r%d", w, round)}
					for i, id := range ids {
						// Writers differ in the millisecond, so no reading is a duplicate;
						// every batch touches the same six buckets.
						ts := hour.Add(time.Duration(round)*time.Minute + time.Duration(w)*time.Millisecond)
						v := float64(400 + w*100 + i)
						b.Readings = append(b.Readings, co2(id, ts, v))
						want++
						wantSum += v
					}
					batches = append(batches, b)
				}
				s := stores[w%len(stores)]
				g.Go(func() error {
					for _, b := range batches {
						ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
						_, err := s.Ingest(ctx, b)
						cancel()
						if err != nil {
							return err
						}
					}
					return nil
				})
			}
			if err := g.Wait(); err != nil {
				t.Fatalf("Ingest: %v", err)
			}
			n, sum := rollupTotals(t, stores[0], ids)
			if tc.stores > 1 && !stores[0].conn.Server.AtomicUpdates {
				// Two processes on a server without atomic updates may lose an $inc
				// (docs/storage.md); they must never lose a whole statement's bucket.
				for _, id := range ids {
					rs, err := stores[0].Rollups(t.Context(), id, "co2", time.Time{}, time.Time{})
					if err != nil || len(rs) != 1 || rs[0].Count == 0 {
						t.Fatalf("bucket of %s = %+v, %v; want one bucket with a count", id, rs, err)
					}
				}
				if n > want {
					t.Fatalf("rollup count = %d, want at most %d", n, want)
				}
				t.Logf("two stores on a non-atomic server: %d of %d counted", n, want)
				return
			}
			if n != want || sum != wantSum {
				t.Fatalf("rollups count %d readings summing %v, want %d summing %v", n, sum, want, wantSum)
			}
		})
	}
}
