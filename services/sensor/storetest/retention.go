package storetest

import (
	"context"
	"testing"
	"time"

	"github.com/atrium-iot/atrium/internal/reading"
	"github.com/atrium-iot/atrium/internal/retention"
	"github.com/atrium-iot/atrium/services/sensor"
)

// Pruner is a store that deletes, when asked, the raw readings older than its
// retention (by reading timestamp) and, if it keeps rollups, the rollups older
// than its rollup retention; it returns how many of each it deleted.
type Pruner interface {
	sensor.Store
	Prune(ctx context.Context) (readings, rollups int64, err error)
}

// RetentionStore is a store opened for RunRetention.
type RetentionStore struct {
	Store Pruner
	// RollupHours lists the hours that hold a rollup of a sensor's type, oldest
	// first, for an adapter that keeps hourly rollups; nil for one that keeps none.
	RollupHours func(ctx context.Context, sensorID, typ string) ([]time.Time, error)
}

// RetentionOpener opens a new, empty store called name with r's Retention,
// RollupRetention and Now (its PruneEvery is the adapter's to set). Its
// own pruning must not run before the suite calls Prune (an adapter turns its
// background pruner off, or sets it far off). RunRetention closes the store.
type RetentionOpener func(t *testing.T, name string, r retention.Tiered) RetentionStore

// RunRetention checks -retention and -rollup-retention: Prune deletes the raw
// readings older than the retention and keeps the newer ones, rollups outlive
// the raw readings, the registry (first and last seen, last values) is left as
// it was, and a zero retention keeps everything.
//
// The suite's clock is the real one truncated to the hour, and every reading is
// at least two hours from a cutoff, so a server that expires documents on its
// own clock (a MongoDB TTL index) agrees with Prune.
func RunRetention(t *testing.T, open RetentionOpener) {
	now := time.Now().UTC().Truncate(time.Hour)
	ago := func(h int) time.Time { return now.Add(-time.Duration(h) * time.Hour) }
	in := []reading.Reading{
		rd("s1", "r1", "co2", 1, "ppm", ago(100)),           // past both retentions
		rd("s1", "r1", "co2", 2, "ppm", ago(48)),            // past the raw retention only
		rd("s1", "r1", "co2", 3, "ppm", ago(20)),            // kept
		rd("s1", "r1", "co2", 4, "ppm", ago(1)),             // kept, the last value
		rd("s1", "r1", "humidity", 40, "%RH", ago(22)),      // kept, the last humidity
		rd("s2", "r2", "temperature", 20.5, "Cel", ago(30)), // s2's only reading: past the raw retention
	}
	hour := func(t time.Time) time.Time { return t.Truncate(time.Hour) }
	tests := []struct {
		name      string
		r         retention.Tiered
		s1, s2    []reading.Reading // readings left
		co2Rollup []time.Time       // hours left with a co2 rollup of s1
	}{
		{
			name:      "raw 24h rollups 72h",
			r:         retention.Tiered{Policy: retention.Policy{Retention: 24 * time.Hour}, RollupRetention: 72 * time.Hour},
			s1:        []reading.Reading{in[4], in[2], in[3]},
			co2Rollup: []time.Time{hour(in[1].Timestamp), hour(in[2].Timestamp), hour(in[3].Timestamp)},
		},
		{
			name:      "forever",
			s1:        []reading.Reading{in[0], in[1], in[4], in[2], in[3]},
			s2:        []reading.Reading{in[5]},
			co2Rollup: []time.Time{hour(in[0].Timestamp), hour(in[1].Timestamp), hour(in[2].Timestamp), hour(in[3].Timestamp)},
		},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tc.r.Now = func() time.Time { return now }
			rs := open(t, "retention"+string(rune('a'+i)), tc.r)
			s := rs.Store
			t.Cleanup(func() {
				if err := s.Close(); err != nil {
					t.Errorf("close store: %v", err)
				}
			})
			ctx := t.Context()
			h := harnessFor(t, s)
			if _, err := s.Ingest(ctx, sensor.Batch{ID: "b1", Readings: in, ReceivedAt: now}); err != nil {
				t.Fatalf("Ingest: %v", err)
			}
			before := map[string]sensor.Sensor{}
			for _, id := range []string{"s1", "s2"} {
				x, err := s.Sensor(ctx, id)
				if err != nil {
					t.Fatalf("Sensor(%s): %v", id, err)
				}
				before[id] = x
			}

			n, _, err := s.Prune(ctx)
			if err != nil {
				t.Fatalf("Prune: %v", err)
			}
			if want := int64(len(in) - len(tc.s1) - len(tc.s2)); n > want {
				t.Errorf("Prune deleted %d readings, want at most %d", n, want)
			}
			for _, c := range []struct {
				id   string
				want []reading.Reading
			}{{"s1", tc.s1}, {"s2", tc.s2}} {
				got, _, err := s.Readings(ctx, sensor.ReadingQuery{SensorID: c.id, Limit: 100})
				if err != nil {
					t.Fatalf("Readings(%s): %v", c.id, err)
				}
				checkReadings(t, "readings of "+c.id+" after Prune", got, c.want)
				h.checkSensor(t, "registry after Prune", c.id, before[c.id])
			}
			ids := h.sensorIDs(sensor.SensorQuery{Limit: 100})
			if len(ids) != 2 {
				t.Errorf("Sensors after Prune = %q, want s1 and s2", ids)
			}
			if rs.RollupHours != nil {
				hours, err := rs.RollupHours(ctx, "s1", "co2")
				if err != nil {
					t.Fatalf("rollups: %v", err)
				}
				if !sameTimes(hours, tc.co2Rollup) {
					t.Errorf("hours with a co2 rollup after Prune = %v, want %v", hours, tc.co2Rollup)
				}
			}

			if n, m, err := s.Prune(ctx); err != nil || n != 0 || m != 0 {
				t.Errorf("second Prune = %d readings, %d rollups, %v; want nothing deleted", n, m, err)
			}
			// The store goes on: a new reading is stored and read back.
			fresh := rd("s2", "r2", "temperature", 21, "Cel", now)
			if _, err := s.Ingest(ctx, sensor.Batch{ID: "b2", Readings: []reading.Reading{fresh}, ReceivedAt: now}); err != nil {
				t.Fatalf("Ingest after Prune: %v", err)
			}
			got, _, err := s.Readings(ctx, sensor.ReadingQuery{SensorID: "s2", Limit: 100})
			if err != nil {
				t.Fatalf("Readings(s2): %v", err)
			}
			checkReadings(t, "readings of s2 after a new batch", got, append(append([]reading.Reading{}, tc.s2...), fresh))
		})
	}
}

func sameTimes(a, b []time.Time) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if !a[i].Equal(b[i]) {
			return false
		}
	}
	return true
}
