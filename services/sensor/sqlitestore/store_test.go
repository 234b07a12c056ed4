package sqlitestore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/atrium-iot/atrium/internal/reading"
	"github.com/atrium-iot/atrium/internal/retention"
	"github.com/atrium-iot/atrium/internal/servicetest"
	"github.com/atrium-iot/atrium/internal/sqlitex"
	"github.com/atrium-iot/atrium/internal/sqlitex/sqlitetest"
	"github.com/atrium-iot/atrium/services/sensor"
	"github.com/atrium-iot/atrium/services/sensor/storetest"
)

func TestContract(t *testing.T) {
	sqlitetest.Modes(t, func(t *testing.T, settings sqlitex.Settings) {
		storetest.Run(t, sqlitetest.Opener(t, func(ctx context.Context, path string) (sensor.Store, error) {
			return Open(ctx, path, Options{Settings: settings})
		}))
	})
}

func TestRetentionContract(t *testing.T) {
	path := sqlitetest.Paths(t)
	storetest.RunRetention(t, func(t *testing.T, name string, r retention.Tiered) storetest.RetentionStore {
		r.PruneEvery = -1
		return storetest.RetentionStore{Store: sqlitetest.Open(t, path(name), func(ctx context.Context, path string) (*Store, error) {
			return Open(ctx, path, Options{Policy: r.Policy}) // no rollups: r.RollupRetention does not apply
		})}
	})
}

// openTest opens a store at path with opts and closes it when t ends.
func openTest(t *testing.T, path string, opts Options) *Store {
	t.Helper()
	s, err := Open(t.Context(), path, opts)
	return servicetest.Store(t, s, err)
}

func reading1(sensorID string, ts time.Time, value float64) reading.Reading {
	return reading.Reading{SensorID: sensorID, RoomID: "r1", Type: "co2", Value: value, Unit: "ppm", Timestamp: ts}
}

var base = time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)

func TestOpen(t *testing.T) {
	sqlitetest.RunOpen(t, 4, func(ctx context.Context, path, sync string) (io.Closer, error) {
		return Open(ctx, path, Options{Settings: sqlitex.Settings{Synchronous: sync}})
	})
}

// TestQueryPlan checks that a page of readings is one range scan of the primary
// key, in either order, with no sort step, and so are the writer's two lookups
// of readings for duplicates.
func TestQueryPlan(t *testing.T) {
	s := openTest(t, filepath.Join(t.TempDir(), "plan.db"), Options{})
	plan := func(name, query string) sqlitetest.Plan {
		return sqlitetest.Plan{Name: name, Query: query, Steps: 1, Want: []string{"SEARCH readings USING PRIMARY KEY (sensor_id=?"}, Avoid: []string{"TEMP B-TREE"}}
	}
	sqlitetest.RunPlans(t, s.db.Readers,
		plan("asc", "SELECT ts_ms, type, room_id, site, value, unit FROM readings WHERE sensor_id = ? AND ts_ms >= ? AND ts_ms < ? ORDER BY ts_ms, type LIMIT ?"),
		plan("desc", "SELECT ts_ms, type, room_id, site, value, unit FROM readings WHERE sensor_id = ? ORDER BY ts_ms DESC, type DESC LIMIT ?"),
		plan("asc cursor", "SELECT ts_ms, type, room_id, site, value, unit FROM readings WHERE sensor_id = ? AND ts_ms >= ? AND (ts_ms > ? OR type > ?) ORDER BY ts_ms, type LIMIT ?"),
		plan("desc cursor type", "SELECT ts_ms, type, room_id, site, value, unit FROM readings WHERE sensor_id = ? AND type = ? AND ts_ms <= ? AND (ts_ms < ? OR type < ?) ORDER BY ts_ms DESC, type DESC LIMIT ?"),
		plan("newest merged", newestMerged),
		plan("duplicate lookup", getReading),
	)
}

// TestBusyIsUnavailable holds the database's write lock from another connection:
// Ingest then fails with ErrUnavailable, and works once the lock is released.
func TestBusyIsUnavailable(t *testing.T) {
	path := filepath.Join(t.TempDir(), "busy.db")
	s := openTest(t, path, Options{Settings: sqlitex.Settings{BusyTimeout: 100 * time.Millisecond}})
	other, err := sql.Open("sqlite", path+"?_pragma=busy_timeout(5000)")
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	conn, err := other.Conn(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := conn.ExecContext(t.Context(), "BEGIN IMMEDIATE"); err != nil {
		t.Fatal(err)
	}
	b := sensor.Batch{ID: "b1", ReceivedAt: base, Readings: []reading.Reading{reading1("s1", base, 400)}}
	if _, err := s.Ingest(t.Context(), b); !errors.Is(err, sensor.ErrUnavailable) {
		t.Fatalf("Ingest while locked: err = %v, want ErrUnavailable", err)
	}
	if _, err := conn.ExecContext(t.Context(), "ROLLBACK"); err != nil {
		t.Fatal(err)
	}
	ingestNew(t, s, "Ingest after the lock is released", b, 1)
}

// ingestNew ingests b, which the store has not seen, and checks that it stored
// want of its readings; what names the call in failures.
func ingestNew(t *testing.T, s *Store, what string, b sensor.Batch, want int) {
	t.Helper()
	out, err := s.Ingest(t.Context(), b)
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	if out.Replayed || out.Result.Accepted != want {
		t.Errorf("%s: %+v, want %d accepted", what, out, want)
	}
}

// TestFailingBatchIsolated makes the engine reject one batch (a trigger aborts
// the insert of its id) while others are committed in the same groups: only the
// failing batch is lost, entirely, and its id stays free for a retry.
func TestFailingBatchIsolated(t *testing.T) {
	path := filepath.Join(t.TempDir(), "poison.db")
	s := openTest(t, path, Options{})
	other, err := sql.Open("sqlite", path+"?_pragma=busy_timeout(5000)")
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	if _, err := other.ExecContext(t.Context(), `CREATE TRIGGER poison BEFORE INSERT ON batches
		WHEN NEW.id = 'b5' BEGIN SELECT RAISE(ABORT, 'poisoned batch'); END`); err != nil {
		t.Fatal(err)
	}

	const batches = 16
	errs := make([]error, batches)
	var wg sync.WaitGroup
	for i := range batches {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rs := []reading.Reading{reading1(fmt.Sprintf("s%d", i), base, float64(i))}
			if i == 5 {
				rs = append(rs, reading1("poison", base, 0))
			}
			_, errs[i] = s.Ingest(t.Context(), sensor.Batch{ID: fmt.Sprintf("b%d", i), ReceivedAt: base, Readings: rs})
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if (err != nil) != (i == 5) {
			t.Errorf("batch %d: err = %v", i, err)
		}
	}
	if errs[5] != nil && errors.Is(errs[5], sensor.ErrUnavailable) {
		t.Errorf("a rejected statement reported as unavailable: %v", errs[5])
	}
	for i := range batches {
		rs, _, err := s.Readings(t.Context(), sensor.ReadingQuery{SensorID: fmt.Sprintf("s%d", i), Limit: 10})
		if err != nil {
			t.Fatal(err)
		}
		if want := map[bool]int{true: 0, false: 1}[i == 5]; len(rs) != want {
			t.Errorf("sensor s%d: %d readings stored, want %d", i, len(rs), want)
		}
	}
	if _, err := s.Sensor(t.Context(), "s5"); !errors.Is(err, sensor.ErrNotFound) {
		t.Errorf("registry of the failed batch: err = %v, want ErrNotFound", err)
	}

	if _, err := other.ExecContext(t.Context(), "DROP TRIGGER poison"); err != nil {
		t.Fatal(err)
	}
	ingestNew(t, s, "retry of the failed batch", sensor.Batch{ID: "b5", ReceivedAt: base,
		Readings: []reading.Reading{reading1("s5", base, 5), reading1("poison", base, 0)}}, 2)
}

// TestCloseDrains closes the store while callers keep sending batches: every
// batch acknowledged before or during Close survives reopening, and the others
// fail with ErrUnavailable.
func TestCloseDrains(t *testing.T) {
	path := filepath.Join(t.TempDir(), "drain.db")
	s, err := Open(t.Context(), path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	const callers = 4
	var (
		wg        sync.WaitGroup
		mu        sync.Mutex
		committed int
		errs      []error
		seq       atomic.Int64
	)
	for range callers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := seq.Add(1)
				_, err := s.Ingest(context.Background(), sensor.Batch{ID: fmt.Sprintf("b%d", i), ReceivedAt: base,
					Readings: []reading.Reading{reading1("s1", base.Add(time.Duration(i)*time.Millisecond), float64(i))}})
				mu.Lock()
				if err != nil {
					errs = append(errs, err)
					mu.Unlock()
					return
				}
				committed++
				mu.Unlock()
			}
		}()
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		mu.Lock()
		n := committed
		mu.Unlock()
		if n >= 20 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("only %d batches committed in 30 s", n)
		}
		time.Sleep(time.Millisecond)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	wg.Wait()
	for _, err := range errs {
		if !errors.Is(err, sensor.ErrUnavailable) {
			t.Errorf("Ingest during Close: err = %v, want ErrUnavailable", err)
		}
	}
	s = openTest(t, path, Options{})
	rs, _, err := s.Readings(t.Context(), sensor.ReadingQuery{SensorID: "s1", Limit: 1000})
	if err != nil {
		t.Fatal(err)
	}
	if len(rs) != committed {
		t.Errorf("%d readings after reopening, want the %d acknowledged", len(rs), committed)
	}
}

func TestIngestCancelled(t *testing.T) {
	s := openTest(t, filepath.Join(t.TempDir(), "cancel.db"), Options{})
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	_, err := s.Ingest(ctx, sensor.Batch{ID: "b1", ReceivedAt: base, Readings: []reading.Reading{reading1("s1", base, 1)}})
	if !errors.Is(err, context.Canceled) {
		t.Errorf("Ingest with a cancelled context: err = %v, want context.Canceled", err)
	}
}

// TestWALRewound keeps writing and checks that the WAL file is truncated while
// writes go on: a passive checkpoint alone never catches up with a busy writer.
func TestWALRewound(t *testing.T) {
	path := filepath.Join(t.TempDir(), "wal.db")
	s := openTest(t, path, Options{Settings: sqlitex.Settings{Synchronous: "NORMAL"}, walRestartFrames: 64})
	deadline := time.Now().Add(45 * time.Second)
	var largest int64
	// The checkpointer asks for a rewind at most every checkpointInterval; a
	// few hundred batches take several intervals even on a fast machine, and
	// without the rewind the WAL is first reused only after thousands.
	for i := 0; ; i++ {
		if i == 500 || time.Now().After(deadline) {
			t.Fatalf("the WAL was never truncated in %d batches (largest %d bytes)", i, largest)
		}
		rs := make([]reading.Reading, 100)
		for j := range rs {
			rs[j] = reading1(fmt.Sprintf("s%d", j), base.Add(time.Duration(i)*time.Second), float64(j))
		}
		if _, err := s.Ingest(t.Context(), sensor.Batch{ID: fmt.Sprintf("b%d", i), ReceivedAt: base, Readings: rs}); err != nil {
			t.Fatal(err)
		}
		fi, err := os.Stat(path + "-wal")
		if err != nil {
			t.Fatal(err)
		}
		if fi.Size() < largest && largest > 64*4096 {
			return
		}
		largest = max(largest, fi.Size())
	}
}
