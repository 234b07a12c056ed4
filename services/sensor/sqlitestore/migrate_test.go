package sqlitestore

import (
	"io/fs"
	"path/filepath"
	"testing"
	"testing/fstest"
	"time"

	"github.com/atrium-iot/atrium/internal/reading"
	"github.com/atrium-iot/atrium/internal/sqlitex"
	"github.com/atrium-iot/atrium/services/sensor"
)

// TestBatchesFromBeforePrincipals opens a database written before batch ids
// were scoped to their caller (migrations 0001 and 0002 only): its readings and
// registry stay, its pending event is still listed and acknowledged under its
// plain batch id, and no caller's batch is answered with an old batch's answer.
func TestBatchesFromBeforePrincipals(t *testing.T) {
	ctx := t.Context()
	path := filepath.Join(t.TempDir(), "sensor.db")
	old := fstest.MapFS{}
	for _, name := range []string{"0001_init.sql", "0002_journal.sql"} {
		b, err := fs.ReadFile(migrations, "migrations/"+name)
		if err != nil {
			t.Fatal(err)
		}
		old["migrations/"+name] = &fstest.MapFile{Data: b}
	}
	wdb, rdb, err := sqlitex.Open(ctx, path, sqlitex.Options{ForeignKeys: true, Migrations: old, MigrationsDir: "migrations"})
	if err != nil {
		t.Fatal(err)
	}
	stored := reading1("s1", base, 612)
	recv := base.Add(time.Minute).UnixMilli()
	for _, q := range []struct {
		sql  string
		args []any
	}{
		{"INSERT INTO readings (sensor_id, ts_ms, type, room_id, value, unit, received_ms) VALUES (?, ?, ?, ?, ?, ?, ?)",
			[]any{"s1", base.UnixMilli(), "co2", "r1", 612.0, "ppm", recv}},
		{"INSERT INTO sensors (id, room_id, first_seen_ms, last_seen_ms) VALUES ('s1', 'r1', ?, ?)", []any{recv, recv}},
		{"INSERT INTO sensor_types (sensor_id, type, value, unit, ts_ms) VALUES ('s1', 'co2', 612, 'ppm', ?)", []any{base.UnixMilli()}},
		{"INSERT INTO batches (id, result, received_ms) VALUES ('old-1', ?, ?)",
			[]any{`{"batch_id":"old-1","accepted":1,"duplicates":0,"rejected":[]}`, recv}},
		{"INSERT INTO outbox (batch_id, body) VALUES ('old-1', ?)", []any{encodeEvent("", []reading.Reading{stored})}},
	} {
		if _, err := wdb.ExecContext(ctx, q.sql, q.args...); err != nil {
			t.Fatalf("%s: %v", q.sql, err)
		}
	}
	rdb.Close()
	wdb.Close()

	s := openTest(t, path, Options{})
	rs, _, err := s.Readings(ctx, sensor.ReadingQuery{SensorID: "s1", Limit: 10})
	if err != nil || len(rs) != 1 || rs[0].Value != 612 {
		t.Fatalf("readings of s1 after the migration: %v, %v", rs, err)
	}
	evs, err := s.PendingEvents(ctx, 10)
	if err != nil || len(evs) != 1 || evs[0].BatchID != "old-1" ||
		string(evs[0].Body) != string(sensor.EventBody("old-1", "", []reading.Reading{stored})) {
		t.Fatalf("pending events after the migration: %+v, %v; want old-1's", evs, err)
	}

	// The old batch id from a caller now: a batch of its own, whose readings
	// are already stored.
	b := sensor.Batch{ID: "old-1", Principal: sensor.DirectPrincipal, Fingerprint: "fp", ReceivedAt: base.Add(time.Hour),
		Readings: []reading.Reading{stored}}
	out, err := s.Ingest(ctx, b)
	if err != nil {
		t.Fatalf("Ingest: %v", err)
	}
	if out.Replayed || out.Result.Accepted != 0 || out.Result.Duplicates != 1 || out.Result.BatchID != "old-1" {
		t.Errorf("old batch id from %s: %+v, want a new batch of 1 duplicate", b.Principal, out)
	}
	if out, err = s.Ingest(ctx, b); err != nil || !out.Replayed {
		t.Errorf("resent: %+v, %v; want the answer just recorded", out, err)
	}
	if err := s.AckEvent(ctx, "old-1"); err != nil {
		t.Fatalf("AckEvent(old-1): %v", err)
	}
	if evs, err := s.PendingEvents(ctx, 10); err != nil || len(evs) != 0 {
		t.Errorf("pending events after acknowledging old-1: %+v, %v", evs, err)
	}
	var principal, fp string
	if err := s.db.Readers.QueryRowContext(ctx, "SELECT principal, fingerprint FROM batches WHERE id = ?", b.Key()).Scan(&principal, &fp); err != nil ||
		principal != sensor.DirectPrincipal || fp != "fp" {
		t.Errorf("the new batch's row: principal %q fingerprint %q (%v)", principal, fp, err)
	}
}
