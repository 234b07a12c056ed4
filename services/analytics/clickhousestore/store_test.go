package clickhousestore_test

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/atrium-iot/atrium/internal/logging"
	"github.com/atrium-iot/atrium/internal/reading"
	"github.com/atrium-iot/atrium/services/analytics"
	"github.com/atrium-iot/atrium/services/analytics/clickhousestore"
	"github.com/atrium-iot/atrium/services/analytics/clickhousestore/chtest"
	"github.com/atrium-iot/atrium/services/analytics/storetest"
)

func TestContract(t *testing.T) {
	urls := map[string]string{}
	storetest.Run(t, func(t *testing.T, name string) storetest.Store {
		u, ok := urls[name]
		if !ok {
			u = chtest.DatabaseURL(t, name)
			urls[name] = u
		}
		s, err := clickhousestore.Open(t.Context(), u, clickhousestore.Options{})
		if err != nil {
			t.Fatal(err)
		}
		if !ok {
			t.Cleanup(func() {
				d, err := clickhousestore.Open(context.Background(), u, clickhousestore.Options{})
				if err != nil {
					t.Errorf("reopen to drop: %v", err)
					return
				}
				defer d.Close()
				if err := d.DropDatabase(context.Background()); err != nil {
					t.Errorf("drop database: %v", err)
				}
			})
		}
		return s
	})
}

func TestParseURL(t *testing.T) {
	tests := []struct {
		url, addr, db, user string
		ok                  bool
	}{
		{"clickhouse://127.0.0.1:9000/analytics_test", "127.0.0.1:9000", "analytics_test", "default", true},
		{"clickhouse://db.example:9440", "db.example:9440", clickhousestore.DefaultDatabase, "default", true},
		{"clickhouse://bob:secret@ch/x_1", "ch:9000", "x_1", "bob", true},
		{"clickhouse://ch/bad-name", "", "", "", false},
		{"http://ch:8123/x", "", "", "", false},
		{"clickhouse:///x", "", "", "", false},
	}
	for _, tc := range tests {
		t.Run(tc.url, func(t *testing.T) {
			o, db, err := clickhousestore.ParseURL(tc.url)
			if (err == nil) != tc.ok {
				t.Fatalf("ParseURL err = %v, want ok %v", err, tc.ok)
			}
			if !tc.ok {
				if strings.Contains(fmt.Sprint(err), "secret") {
					t.Errorf("error shows the password: %v", err)
				}
				return
			}
			if o.Addr[0] != tc.addr || db != tc.db || o.Auth.Username != tc.user {
				t.Errorf("ParseURL = %v %q %q, want %q %q %q", o.Addr, db, o.Auth.Username, tc.addr, tc.db, tc.user)
			}
		})
	}
}

// fixture are the readings of the migration and repair tests, from minute m.
func fixture(m time.Time) []reading.Reading {
	at := func(d time.Duration) time.Time { return m.Add(d) }
	return []reading.Reading{
		{SensorID: "s1", RoomID: "r1", Type: "temperature", Value: 20, Timestamp: at(0)},
		{SensorID: "s1", RoomID: "r1", Type: "temperature", Value: 22, Timestamp: at(10 * time.Second)},
		{SensorID: "s1", RoomID: "r1", Type: "temperature", Value: 20, Timestamp: at(20 * time.Second)},
		{SensorID: "s1", RoomID: "r1", Type: "temperature", Value: 22, Timestamp: at(30 * time.Second)},
		{SensorID: "h1", RoomID: "r1", Type: "humidity", Value: 40, Timestamp: at(0)},
		{SensorID: "c1", RoomID: "r2", Type: "co2", Value: 900, Timestamp: at(30 * time.Second)},
		{SensorID: "s1", RoomID: "r1", Type: "temperature", Value: 25, Timestamp: at(65 * time.Second)},
		{SensorID: "c1", RoomID: "r2", Type: "co2", Value: 1200, Timestamp: at(70 * time.Second)},
	}
}

// figures are what every query of the store must answer about fixture(m), plus
// extra stats and latest values.
func checkFigures(t *testing.T, s analytics.Store, m time.Time, extraStats []analytics.TypeStat, extraLatest []analytics.RoomValue) {
	t.Helper()
	ctx := t.Context()
	at := func(d time.Duration) time.Time { return m.Add(d) }
	stats := append([]analytics.TypeStat{
		{Type: "co2", Count: 2, Mean: 1050, Min: 900, Max: 1200},
		{Type: "humidity", Count: 1, Mean: 40, Min: 40, Max: 40},
		{Type: "temperature", Count: 5, Mean: 21.8, Min: 20, Max: 25},
	}, extraStats...)
	slices.SortFunc(stats, func(a, b analytics.TypeStat) int { return strings.Compare(a.Type, b.Type) })
	var total int64
	for _, st := range stats {
		total += st.Count
	}
	if n, err := s.CountReadings(ctx, m, at(2*time.Minute)); err != nil || n != total {
		t.Errorf("CountReadings = %d, %v; want %d", n, err, total)
	}
	got, err := s.TypeStats(ctx, m, at(2*time.Minute))
	if err != nil || fmt.Sprint(got) != fmt.Sprint(stats) {
		t.Errorf("TypeStats = %v, %v\n want %v", got, err, stats)
	}
	q := analytics.SeriesQuery{RoomID: "r1", Type: "temperature", From: m, To: at(2 * time.Minute), Bucket: time.Minute}
	bs, err := s.Series(ctx, q)
	want := []analytics.Bucket{{Start: m, Count: 4, Mean: 21, Min: 20, Max: 22}, {Start: at(time.Minute), Count: 1, Mean: 25, Min: 25, Max: 25}}
	if err != nil || fmt.Sprint(bs) != fmt.Sprint(want) {
		t.Errorf("Series of r1 = %v, %v\n want %v", bs, err, want)
	}
	hour := m.Truncate(time.Hour)
	bs, err = s.Series(ctx, analytics.SeriesQuery{Type: "co2", From: hour, To: hour.Add(time.Hour), Bucket: time.Hour})
	want = []analytics.Bucket{{Start: hour, Count: 2, Mean: 1050, Min: 900, Max: 1200}}
	if err != nil || fmt.Sprint(bs) != fmt.Sprint(want) {
		t.Errorf("Series of the building = %v, %v\n want %v", bs, err, want)
	}
	lo, ok, err := s.Extreme(ctx, q, false)
	if err != nil || !ok || lo.Value != 20 || !lo.At.Equal(m) {
		t.Errorf("Extreme min = %v %v %v, want 20 at %s", lo, ok, err, m)
	}
	q.To = at(time.Minute)
	hi, ok, err := s.Extreme(ctx, q, true)
	if err != nil || !ok || hi.Value != 22 || !hi.At.Equal(at(10*time.Second)) {
		t.Errorf("Extreme max = %v %v %v, want 22 at %s", hi, ok, err, at(10*time.Second))
	}
	latest := append([]analytics.RoomValue{
		{RoomID: "r1", Type: "humidity", Value: 40, At: m},
		{RoomID: "r1", Type: "temperature", Value: 25, At: at(65 * time.Second)},
		{RoomID: "r2", Type: "co2", Value: 1200, At: at(70 * time.Second)},
	}, extraLatest...)
	slices.SortFunc(latest, func(a, b analytics.RoomValue) int {
		return strings.Compare(a.RoomID+"\x00"+a.Type, b.RoomID+"\x00"+b.Type)
	})
	lv, err := s.Latest(ctx, m)
	if err != nil || fmt.Sprint(lv) != fmt.Sprint(latest) {
		t.Errorf("Latest = %v, %v\n want %v", lv, err, latest)
	}
	rooms := map[string]bool{}
	for _, v := range latest {
		rooms[v.RoomID] = true
	}
	if rs, err := s.Rooms(ctx); err != nil || len(rs) != len(rooms) {
		t.Errorf("Rooms = %v, %v; want %d rooms", rs, err, len(rooms))
	}
}

// testDB names a unique database of the test server (name short: a database
// name has at most 64 characters) and opens a plain client too, for statements
// the store does not make. The database is dropped at the end.
func testDB(t *testing.T, name string) (u, db string, conn driver.Conn) {
	t.Helper()
	u = chtest.DatabaseURL(t, name)
	o, db, err := clickhousestore.ParseURL(u)
	if err != nil {
		t.Fatal(err)
	}
	if conn, err = clickhouse.Open(o); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = conn.Exec(context.Background(), "DROP DATABASE IF EXISTS "+db)
		conn.Close()
	})
	return u, db, conn
}

func openLogged(t *testing.T, u string) (*clickhousestore.Store, *logging.Buffer) {
	t.Helper()
	var logs logging.Buffer
	s, err := clickhousestore.Open(t.Context(), u, clickhousestore.Options{Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	return s, &logs
}

const rebuilt = "aggregates rebuilt from readings"

// TestMigrate opens databases left by older releases: readings only (before any
// aggregate), readings with the minutes table its writer filled (also with the
// minutes of its last INSERT lost, the gap of writing them separately), and a
// minutes backfill interrupted. Each holds a copy of a reading that two writers
// raced to store. Open must add the aggregates and their views, every query
// then answer exactly, new readings count once, and a second open rebuild
// nothing.
func TestMigrate(t *testing.T) {
	m := time.Date(2026, 11, 1, 10, 0, 0, 0, time.UTC)
	rs := fixture(m)
	const readingsDDL = `CREATE TABLE %[1]s.readings (room_id String, type String, ts_ms Int64, sensor_id String, value Float64)
ENGINE = ReplacingMergeTree PARTITION BY toYYYYMM(toDateTime(intDiv(ts_ms, 1000))) ORDER BY (room_id, type, ts_ms, sensor_id)`
	const roomsDDL = `CREATE TABLE %[1]s.rooms (room_id String, first_ms Int64) ENGINE = ReplacingMergeTree ORDER BY room_id`
	const minutesDDL = `CREATE TABLE %[1]s.%[2]s (room_id String, type String, minute_ms Int64, n UInt64, sum Float64, min_v Float64, min_ms Int64, max_v Float64, max_ms Int64)
ENGINE = MergeTree PARTITION BY toYYYYMM(toDateTime(intDiv(minute_ms, 1000))) ORDER BY (room_id, type, minute_ms)`
	// The minutes of the readings before %[3]d ms, as the older writer inserted them.
	const minutesFill = `INSERT INTO %[1]s.%[2]s (room_id, type, minute_ms, n, sum, min_v, min_ms, max_v, max_ms)
SELECT room_id, type, intDiv(ts_ms, 60000) * 60000 AS mm, count(), sum(value), min(value), argMin(ts_ms, tuple(value, ts_ms)), max(value), argMin(ts_ms, tuple(-value, ts_ms))
FROM (SELECT room_id, type, ts_ms, sensor_id, any(value) AS value FROM %[1]s.readings WHERE ts_ms < %[3]d GROUP BY room_id, type, ts_ms, sensor_id)
GROUP BY room_id, type, mm`
	all, lastInsert := m.Add(time.Hour).UnixMilli(), m.Add(time.Minute).UnixMilli()
	tests := []struct {
		name  string
		setup []string // run after the readings are stored: %[1]s the database
	}{
		{"readings only", []string{roomsDDL}},
		{"minutes written by the writer", []string{roomsDDL, fmt.Sprintf(minutesDDL, "%[1]s", "minutes"), fmt.Sprintf(minutesFill, "%[1]s", "minutes", all)}},
		{"minutes of the last insert lost", []string{roomsDDL, fmt.Sprintf(minutesDDL, "%[1]s", "minutes"), fmt.Sprintf(minutesFill, "%[1]s", "minutes", lastInsert)}},
		{"minutes backfill interrupted", []string{roomsDDL, fmt.Sprintf(minutesDDL, "%[1]s", "minutes_build"), fmt.Sprintf(minutesFill, "%[1]s", "minutes_build", lastInsert)}},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ctx := t.Context()
			u, db, conn := testDB(t, fmt.Sprintf("migrate%d", i))
			if err := conn.Exec(ctx, "CREATE DATABASE "+db); err != nil {
				t.Fatal(err)
			}
			if err := conn.Exec(ctx, fmt.Sprintf(readingsDDL, db)); err != nil {
				t.Fatal(err)
			}
			// Two INSERTs, so that the raced copy stays in another part.
			for _, part := range [][]reading.Reading{rs, rs[1:2]} {
				batch, err := conn.PrepareBatch(ctx, "INSERT INTO "+db+".readings (room_id, type, ts_ms, sensor_id, value)")
				if err != nil {
					t.Fatal(err)
				}
				for _, r := range part {
					if err := batch.Append(r.RoomID, r.Type, r.UnixMilli(), r.SensorID, r.Value); err != nil {
						t.Fatal(err)
					}
				}
				if err := batch.Send(); err != nil {
					t.Fatal(err)
				}
			}
			for _, q := range tc.setup {
				if err := conn.Exec(ctx, fmt.Sprintf(q, db)); err != nil {
					t.Fatalf("%s: %v", q, err)
				}
			}

			s, logs := openLogged(t, u)
			defer s.Close()
			checkFigures(t, s, m, nil, nil)
			if n, err := s.AddReadings(ctx, rs); err != nil || n != 0 {
				t.Errorf("AddReadings of stored readings = %d, %v; want 0", n, err)
			}
			more := []reading.Reading{{SensorID: "n1", RoomID: "r3", Type: "noise", Value: 35, Timestamp: m.Add(90 * time.Second)}}
			if n, err := s.AddReadings(ctx, more); err != nil || n != 1 {
				t.Errorf("AddReadings of a new reading = %d, %v; want 1", n, err)
			}
			extraStats := []analytics.TypeStat{{Type: "noise", Count: 1, Mean: 35, Min: 35, Max: 35}}
			extraLatest := []analytics.RoomValue{{RoomID: "r3", Type: "noise", Value: 35, At: m.Add(90 * time.Second)}}
			checkFigures(t, s, m, extraStats, extraLatest)
			if strings.Count(logs.String(), rebuilt) == 0 {
				t.Errorf("first open logged no %q", rebuilt)
			}
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}

			s, logs = openLogged(t, u)
			defer s.Close()
			if n := strings.Count(logs.String(), rebuilt); n != 0 {
				t.Errorf("second open rebuilt %d partitions, want 0:\n%s", n, logs.String())
			}
			checkFigures(t, s, m, extraStats, extraLatest)
		})
	}
}

// TestFailedInsert makes the server fail an INSERT into readings after storing
// the readings (a view that throws on a marked value, processed before or after
// the store's views). A redelivery then finds the readings stored: the
// aggregates must count them once all the same, whether the same process goes
// on (it reconciles before its next INSERT) or a new one opens the database (it
// compares readings and aggregates per partition).
func TestFailedInsert(t *testing.T) {
	m := time.Date(2026, 11, 2, 10, 0, 0, 0, time.UTC)
	rs := fixture(m)
	bad := reading.Reading{SensorID: "n1", RoomID: "r3", Type: "noise", Value: -999, Timestamp: m.Add(80 * time.Second)}
	failed := append(rs[6:8:8], bad)
	extraStats := []analytics.TypeStat{{Type: "noise", Count: 1, Mean: -999, Min: -999, Max: -999}}
	extraLatest := []analytics.RoomValue{{RoomID: "r3", Type: "noise", Value: -999, At: bad.Timestamp}}
	for _, view := range []string{"a_fail_mv", "z_fail_mv"} {
		for _, restart := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s restart=%v", view, restart), func(t *testing.T) {
				ctx := t.Context()
				u, db, conn := testDB(t, fmt.Sprintf("failed_%s_%v", view[:1], restart))
				s, logs := openLogged(t, u)
				defer func() { _ = s.Close() }()
				if n, err := s.AddReadings(ctx, rs[:6]); err != nil || n != 6 {
					t.Fatalf("AddReadings = %d, %v; want 6", n, err)
				}
				for _, q := range []string{
					"CREATE TABLE %[1]s.fail (x UInt8) ENGINE = Null",
					"CREATE MATERIALIZED VIEW %[1]s.%[2]s TO %[1]s.fail AS SELECT throwIf(value = -999) AS x FROM %[1]s.readings",
				} {
					if err := conn.Exec(ctx, fmt.Sprintf(q, db, view)); err != nil {
						t.Fatal(err)
					}
				}
				if n, err := s.AddReadings(ctx, failed); err == nil {
					t.Fatalf("AddReadings through the failing view = %d, nil; want an error", n)
				}
				if err := conn.Exec(ctx, "DROP TABLE "+db+"."+view); err != nil {
					t.Fatal(err)
				}
				if restart {
					if err := s.Close(); err != nil {
						t.Fatal(err)
					}
					s, logs = openLogged(t, u)
				}
				// The redelivery: stored by the failed INSERT already.
				if n, err := s.AddReadings(ctx, failed); err != nil || n != 0 {
					t.Errorf("AddReadings again = %d, %v; want 0", n, err)
				}
				checkFigures(t, s, m, extraStats, extraLatest)
				if !restart && strings.Count(logs.String(), "aggregates of a failed insert reconciled") != 1 {
					t.Errorf("no reconcile logged:\n%s", logs.String())
				}
			})
		}
	}
}
