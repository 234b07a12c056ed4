package sqlitestore

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/atrium-iot/atrium/internal/reading"
	"github.com/atrium-iot/atrium/internal/retention"
	"github.com/atrium-iot/atrium/internal/sqlitex"
	"github.com/atrium-iot/atrium/internal/sqlitex/sqlitetest"
	"github.com/atrium-iot/atrium/internal/testwait"
	"github.com/atrium-iot/atrium/services/sensor"
)

// TestPruneChunks prunes more readings and more sensors than one chunk takes,
// while batches keep coming, and checks the cutoff to the millisecond.
func TestPruneChunks(t *testing.T) {
	now := base.Add(30 * 24 * time.Hour)
	cutoff := now.Add(-24 * time.Hour)
	s := openTest(t, filepath.Join(t.TempDir(), "prune.db"), Options{
		Settings: sqlitex.Settings{Synchronous: "NORMAL"},
		Policy:   retention.Policy{Retention: 24 * time.Hour, PruneEvery: -1, Now: func() time.Time { return now }},
	})
	ctx := t.Context()

	// 300 sensors (more than pruneSensors) with 10 old readings each, and one
	// sensor with 2 500 (more than pruneChunk): 5 500 to delete in all.
	var old []reading.Reading
	for i := range 300 {
		for j := range 10 {
			old = append(old, reading1(fmt.Sprintf("s%03d", i), cutoff.Add(-time.Duration(j+1)*time.Minute), float64(j)))
		}
	}
	for j := range 2500 {
		old = append(old, reading1("busy", cutoff.Add(-time.Duration(j+1)*time.Second), float64(j)))
	}
	kept := []reading.Reading{
		reading1("busy", cutoff, 1),                        // at the cutoff: kept
		reading1("busy", now, 2),                           // new
		reading1("s000", cutoff.Add(time.Hour), 3),         // new
		reading1("edge", cutoff.Add(-time.Millisecond), 4), // one millisecond too old
	}
	want := int64(len(old) + 1)
	for i := 0; i < len(old); i += 1000 {
		if _, err := s.Ingest(ctx, sensor.Batch{ID: fmt.Sprintf("old%d", i), Readings: old[i:min(i+1000, len(old))], ReceivedAt: now}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.Ingest(ctx, sensor.Batch{ID: "kept", Readings: kept, ReceivedAt: now}); err != nil {
		t.Fatal(err)
	}

	// Batches go on while the prune runs: each waits for at most a chunk.
	var wg sync.WaitGroup
	stop := make(chan struct{})
	var ingestErr error
	wg.Go(func() {
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			r := reading1("live", now.Add(time.Duration(i)*time.Millisecond), float64(i))
			if _, err := s.Ingest(ctx, sensor.Batch{ID: fmt.Sprintf("live%d", i), Readings: []reading.Reading{r}, ReceivedAt: now}); err != nil {
				ingestErr = err
				return
			}
		}
	})
	n, m, err := s.Prune(ctx)
	close(stop)
	wg.Wait()
	if err != nil || ingestErr != nil {
		t.Fatalf("Prune: %v; Ingest during Prune: %v", err, ingestErr)
	}
	if n != want || m != 0 {
		t.Errorf("Prune deleted %d readings and %d rollups, want %d and 0", n, m, want)
	}
	var left int
	if err := s.db.Readers.QueryRowContext(ctx, "SELECT count(*) FROM readings WHERE ts_ms < ?", cutoff.UnixMilli()).Scan(&left); err != nil {
		t.Fatal(err)
	}
	if left != 0 {
		t.Errorf("%d readings older than the cutoff left", left)
	}
	for _, r := range kept[:3] {
		rs, _, err := s.Readings(ctx, sensor.ReadingQuery{SensorID: r.SensorID, From: r.Timestamp, To: r.Timestamp.Add(time.Millisecond)})
		if err != nil || len(rs) != 1 || rs[0].Value != r.Value {
			t.Errorf("reading of %s at %s after Prune: %+v, %v; want it kept", r.SensorID, reading.FormatTime(r.Timestamp), rs, err)
		}
	}
	// The registry keeps every sensor, also those with no reading left.
	x, err := s.Sensor(ctx, "edge")
	if err != nil || x.LastValues["co2"].Value != 4 {
		t.Errorf("Sensor(edge) after Prune = %+v, %v; want its last value kept", x, err)
	}
}

// TestPruneAtOpen opens a store with a retention over old data: the pruner
// deletes it right away, without a call to Prune.
func TestPruneAtOpen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "open.db")
	now := base.Add(48 * time.Hour)
	s, err := Open(t.Context(), path, Options{Policy: retention.Policy{Now: func() time.Time { return now }}})
	if err != nil {
		t.Fatal(err)
	}
	rs := []reading.Reading{reading1("s1", base, 1), reading1("s1", now, 2)}
	if _, err := s.Ingest(t.Context(), sensor.Batch{ID: "b1", Readings: rs, ReceivedAt: now}); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openTest(t, path, Options{Policy: retention.Policy{Retention: 24 * time.Hour, Now: func() time.Time { return now }}})
	testwait.Within(t, 10*time.Second, "the prune at open: only the new reading", func() bool {
		got, _, err := s.Readings(t.Context(), sensor.ReadingQuery{SensorID: "s1"})
		if err != nil {
			t.Fatal(err)
		}
		return len(got) == 1 && got[0].Value == 2
	})
}

// TestPruneClosed: a closed store does not prune.
func TestPruneClosed(t *testing.T) {
	s, err := Open(t.Context(), filepath.Join(t.TempDir(), "closed.db"), Options{Policy: retention.Policy{Retention: time.Hour}})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.Prune(context.Background()); err == nil || !strings.Contains(err.Error(), "closed") {
		t.Errorf("Prune on a closed store: err = %v, want store is closed", err)
	}
}

// TestPrunePlan checks that a chunk's statements are searches of the primary key.
func TestPrunePlan(t *testing.T) {
	s := openTest(t, filepath.Join(t.TempDir(), "plan.db"), Options{})
	want, avoid := []string{"SEARCH readings USING PRIMARY KEY (sensor_id"}, []string{"SCAN readings", "TEMP B-TREE"}
	sqlitetest.RunPlans(t, s.db.Readers,
		sqlitetest.Plan{Name: "next sensor", Query: nextSensorWithReadings, Args: []any{"s1"}, Want: want, Avoid: avoid},
		sqlitetest.Plan{Name: "delete chunk", Query: deleteOldReadings, Args: []any{"s1", 1, 2000}, Want: want, Avoid: avoid},
	)
}
