package storetest

import (
	"context"
	"testing"
	"time"

	"github.com/atrium-iot/atrium/internal/reading"
	"github.com/atrium-iot/atrium/internal/retention"
	"github.com/atrium-iot/atrium/internal/testwait"
	"github.com/atrium-iot/atrium/services/room"
)

// Pruner is a store that deletes, when asked, the rollups past their retention
// (a rollup goes once the whole of its period is older than the cutoff), and
// returns how many it deleted.
type Pruner interface {
	room.Store
	Prune(ctx context.Context) (int64, error)
}

// RetentionOpener opens a new, empty store called name with r's Retention,
// RollupRetention and Now (its PruneEvery is the adapter's to set). Its
// own pruning must not run before the suite calls Prune (an adapter turns its
// background pruner off). RunRetention closes the store.
type RetentionOpener func(t *testing.T, name string, r retention.Tiered) Pruner

// RunRetention checks -retention and -rollup-retention: Prune deletes the
// minute rollups older than the retention and the coarser ones older than the
// rollup retention, keeps the newer ones, leaves the latest values and the
// 5-minute window of the live metrics alone, and a zero retention keeps
// everything.
//
// The suite's clock is the real one truncated to the hour, and every reading is
// at least two hours from a cutoff, so a server that expires documents on its
// own clock (a MongoDB TTL index) agrees with Prune.
func RunRetention(t *testing.T, open RetentionOpener) {
	now := time.Now().UTC().Truncate(time.Hour)
	ago := func(h int, d time.Duration) time.Time { return now.Add(-time.Duration(h)*time.Hour + d) }
	in := []reading.Reading{
		rd("s1", "r1", "co2", 1, ago(100, 10*time.Second)),         // past both retentions
		rd("s1", "r1", "co2", 2, ago(48, 7*time.Minute)),           // past the minute retention only
		rd("s1", "r1", "co2", 3, ago(20, 3*time.Minute)),           // kept
		rd("s1", "r1", "co2", 4, now.Add(-2*time.Minute)),          // kept; in the 5-minute window
		rd("s2", "r1", "temperature", 21, ago(30, 30*time.Second)), // s2's last value: past the minute retention
	}
	one := func(typ string, start time.Time, v float64) room.Stat { return stat(typ, start, 1, v, v, v) }
	type want struct {
		minutes, fives, hours []room.Stat // co2 history at 1m, 5m and 1h
		tempMinutes, tempFive []room.Stat // temperature history at 1m and 5m
	}
	tests := []struct {
		name string
		r    retention.Tiered
		want want
	}{
		{"minutes 24h rollups 72h", retention.Tiered{Policy: retention.Policy{Retention: 24 * time.Hour}, RollupRetention: 72 * time.Hour}, want{
			minutes:  []room.Stat{one("co2", ago(20, 3*time.Minute), 3), one("co2", now.Add(-2*time.Minute), 4)},
			fives:    []room.Stat{one("co2", ago(48, 5*time.Minute), 2), one("co2", ago(20, 0), 3), one("co2", now.Add(-5*time.Minute), 4)},
			hours:    []room.Stat{one("co2", ago(48, 0), 2), one("co2", ago(20, 0), 3), one("co2", ago(1, 0), 4)},
			tempFive: []room.Stat{one("temperature", ago(30, 0), 21)},
		}},
		{"forever", retention.Tiered{}, want{
			minutes: []room.Stat{one("co2", ago(100, 0), 1), one("co2", ago(48, 7*time.Minute), 2),
				one("co2", ago(20, 3*time.Minute), 3), one("co2", now.Add(-2*time.Minute), 4)},
			fives: []room.Stat{one("co2", ago(100, 0), 1), one("co2", ago(48, 5*time.Minute), 2),
				one("co2", ago(20, 0), 3), one("co2", now.Add(-5*time.Minute), 4)},
			hours: []room.Stat{one("co2", ago(100, 0), 1), one("co2", ago(48, 0), 2),
				one("co2", ago(20, 0), 3), one("co2", ago(1, 0), 4)},
			tempMinutes: []room.Stat{one("temperature", ago(30, 0), 21)},
			tempFive:    []room.Stat{one("temperature", ago(30, 0), 21)},
		}},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tc.r.Now = func() time.Time { return now }
			s := open(t, "Retention"+string(rune('A'+i)), tc.r)
			t.Cleanup(func() { _ = s.Close() })
			h := harnessFor(t, s)
			ctx := t.Context()
			if _, err := s.Apply(ctx, room.Batch{ID: "b1", Readings: in, At: now}); err != nil {
				t.Fatalf("Apply: %v", err)
			}
			n, err := s.Prune(ctx)
			if err != nil {
				t.Fatalf("Prune: %v", err)
			}
			if tc.r.Retention == 0 && n != 0 {
				t.Errorf("Prune with no retention deleted %d rollups", n)
			}

			history := func(typ string, bucket time.Duration) []room.Stat {
				return h.history(room.HistoryQuery{RoomID: "r1", Type: typ, From: ago(200, 0), To: now.Add(time.Hour), Bucket: bucket, Limit: 1000})
			}
			checkStats(t, "co2 at 1m", history("co2", time.Minute), tc.want.minutes...)
			checkStats(t, "co2 at 5m", history("co2", 5*time.Minute), tc.want.fives...)
			checkStats(t, "co2 at 1h", history("co2", time.Hour), tc.want.hours...)
			checkStats(t, "temperature at 1m", history("temperature", time.Minute), tc.want.tempMinutes...)
			checkStats(t, "temperature at 5m", history("temperature", 5*time.Minute), tc.want.tempFive...)

			// The live metrics: latest values, also one older than the
			// retention, and the 5-minute window.
			snap := h.snapshot("r1", now.Add(-5*time.Minute), now)
			checkLatest(t, snap.Latest, sv("s1", "co2", 4, in[3].Timestamp), sv("s2", "temperature", 21, in[4].Timestamp))
			checkStats(t, "window", snap.Window, room.Stat{Type: "co2", Count: 1, Sum: 4, Min: 4, Max: 4})

			if n, err := s.Prune(ctx); err != nil || n != 0 {
				t.Errorf("second Prune = %d, %v; want nothing deleted", n, err)
			}
			// The store goes on: a new batch lands in its minute.
			h.apply("b2", rd("s1", "r1", "co2", 5, now))
			got := h.history(room.HistoryQuery{RoomID: "r1", Type: "co2", From: now, To: now.Add(time.Minute), Bucket: time.Minute, Limit: 10})
			checkStats(t, "co2 at 1m after a new batch", got, one("co2", now, 5))
		})
	}
}

// RunPruneAtOpen checks that a store opened with a retention prunes at once,
// without a call to Prune: minute rollups stored by a store without retention
// are gone soon after the store is opened again with a 24-hour one, and the
// coarser rollups stay (RollupRetention is 0). open opens the same store each
// time, with r and its background pruner as the adapter runs it; the store is
// closed at the end of t, or before by the suite.
func RunPruneAtOpen(t *testing.T, open func(t *testing.T, r retention.Tiered) room.Store) {
	now := t0.Add(48 * time.Hour)
	clock := func() time.Time { return now }
	s := open(t, retention.Tiered{Policy: retention.Policy{Now: clock}})
	if _, err := s.Apply(t.Context(), room.Batch{ID: "b1", At: now, Readings: []reading.Reading{
		rd("s1", "r1", "co2", 1, t0), rd("s1", "r1", "co2", 2, now),
	}}); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	h := harnessFor(t, open(t, retention.Tiered{Policy: retention.Policy{Retention: 24 * time.Hour, Now: clock}}))
	q := room.HistoryQuery{RoomID: "r1", Type: "co2", From: t0, To: now.Add(time.Hour), Bucket: time.Minute}
	testwait.Within(t, 20*time.Second, "the prune at open: only the new minute at 1m", func() bool {
		got := h.history(q)
		return len(got) == 1 && got[0].Sum == 2
	})
	q.Bucket = time.Hour
	if got := h.history(q); len(got) != 2 {
		t.Errorf("history at 1h = %+v; want both hours (RollupRetention 0)", got)
	}
}
