package sqlitestore

import (
	"database/sql"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/atrium-iot/atrium/internal/reading"
	"github.com/atrium-iot/atrium/internal/testwait"
	"github.com/atrium-iot/atrium/services/sensor"
)

// TestGroupRegistryMerged holds the database lock from another connection so
// that several batches queue up and are committed in one group, then checks
// the registry is what batch-by-batch upserts would have left: a later batch
// of the group sees the room an earlier one registered, the newest value of
// each type wins whatever the batch order, and first/last seen span the group.
func TestGroupRegistryMerged(t *testing.T) {
	path := filepath.Join(t.TempDir(), "group.db")
	s := openTest(t, path, Options{})
	co2 := func(room string, ts time.Time, v float64) reading.Reading {
		return reading.Reading{SensorID: "s1", RoomID: room, Type: "co2", Value: v, Unit: "ppm", Timestamp: ts}
	}
	ingestInOneGroup(t, s, path, []sensor.Batch{
		{ID: "b0", ReceivedAt: base.Add(time.Second), Readings: []reading.Reading{co2("room-a", base.Add(time.Minute), 500)}},
		{ID: "b1", ReceivedAt: base, Readings: []reading.Reading{co2("", base, 400)}},
		{ID: "b2", ReceivedAt: base.Add(2 * time.Second), Readings: []reading.Reading{co2("", base.Add(30*time.Second), 450)}},
	})

	rs, _, err := s.Readings(t.Context(), sensor.ReadingQuery{SensorID: "s1", Limit: 10})
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range rs {
		if r.RoomID != "room-a" {
			t.Errorf("reading at %s stored in room %q, want room-a", r.Timestamp, r.RoomID)
		}
	}
	sn, err := s.Sensor(t.Context(), "s1")
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name      string
		got, want any
	}{
		{"room", sn.RoomID, "room-a"},
		{"first seen", sn.FirstSeen.UTC(), base},
		{"last seen", sn.LastSeen.UTC(), base.Add(2 * time.Second)},
		{"last co2", sn.LastValues["co2"].Value, 500.0},
		{"readings", len(rs), 3},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if tc.got != tc.want {
				t.Errorf("got %v, want %v", tc.got, tc.want)
			}
		})
	}
}

// holdLock takes the write lock of the database at path on a connection of its
// own, until release is called.
func holdLock(t *testing.T, path string) (release func()) {
	t.Helper()
	other, err := sql.Open("sqlite", path+"?_pragma=busy_timeout(5000)")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { other.Close() })
	conn, err := other.Conn(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	if _, err := conn.ExecContext(t.Context(), "BEGIN IMMEDIATE"); err != nil {
		t.Fatal(err)
	}
	return func() {
		t.Helper()
		if _, err := conn.ExecContext(t.Context(), "ROLLBACK"); err != nil {
			t.Fatal(err)
		}
	}
}

// begin gives req to the writer, and returns once the writer has begun its
// group's transaction; the answer comes on the channel.
func begin(t *testing.T, s *Store, req *writeReq) <-chan error {
	t.Helper()
	begun := s.begun.Load()
	answer := make(chan error, 1)
	go func() {
		_, err := s.write(t.Context(), req, false)
		answer <- err
	}()
	testwait.Within(t, 10*time.Second, "the group to begin", func() bool { return s.begun.Load() > begun })
	return answer
}

// waitQueued waits until n requests wait for the writer.
func waitQueued(t *testing.T, s *Store, n int) {
	t.Helper()
	testwait.WithinState(t, 10*time.Second, fmt.Sprintf("%d requests queued", n), func() (bool, string) {
		return s.w.gc.Queued() == n, fmt.Sprintf("%d queued", s.w.gc.Queued())
	})
}

// ingestInOneGroup ingests batches concurrently but in order, in one group
// commit: another connection holds the database lock while they queue up.
func ingestInOneGroup(t *testing.T, s *Store, path string, batches []sensor.Batch) []sensor.Outcome {
	t.Helper()
	release := holdLock(t, path)
	commits := s.commits.Load()
	// A status mark goes first: once the writer has taken it, it is blocked on
	// the lock, and the batches queue up behind it, in order. (Not an
	// acknowledgement: a group begun by one takes no batch.)
	first := begin(t, s, &writeReq{mark: &sensor.StatusMark{SensorID: "blocker", Status: sensor.StatusOnline, At: base}})
	outs := make([]sensor.Outcome, len(batches))
	errs := make(chan error, len(batches))
	for i, b := range batches {
		go func() {
			var err error
			outs[i], err = s.Ingest(t.Context(), b)
			errs <- err
		}()
		waitQueued(t, s, i+1)
	}
	release()
	if err := <-first; err != nil {
		t.Fatal(err)
	}
	for range batches {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	if got := s.commits.Load() - commits; got != 1 {
		t.Fatalf("%d commits, want the batches in one group", got)
	}
	return outs
}

// TestGroupDuplicates: a batch of a group that repeats stored identities has
// the group applied again with savepoints; every answer is right and nothing
// is stored twice or lost.
func TestGroupDuplicates(t *testing.T) {
	path := filepath.Join(t.TempDir(), "dup.db")
	s := openTest(t, path, Options{})
	r := func(id string, sec int) reading.Reading {
		return reading.Reading{SensorID: id, RoomID: "r", Type: "co2", Value: float64(sec), Unit: "ppm", Timestamp: base.Add(time.Duration(sec) * time.Second)}
	}
	outs := ingestInOneGroup(t, s, path, []sensor.Batch{
		{ID: "b0", ReceivedAt: base, Readings: []reading.Reading{r("a", 1), r("a", 2)}},
		{ID: "b1", ReceivedAt: base, Readings: []reading.Reading{r("a", 2), r("b", 1), r("b", 1)}},
		{ID: "b2", ReceivedAt: base, Readings: []reading.Reading{r("c", 1)}},
	})
	for i, want := range []struct{ accepted, duplicates int }{{2, 0}, {1, 2}, {1, 0}} {
		if got := outs[i].Result; got.Accepted != want.accepted || got.Duplicates != want.duplicates {
			t.Errorf("batch %d: %+v, want %d accepted and %d duplicates", i, got, want.accepted, want.duplicates)
		}
	}
	for id, want := range map[string]int{"a": 2, "b": 1, "c": 1} {
		rs, _, err := s.Readings(t.Context(), sensor.ReadingQuery{SensorID: id, Limit: 10})
		if err != nil {
			t.Fatal(err)
		}
		if len(rs) != want {
			t.Errorf("sensor %s: %d readings stored, want %d", id, len(rs), want)
		}
	}
}

// TestAckGroupTakesNoBatch: a group begun by an outbox acknowledgement, which
// commits without an fsync, leaves a batch that arrives while it is open to the
// next group, which is durable; both are answered and committed.
func TestAckGroupTakesNoBatch(t *testing.T) {
	path := filepath.Join(t.TempDir(), "ack.db")
	s := openTest(t, path, Options{mergeIdle: -1})
	batch := func(id string, sec int) sensor.Batch {
		return sensor.Batch{ID: id, ReceivedAt: base, Readings: []reading.Reading{reading1("s1", base.Add(time.Duration(sec)*time.Second), 400)}}
	}
	if _, err := s.Ingest(t.Context(), batch("b0", 0)); err != nil {
		t.Fatal(err)
	}
	release := holdLock(t, path)
	commits := s.commits.Load()
	// The writer begins the ack's transaction, blocked on the lock, before the
	// batch comes.
	ack := begin(t, s, &writeReq{ack: "b0"})
	done := make(chan error, 1)
	go func() {
		_, err := s.Ingest(t.Context(), batch("b1", 1))
		done <- err
	}()
	waitQueued(t, s, 1)
	release()
	if err := <-ack; err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if got := s.commits.Load() - commits; got != 2 {
		t.Errorf("%d commits, want the ack's and the batch's", got)
	}
	evs, err := s.PendingEvents(t.Context(), 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(evs) != 1 || evs[0].BatchID != "b1" {
		t.Errorf("pending events %+v, want b1's alone", evs)
	}
	rs, _, err := s.Readings(t.Context(), sensor.ReadingQuery{SensorID: "s1", Limit: 10})
	if err != nil {
		t.Fatal(err)
	}
	if len(rs) != 2 {
		t.Errorf("%d readings stored, want 2", len(rs))
	}
}
