package clickhousestore_test

import (
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/atrium-iot/atrium/internal/logging"
	"github.com/atrium-iot/atrium/internal/reading"
	"github.com/atrium-iot/atrium/internal/retention"
	"github.com/atrium-iot/atrium/services/analytics"
	"github.com/atrium-iot/atrium/services/analytics/clickhousestore"
	"github.com/atrium-iot/atrium/services/analytics/clickhousestore/chtest"
	"github.com/atrium-iot/atrium/services/analytics/storetest"
)

var _ storetest.Pruner = (*clickhousestore.Store)(nil)

// TestPruneReopen prunes with the store's retention options, then opens the
// store again on the same database: Open's check of the aggregates must leave
// those of the pruned readings as they are (and not bring back those pruned
// while their readings remain), and the readings older than the cutoffs must
// still be ignored.
func TestPruneReopen(t *testing.T) {
	now := time.Now().UTC().Truncate(24 * time.Hour) // Prune rounds its cutoffs down to a day
	ago := func(h int) time.Time { return now.Add(-time.Duration(h) * time.Hour) }
	rd := func(sensor, room, typ string, v float64, at time.Time) reading.Reading {
		return reading.Reading{SensorID: sensor, RoomID: room, Type: typ, Value: v, Timestamp: at}
	}
	in := []reading.Reading{
		rd("s1", "r1", "co2", 2000, ago(2400)), // in a partition (month) dropped whole
		rd("s1", "r1", "co2", 1000, ago(100)),
		rd("s1", "r1", "co2", 500, ago(48).Add(30*time.Second)),
		rd("s1", "r1", "co2", 600, ago(20)),
		rd("s1", "r1", "co2", 700, ago(1)),
		rd("s2", "r2", "temperature", 21, ago(30)),
	}
	bucket := func(h int, v float64) analytics.Bucket {
		return analytics.Bucket{Start: ago(h), Count: 1, Mean: v, Min: v, Max: v}
	}
	cases := []struct {
		name                 string
		retention, rollups   time.Duration
		wantNR, wantNU       int64
		co2                  []analytics.Bucket // r1's co2 per hour once pruned
		count                int64              // CountReadings once pruned
		rebuildAllowedAtOpen bool
	}{
		{
			name: "aggregates outlive readings", retention: 24 * time.Hour, rollups: 72 * time.Hour,
			wantNR: 4, wantNU: 4,
			co2:   []analytics.Bucket{bucket(48, 500), bucket(20, 600), bucket(1, 700)},
			count: 4,
		},
		{
			// Readings are left whose aggregates were pruned: Open finds the
			// partition short of aggregates, and must not derive them again.
			name: "aggregates pruned before readings", retention: 72 * time.Hour, rollups: 24 * time.Hour,
			wantNR: 2, wantNU: 8,
			co2:                  []analytics.Bucket{bucket(20, 600), bucket(1, 700)},
			count:                2,
			rebuildAllowedAtOpen: true,
		},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ctx := t.Context()
			u, _, _ := testDB(t, fmt.Sprintf("prune_%d", i))
			// Stored with no retention first, as by a store that had none.
			plain, err := clickhousestore.Open(ctx, u, clickhousestore.Options{})
			if err != nil {
				t.Fatal(err)
			}
			if n, err := plain.AddReadings(ctx, in); err != nil || n != len(in) {
				t.Fatalf("AddReadings = %d, %v; want %d", n, err, len(in))
			}
			if err := plain.Close(); err != nil {
				t.Fatal(err)
			}
			var logs logging.Buffer
			opts := clickhousestore.Options{
				Logger: slog.New(slog.NewTextHandler(&logs, nil)),
				Tiered: retention.Tiered{Policy: retention.Policy{Retention: tc.retention, PruneEvery: -1, Now: func() time.Time { return now }}, RollupRetention: tc.rollups},
			}
			s, err := clickhousestore.Open(ctx, u, opts)
			if err != nil {
				t.Fatal(err)
			}
			defer func() { _ = s.Close() }()
			nr, nu, err := s.Prune(ctx)
			if err != nil || nr != tc.wantNR || nu != tc.wantNU {
				t.Fatalf("Prune = %d, %d, %v; want %d, %d", nr, nu, err, tc.wantNR, tc.wantNU)
			}
			check := func(t *testing.T, what string, s *clickhousestore.Store) {
				t.Helper()
				got, err := s.Series(ctx, analytics.SeriesQuery{RoomID: "r1", Type: "co2", From: ago(200), To: now.Add(time.Hour), Bucket: time.Hour})
				if err != nil {
					t.Fatal(err)
				}
				if len(got) != len(tc.co2) {
					t.Fatalf("%s: co2 of r1 = %+v, want %+v", what, got, tc.co2)
				}
				for i := range got {
					if !got[i].Start.Equal(tc.co2[i].Start) || got[i].Count != tc.co2[i].Count || got[i].Mean != tc.co2[i].Mean {
						t.Errorf("%s: co2 of r1 bucket %d = %+v, want %+v", what, i, got[i], tc.co2[i])
					}
				}
				if n, err := s.CountReadings(ctx, ago(200), now.Add(time.Hour)); err != nil || n != tc.count {
					t.Errorf("%s: CountReadings = %d, %v; want %d", what, n, err, tc.count)
				}
				latest, err := s.Latest(ctx, time.Time{})
				if err != nil || len(latest) != 2 || latest[0].Value != 700 || latest[1].Value != 21 {
					t.Errorf("%s: Latest = %+v, %v; want co2 700 in r1 and temperature 21 in r2", what, latest, err)
				}
			}
			check(t, "after Prune", s)
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}

			for _, o := range []clickhousestore.Options{opts, {Logger: opts.Logger}} {
				s, err = clickhousestore.Open(ctx, u, o)
				if err != nil {
					t.Fatal(err)
				}
				check(t, "reopened", s)
				if n, err := s.AddReadings(ctx, in); err != nil || n != 0 {
					t.Errorf("AddReadings of the same readings after reopening = %d, %v; want 0", n, err)
				}
				check(t, "reopened, readings added again", s)
				if err := s.Close(); err != nil {
					t.Fatal(err)
				}
			}
			if n := strings.Count(logs.String(), rebuilt); n > 1 || n == 1 && !tc.rebuildAllowedAtOpen {
				t.Errorf("aggregates rebuilt %d times at reopening:\n%s", n, logs.String())
			}
		})
	}
}

// TestPrunerAtOpen opens a store with a retention on a database holding
// expired data: the pruner deletes it right away, and Close stops it.
func TestPrunerAtOpen(t *testing.T) {
	ctx := t.Context()
	u, _, _ := testDB(t, "pruner")
	now := time.Now().UTC().Truncate(24 * time.Hour)
	plain, err := clickhousestore.Open(ctx, u, clickhousestore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	in := []reading.Reading{
		{SensorID: "s1", RoomID: "r1", Type: "co2", Value: 900, Timestamp: now.Add(-100 * time.Hour)},
		{SensorID: "s1", RoomID: "r1", Type: "co2", Value: 600, Timestamp: now.Add(-time.Hour)},
	}
	if n, err := plain.AddReadings(ctx, in); err != nil || n != 2 {
		t.Fatalf("AddReadings = %d, %v; want 2", n, err)
	}
	if err := plain.Close(); err != nil {
		t.Fatal(err)
	}
	s, err := clickhousestore.Open(ctx, u, clickhousestore.Options{
		Tiered: retention.Tiered{Policy: retention.Policy{Retention: 24 * time.Hour, Now: func() time.Time { return now }}, RollupRetention: 72 * time.Hour},
	})
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		n, err := s.CountReadings(ctx, now.Add(-200*time.Hour), now)
		if err != nil {
			t.Fatal(err)
		}
		if n == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("CountReadings = %d 20 s after Open, want 1 (the old reading's aggregates pruned)", n)
		}
		time.Sleep(50 * time.Millisecond)
	}
	start := time.Now()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("Close took %s", d)
	}
}

// BenchmarkPrune prunes the older half of a store of 200,000 readings (100
// sensors, one reading a minute each over 33 hours; no rollup retention) and
// reports the readings deleted per second, mutation included.
func BenchmarkPrune(b *testing.B) {
	const sensors, perSensor = 100, 2000
	now := time.Now().UTC().Truncate(time.Hour)
	start := now.Add(-perSensor * time.Minute)
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		u := chtest.DatabaseURL(b, fmt.Sprintf("bench_prune_%d", i))
		s, err := clickhousestore.Open(b.Context(), u, clickhousestore.Options{})
		if err != nil {
			b.Fatal(err)
		}
		rs := make([]reading.Reading, 0, sensors*perSensor)
		for m := range perSensor {
			for n := range sensors {
				rs = append(rs, reading.Reading{SensorID: fmt.Sprintf("s%03d", n), RoomID: fmt.Sprintf("r%02d", n%20), Type: "co2",
					Value: float64(400 + n + m%50), Timestamp: start.Add(time.Duration(m) * time.Minute)})
			}
		}
		if n, err := s.AddReadings(b.Context(), rs); err != nil || n != len(rs) {
			b.Fatalf("AddReadings = %d, %v", n, err)
		}
		b.StartTimer()
		t0 := time.Now()
		nr, _, err := s.PruneBefore(b.Context(), start.Add(perSensor/2*time.Minute), time.Time{})
		took := time.Since(t0)
		b.StopTimer()
		if err != nil || nr != sensors*perSensor/2 {
			b.Fatalf("PruneBefore = %d, %v; want %d", nr, err, sensors*perSensor/2)
		}
		b.ReportMetric(float64(nr)/took.Seconds(), "deleted/s")
		_ = s.DropDatabase(b.Context())
		_ = s.Close()
	}
}
