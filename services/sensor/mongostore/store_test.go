package mongostore

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/atrium-iot/atrium/internal/mongox"
	"github.com/atrium-iot/atrium/internal/mongox/mongotest"
	"github.com/atrium-iot/atrium/internal/reading"
	"github.com/atrium-iot/atrium/internal/retention"
	"github.com/atrium-iot/atrium/services/sensor"
	"github.com/atrium-iot/atrium/services/sensor/storetest"
)

// openTest opens a store on its own database of the test server.
func openTest(t *testing.T, db string, opts Options) *Store {
	t.Helper()
	return mongotest.Open(t, db, func(ctx context.Context, url, db string) (*Store, error) {
		opts.Database = db
		return Open(ctx, url, opts)
	})
}

func TestContract(t *testing.T) {
	storetest.Run(t, mongotest.Opener(t, "sensor_", func(ctx context.Context, url, db string) (sensor.Store, error) {
		return Open(ctx, url, Options{Database: db})
	}))
}

var base = time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)

func co2(sensorID string, ts time.Time, v float64) reading.Reading {
	return reading.Reading{SensorID: sensorID, RoomID: "r1", Type: "co2", Value: v, Unit: "ppm", Timestamp: ts}
}

// TestResumeAfterCrash leaves a batch as an Ingest that died after storing some
// of its readings would, and checks that a retry completes it exactly once.
func TestResumeAfterCrash(t *testing.T) {
	c := mongotest.Client(t)
	db := mongotest.Database(t, c, "sensor_resume")
	now := base.Add(time.Hour)
	clock := func() time.Time { return now }
	s := openTest(t, db, Options{Lease: time.Minute, Tiered: retention.Tiered{Policy: retention.Policy{Now: clock}}})
	ctx := t.Context()

	rs := []reading.Reading{co2("s1", base, 400), co2("s1", base.Add(time.Second), 500), co2("s1", base.Add(2*time.Second), 600)}
	// The dead Ingest: its claim, and the first two readings stored under it.
	if _, err := s.batches.InsertOne(ctx, batchDoc{ID: "b1", ClaimFields: mongox.ClaimFields{State: mongox.StateClaimed, Owner: "dead", Lease: now.Add(time.Minute)}}); err != nil {
		t.Fatal(err)
	}
	for _, r := range rs[:2] {
		if _, err := s.readings.InsertOne(ctx, readingDoc{SensorID: r.SensorID, TS: r.Timestamp, Type: r.Type, RoomID: r.RoomID,
			Value: r.Value, Unit: r.Unit, Received: now, Batch: "b1"}); err != nil {
			t.Fatal(err)
		}
	}
	// And an unrelated batch that stored the third identity already.
	if _, err := s.readings.InsertOne(ctx, readingDoc{SensorID: "s1", TS: rs[2].Timestamp, Type: "co2", RoomID: "r1", Value: 1, Batch: "other"}); err != nil {
		t.Fatal(err)
	}

	t.Run("waits while the lease runs", func(t *testing.T) {
		wctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
		defer cancel()
		if _, err := s.Ingest(wctx, sensor.Batch{ID: "b1", Readings: rs, ReceivedAt: now}); err == nil {
			t.Fatal("Ingest of a batch claimed by a live lease returned before the lease ran out")
		}
	})

	now = now.Add(2 * time.Minute) // the lease has run out
	out, err := s.Ingest(ctx, sensor.Batch{ID: "b1", Readings: rs, ReceivedAt: now})
	if err != nil {
		t.Fatalf("Ingest (resume): %v", err)
	}
	want := sensor.Result{BatchID: "b1", Accepted: 2, Duplicates: 1, Rejected: []sensor.Rejection{}}
	if out.Replayed || out.Result.Accepted != want.Accepted || out.Result.Duplicates != want.Duplicates {
		t.Fatalf("resumed outcome = %+v, want %+v not replayed", out, want)
	}
	if out.Pending == nil || string(out.Pending.Body) != string(sensor.EventBody("b1", "", rs[:2])) {
		t.Fatalf("resumed event = %v, want the two readings of b1", out.Pending)
	}
	again, err := s.Ingest(ctx, sensor.Batch{ID: "b1", Readings: rs, ReceivedAt: now})
	if err != nil || !again.Replayed || again.Result.Accepted != 2 {
		t.Fatalf("replay after resume = %+v, %v", again, err)
	}
	ro, err := s.Rollups(ctx, "s1", "co2", time.Time{}, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	if len(ro) != 1 || ro[0].Count != 2 || ro[0].Sum != 900 || ro[0].Min != 400 || ro[0].Max != 500 {
		t.Fatalf("rollups after resume = %+v, want one bucket of 400 and 500", ro)
	}
}

func TestRollups(t *testing.T) {
	c := mongotest.Client(t)
	s := openTest(t, mongotest.Database(t, c, "sensor_rollups"), Options{})
	ctx := t.Context()
	var rs []reading.Reading
	for i := range 150 { // 2.5 hours at one reading a minute
		rs = append(rs, co2("s1", base.Add(time.Duration(i)*time.Minute), float64(400+i)))
	}
	// Overlapping batches from several goroutines: each reading counts once.
	var wg sync.WaitGroup
	errs := make(chan error, 6)
	for w := range 6 {
		wg.Go(func() {
			lo := w * 20
			_, err := s.Ingest(ctx, sensor.Batch{ID: fmt.Sprintf("w%d", w), Readings: rs[lo:min(lo+50, len(rs))], ReceivedAt: base})
			errs <- err
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.Ingest(ctx, sensor.Batch{ID: "rest", Readings: rs, ReceivedAt: base}); err != nil {
		t.Fatal(err)
	}
	got, err := s.Rollups(ctx, "s1", "co2", time.Time{}, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		hour     time.Time
		n        int64
		min, max float64
	}{
		{base, 60, 400, 459},
		{base.Add(time.Hour), 60, 460, 519},
		{base.Add(2 * time.Hour), 30, 520, 549},
	}
	if len(got) != len(tests) {
		t.Fatalf("%d buckets, want %d: %+v", len(got), len(tests), got)
	}
	for i, tc := range tests {
		t.Run(tc.hour.Format("15h"), func(t *testing.T) {
			g := got[i]
			wantMean := (tc.min + tc.max) / 2
			if !g.Hour.Equal(tc.hour) || g.Count != tc.n || g.Min != tc.min || g.Max != tc.max || g.Mean() != wantMean {
				t.Errorf("bucket = %+v (mean %v), want hour %s n %d min %v max %v mean %v", g, g.Mean(), tc.hour, tc.n, tc.min, tc.max, wantMean)
			}
		})
	}
	t.Run("range", func(t *testing.T) {
		got, err := s.Rollups(ctx, "s1", "co2", base.Add(time.Hour), base.Add(2*time.Hour))
		if err != nil || len(got) != 1 || !got[0].Hour.Equal(base.Add(time.Hour)) {
			t.Fatalf("Rollups in [1h, 2h) = %+v, %v", got, err)
		}
	})
}

// TestRollupsOfHugeValues: readings near the largest double, each in a batch
// of its own, overflow the sum of their hour: no $inc of a stored sum may
// overflow (FerretDB refuses it), and the bucket keeps exact bounds and an
// exact mean.
func TestRollupsOfHugeValues(t *testing.T) {
	c := mongotest.Client(t)
	s := openTest(t, mongotest.Database(t, c, "sensor_rollups_huge"), Options{})
	const huge = 1.7e308
	energy := func(ts time.Time, v float64) reading.Reading {
		return reading.Reading{SensorID: "s1", RoomID: "r1", Type: "energy", Value: v, Timestamp: ts}
	}
	readings := []reading.Reading{
		energy(base, huge), energy(base.Add(time.Minute), huge), energy(base.Add(time.Hour), huge), energy(base.Add(time.Hour+time.Minute), 1e308),
		energy(base.Add(2*time.Minute), -huge), energy(base.Add(3*time.Minute), -huge), energy(base.Add(4*time.Minute), -huge),
		energy(base.Add(5*time.Minute), 2), // a plain value in the same bucket
	}
	for i, r := range readings {
		if _, err := s.Ingest(t.Context(), sensor.Batch{ID: fmt.Sprintf("huge-%d", i), Readings: []reading.Reading{r}, ReceivedAt: base}); err != nil {
			t.Fatalf("batch %d (%g at %s): %v", i, r.Value, r.Timestamp.Format(time.TimeOnly), err)
		}
	}
	got, err := s.Rollups(t.Context(), "s1", "energy", time.Time{}, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0].Count != 6 || got[0].Min != -huge || got[0].Max != huge || got[1].Count != 2 || got[1].Min != 1e308 || got[1].Max != huge {
		t.Fatalf("rollups = %+v, want 6 readings in ±%g, then 2 in 1e308…%g", got, huge, huge)
	}
	if m, want := got[0].Mean(), (2-huge)/6; m != want {
		t.Errorf("mean of both signs = %v, want %v", m, want)
	}
	if m := got[1].Mean(); m != 1.35e308 {
		t.Errorf("mean of %g and 1e308 = %v, want 1.35e308", huge, m)
	}
}

func TestRetention(t *testing.T) {
	c := mongotest.Client(t)
	now := base.Add(48 * time.Hour)
	s := openTest(t, mongotest.Database(t, c, "sensor_retention"), Options{
		Tiered: retention.Tiered{Policy: retention.Policy{Retention: 24 * time.Hour, PruneEvery: -1, Now: func() time.Time { return now }}, RollupRetention: 36 * time.Hour},
	})
	if s.Server().TTL {
		t.Skip("the server expires documents with TTL indexes, on its own schedule")
	}
	ctx := t.Context()
	rs := []reading.Reading{
		co2("s1", base, 1),                   // 48 h old: reading and rollup expire
		co2("s1", base.Add(20*time.Hour), 2), // 28 h old: reading expires, rollup kept
		co2("s1", base.Add(30*time.Hour), 3), // 18 h old: kept
		co2("s1", base.Add(47*time.Hour), 4), // kept
	}
	if _, err := s.Ingest(ctx, sensor.Batch{ID: "b1", Readings: rs, ReceivedAt: now}); err != nil {
		t.Fatal(err)
	}
	// No pruner runs (PruneEvery < 0); prune now.
	nr, nu, err := s.Prune(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if nr != 2 || nu != 1 {
		t.Errorf("Prune deleted %d readings and %d rollups, want 2 and 1", nr, nu)
	}
	left, _, err := s.Readings(ctx, sensor.ReadingQuery{SensorID: "s1"})
	if err != nil || len(left) != 2 || left[0].Value != 3 {
		t.Errorf("readings after prune = %+v, %v; want the last two", left, err)
	}
	ro, err := s.Rollups(ctx, "s1", "co2", time.Time{}, time.Time{})
	if err != nil || len(ro) != 3 {
		t.Errorf("rollups after prune = %+v, %v; want 3 buckets", ro, err)
	}
}

func TestSchema(t *testing.T) {
	c := mongotest.Client(t)
	db := mongotest.Database(t, c, "sensor_schema")
	s := openTest(t, db, Options{Tiered: retention.Tiered{Policy: retention.Policy{Retention: time.Hour}}})
	ctx := t.Context()
	tests := []struct {
		coll string
		name string
	}{
		{"readings", "identity"},
		{"readings", "expiry"},
		{"rollups_1h", "sensor_type_hour"},
		{"sensors", "room"},
		{"sensors", "types"},
		{"sensors", "last"},
		{"outbox", "seq"},
	}
	for _, tc := range tests {
		t.Run(tc.coll+"/"+tc.name, func(t *testing.T) {
			if spec, _ := mongotest.Index(t, s.conn.DB.Collection(tc.coll), tc.name); spec == nil {
				t.Errorf("no index %s on %s", tc.name, tc.coll)
			}
		})
	}
	t.Run("reopen keeps the indexes", func(t *testing.T) {
		s2 := openTest(t, db, Options{Tiered: retention.Tiered{Policy: retention.Policy{Retention: time.Hour}}})
		if err := s2.Ping(ctx); err != nil {
			t.Fatal(err)
		}
	})
}

// TestRetentionContract runs the retention contract on this adapter.
func TestRetentionContract(t *testing.T) {
	c := mongotest.Client(t)
	storetest.RunRetention(t, func(t *testing.T, name string, r retention.Tiered) storetest.RetentionStore {
		r.PruneEvery = -1 // no pruner: only the suite prunes
		s := openTest(t, mongotest.Database(t, c, "sensor_"+name), Options{Tiered: r})
		return storetest.RetentionStore{Store: s, RollupHours: func(ctx context.Context, sensorID, typ string) ([]time.Time, error) {
			ro, err := s.Rollups(ctx, sensorID, typ, time.Time{}, time.Time{})
			hours := make([]time.Time, len(ro))
			for i, x := range ro {
				hours[i] = x.Hour
			}
			return hours, err
		}}
	})
}
