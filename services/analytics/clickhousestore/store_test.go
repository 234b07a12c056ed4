package clickhousestore_test

import (
	"context"
	"fmt"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"

	"github.com/atrium-iot/atrium/internal/reading"
	"github.com/atrium-iot/atrium/services/analytics"
	"github.com/atrium-iot/atrium/services/analytics/clickhousestore"
	"github.com/atrium-iot/atrium/services/analytics/storetest"
)

// testURL is the server of the integration tests, from ATRIUM_TEST_CLICKHOUSE_URL
// (e.g. clickhouse://127.0.0.1:9000/analytics_test); the tests skip without it
// unless ATRIUM_REQUIRE_INTEGRATION=1.
func testURL(t testing.TB) string {
	t.Helper()
	u := os.Getenv("ATRIUM_TEST_CLICKHOUSE_URL")
	if u == "" {
		if os.Getenv("ATRIUM_REQUIRE_INTEGRATION") == "1" {
			t.Fatal("ATRIUM_TEST_CLICKHOUSE_URL is not set and ATRIUM_REQUIRE_INTEGRATION=1")
		}
		t.Skip("ATRIUM_TEST_CLICKHOUSE_URL is not set")
	}
	return u
}

// uniqueDB returns base's URL with a database name unique to this run and test.
func uniqueDB(t testing.TB, base, name string) string {
	t.Helper()
	u, err := url.Parse(base)
	if err != nil {
		t.Fatal(err)
	}
	db := strings.Trim(u.Path, "/")
	if db == "" {
		db = "analytics_test"
	}
	clean := strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '_' {
			return r
		}
		if r >= 'A' && r <= 'Z' {
			return r + 32
		}
		return '_'
	}, name)
	u.Path = "/" + fmt.Sprintf("%s_%d_%s", db, time.Now().UnixNano()%1e9, clean)
	return u.String()
}

func TestContract(t *testing.T) {
	base := testURL(t)
	urls := map[string]string{}
	storetest.Run(t, func(t *testing.T, name string) analytics.Store {
		u, ok := urls[name]
		if !ok {
			u = uniqueDB(t, base, name)
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

// TestMinutesBackfill opens a database whose minutes table is missing (made
// before it existed) or half built (an interrupted backfill): Open must fill it
// from the stored readings, a raced duplicate counted once, and every query read
// the same figures as on a store that built it while inserting.
func TestMinutesBackfill(t *testing.T) {
	base := testURL(t)
	m := time.Date(2026, 11, 1, 10, 0, 0, 0, time.UTC)
	at := func(d time.Duration) time.Time { return m.Add(d) }
	rs := []reading.Reading{
		{SensorID: "s1", RoomID: "r1", Type: "temperature", Value: 20, Timestamp: at(0)},
		{SensorID: "s1", RoomID: "r1", Type: "temperature", Value: 22, Timestamp: at(10 * time.Second)},
		{SensorID: "s1", RoomID: "r1", Type: "temperature", Value: 20, Timestamp: at(20 * time.Second)},
		{SensorID: "s1", RoomID: "r1", Type: "temperature", Value: 22, Timestamp: at(30 * time.Second)},
		{SensorID: "s1", RoomID: "r1", Type: "temperature", Value: 25, Timestamp: at(65 * time.Second)},
		{SensorID: "h1", RoomID: "r1", Type: "humidity", Value: 40, Timestamp: at(0)},
	}
	tests := []struct {
		name  string
		setup []string // statements run (on the store's database) before reopening
	}{
		{"fresh", nil},
		{"missing", []string{"DROP TABLE %[1]s.minutes"}},
		{"interrupted", []string{
			"DROP TABLE %[1]s.minutes",
			"CREATE TABLE %[1]s.minutes_build (room_id String, type String, minute_ms Int64, n UInt64, sum Float64, min_v Float64, min_ms Int64, max_v Float64, max_ms Int64) ENGINE = MergeTree ORDER BY (room_id, type, minute_ms)",
			"INSERT INTO %[1]s.minutes_build SELECT * FROM %[1]s.minutes_copy",
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ctx := t.Context()
			u := uniqueDB(t, base, t.Name())
			s, err := clickhousestore.Open(ctx, u, clickhousestore.Options{})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() {
				_ = s.DropDatabase(context.Background())
				_ = s.Close()
			})
			if n, err := s.AddReadings(ctx, rs); err != nil || n != len(rs) {
				t.Fatalf("AddReadings = %d, %v; want %d", n, err, len(rs))
			}
			o, db, err := clickhousestore.ParseURL(u)
			if err != nil {
				t.Fatal(err)
			}
			conn, err := clickhouse.Open(o)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			// A copy two processes raced to insert: stored twice in the raw table.
			batch, err := conn.PrepareBatch(ctx, "INSERT INTO "+db+".readings (room_id, type, ts_ms, sensor_id, value)")
			if err != nil {
				t.Fatal(err)
			}
			if err := batch.Append("r1", "temperature", at(10*time.Second).UnixMilli(), "s1", 22.0); err != nil {
				t.Fatal(err)
			}
			if err := batch.Send(); err != nil {
				t.Fatal(err)
			}
			// Junk that a complete rebuild must not keep.
			if err := conn.Exec(ctx, "CREATE TABLE "+db+".minutes_copy ENGINE = Memory AS SELECT * FROM "+db+".minutes"); err != nil {
				t.Fatal(err)
			}
			for _, q := range tc.setup {
				if err := conn.Exec(ctx, fmt.Sprintf(q, db)); err != nil {
					t.Fatalf("%s: %v", q, err)
				}
			}
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			s, err = clickhousestore.Open(ctx, u, clickhousestore.Options{})
			if err != nil {
				t.Fatal(err)
			}

			if n, err := s.CountReadings(ctx, m, at(2*time.Minute)); err != nil || n != 6 {
				t.Errorf("CountReadings = %d, %v; want 6", n, err)
			}
			stats, err := s.TypeStats(ctx, m, at(2*time.Minute))
			if err != nil {
				t.Fatal(err)
			}
			want := []analytics.TypeStat{
				{Type: "humidity", Count: 1, Mean: 40, Min: 40, Max: 40},
				{Type: "temperature", Count: 5, Mean: 21.8, Min: 20, Max: 25},
			}
			if fmt.Sprint(stats) != fmt.Sprint(want) {
				t.Errorf("TypeStats = %v, want %v", stats, want)
			}
			q := analytics.SeriesQuery{RoomID: "r1", Type: "temperature", From: m, To: at(2 * time.Minute), Bucket: time.Minute}
			bs, err := s.Series(ctx, q)
			if err != nil {
				t.Fatal(err)
			}
			wantB := []analytics.Bucket{
				{Start: m, Count: 4, Mean: 21, Min: 20, Max: 22},
				{Start: at(time.Minute), Count: 1, Mean: 25, Min: 25, Max: 25},
			}
			if fmt.Sprint(bs) != fmt.Sprint(wantB) {
				t.Errorf("Series = %v, want %v", bs, wantB)
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
		})
	}
}
