package sqlitestore

import (
	"context"
	"database/sql"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/atrium-iot/atrium/internal/reading"
	"github.com/atrium-iot/atrium/internal/sqlitex"
	"github.com/atrium-iot/atrium/internal/testenv"
	"github.com/atrium-iot/atrium/services/sensor"
)

// benchTypes are the types every benchmark sensor reports, in (ts, type) order.
var benchTypes = []struct{ typ, unit string }{
	{"co2", "ppm"}, {"humidity", "%RH"}, {"light", "lx"}, {"occupancy", "count"}, {"temperature", "Cel"},
}

const benchSensors = 1000

func benchSensorID(i int) string { return fmt.Sprintf("sensor-%04d", i) }

// benchBatch is batch i of a stream of 500-reading batches: 50 sensors with the
// five types at two instants, every identity new.
func benchBatch(i int, ids []string) sensor.Batch {
	rs := make([]reading.Reading, 0, 500)
	ts := base.Add(time.Duration(i) * 2 * time.Second)
	for k := range 50 {
		id := ids[(i*50+k)%benchSensors]
		room := "room-" + id[len(id)-2:]
		for dt := range 2 {
			for j, bt := range benchTypes {
				rs = append(rs, reading.Reading{SensorID: id, RoomID: room, Site: "hq", Type: bt.typ,
					Value: float64(400 + (i+k+j)%300), Unit: bt.unit, Timestamp: ts.Add(time.Duration(dt) * time.Second)})
			}
		}
	}
	return sensor.Batch{ID: fmt.Sprintf("batch-%d", i), Site: "hq", Readings: rs, ReceivedAt: ts}
}

// BenchmarkIngest measures stored readings per second with 500-reading batches,
// from one caller and from eight concurrent ones (group commit).
func BenchmarkIngest(b *testing.B) {
	ids := make([]string, benchSensors)
	for i := range ids {
		ids[i] = benchSensorID(i)
	}
	for _, syncMode := range []string{"FULL", "NORMAL"} {
		for _, callers := range []int{1, 8} {
			b.Run(fmt.Sprintf("sync=%s/callers=%d", syncMode, callers), func(b *testing.B) {
				path := filepath.Join(b.TempDir(), "ingest.db")
				s, err := Open(context.Background(), path, Options{Settings: sqlitex.Settings{Synchronous: syncMode}})
				if err != nil {
					b.Fatal(err)
				}
				defer s.Close()
				cpu0 := testenv.ProcessCPU(b)
				var next atomic.Int64
				var wg sync.WaitGroup
				var failed atomic.Value
				b.ReportAllocs()
				b.ResetTimer()
				for range callers {
					wg.Add(1)
					go func() {
						defer wg.Done()
						for {
							i := int(next.Add(1)) - 1
							if i >= b.N {
								return
							}
							out, err := s.Ingest(context.Background(), benchBatch(i, ids))
							if err == nil && out.Result.Accepted != 500 {
								err = fmt.Errorf("batch %d: %d accepted", i, out.Result.Accepted)
							}
							if err != nil {
								failed.Store(err)
								return
							}
						}
					}()
				}
				wg.Wait()
				b.StopTimer()
				if err, _ := failed.Load().(error); err != nil {
					b.Fatal(err)
				}
				b.ReportMetric(float64(b.N*500)/b.Elapsed().Seconds(), "readings/s")
				b.ReportMetric(float64(b.N)/float64(s.commits.Load()), "batches/commit")
				if fi, err := os.Stat(path + "-wal"); err == nil {
					b.ReportMetric(float64(fi.Size())/(1<<20), "wal-MiB")
				}
				// CPU time of the whole process per reading: less sensitive than
				// readings/s to other load on the machine.
				b.ReportMetric(float64(testenv.ProcessCPU(b)-cpu0)/float64(time.Microsecond)/float64(b.N*500), "cpu-µs/reading")
			})
		}
	}
}

// BenchmarkReadings measures one page of 1000 readings of a random sensor of a
// store of 1,000 sensors: 1,000,000 readings, or 10,000,000 with
// ATRIUM_BENCH_BIG=1. The store is built once and kept under os.TempDir().
func BenchmarkReadings(b *testing.B) {
	n := 1_000_000
	if os.Getenv("ATRIUM_BENCH_BIG") == "1" {
		n = 10_000_000
	}
	path := benchStore(b, n)
	s, err := Open(context.Background(), path, Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	perSensor := n / benchSensors
	span := time.Duration(perSensor/len(benchTypes)) * time.Minute

	tests := []struct {
		name string
		q    func(r *rand.Rand) sensor.ReadingQuery
	}{
		{"first-page", func(r *rand.Rand) sensor.ReadingQuery {
			return sensor.ReadingQuery{SensorID: benchSensorID(r.IntN(benchSensors)), Limit: 1000}
		}},
		{"latest-desc", func(r *rand.Rand) sensor.ReadingQuery {
			return sensor.ReadingQuery{SensorID: benchSensorID(r.IntN(benchSensors)), Limit: 1000, Desc: true}
		}},
		{"from-middle", func(r *rand.Rand) sensor.ReadingQuery {
			return sensor.ReadingQuery{SensorID: benchSensorID(r.IntN(benchSensors)), Limit: 1000,
				From: base.Add(time.Duration(r.Int64N(int64(span / 2))))}
		}},
		{"type", func(r *rand.Rand) sensor.ReadingQuery {
			return sensor.ReadingQuery{SensorID: benchSensorID(r.IntN(benchSensors)), Limit: 1000, Type: "temperature"}
		}},
	}
	for _, tc := range tests {
		b.Run(fmt.Sprintf("rows=%d/%s", n, tc.name), func(b *testing.B) {
			r := rand.New(rand.NewPCG(1, 2))
			lat := make([]time.Duration, 0, b.N)
			rows := 0
			ctx := context.Background()
			b.ReportAllocs()
			b.ResetTimer()
			for range b.N {
				q := tc.q(r)
				start := time.Now()
				rs, _, err := s.Readings(ctx, q)
				lat = append(lat, time.Since(start))
				if err != nil {
					b.Fatal(err)
				}
				if len(rs) == 0 {
					b.Fatalf("%+v: no readings", q)
				}
				rows += len(rs)
			}
			b.StopTimer()
			slices.Sort(lat)
			b.ReportMetric(float64(lat[len(lat)/2])/1e6, "p50-ms")
			b.ReportMetric(float64(lat[len(lat)*99/100])/1e6, "p99-ms")
			b.ReportMetric(float64(rows)/float64(b.N), "readings/page")
		})
	}
}

// benchStore returns the path of a store of n readings of benchSensors sensors,
// building it on first use. The readings are inserted by SQLite itself (a
// recursive CTE per sensor, in key order) with synchronous and the journal off,
// then the file is renamed into place so an interrupted build is never reused.
func benchStore(b *testing.B, n int) string {
	b.Helper()
	path := filepath.Join(os.TempDir(), fmt.Sprintf("atrium-sensor-bench-v1-%d.db", n))
	if _, err := os.Stat(path); err == nil {
		return path
	}
	start := time.Now()
	ctx := context.Background()
	tmp := path + ".building"
	for _, suffix := range []string{"", "-wal", "-shm"} {
		os.Remove(tmp + suffix)
	}
	s, err := Open(ctx, tmp, Options{Settings: sqlitex.Settings{Synchronous: "OFF"}})
	if err != nil {
		b.Fatal(err)
	}
	if err := s.Close(); err != nil {
		b.Fatal(err)
	}
	db, err := sql.Open("sqlite", tmp+"?_pragma=journal_mode(OFF)&_pragma=synchronous(OFF)&_pragma=cache_size(-262144)")
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	db.SetMaxOpenConns(1)

	perSensor := n / benchSensors
	steps := perSensor / len(benchTypes)
	baseMs := base.UnixMilli()
	const insert = `WITH RECURSIVE k(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM k WHERE i + 1 < ?1)
		INSERT INTO readings (sensor_id, ts_ms, type, room_id, site, value, unit, received_ms)
		SELECT ?2, ?3 + (i / 5) * 60000,
			CASE i % 5 WHEN 0 THEN 'co2' WHEN 1 THEN 'humidity' WHEN 2 THEN 'light' WHEN 3 THEN 'occupancy' ELSE 'temperature' END,
			?4, 'hq', (abs(random()) % 100000) / 100.0,
			CASE i % 5 WHEN 0 THEN 'ppm' WHEN 1 THEN '%RH' WHEN 2 THEN 'lx' WHEN 3 THEN 'count' ELSE 'Cel' END,
			?3 + (i / 5) * 60000 + 1500
		FROM k`
	lastMs := baseMs + int64(steps-1)*60000
	for first := 0; first < benchSensors; first += 100 {
		tx, err := db.BeginTx(ctx, nil)
		if err != nil {
			b.Fatal(err)
		}
		for i := first; i < first+100; i++ {
			id := benchSensorID(i)
			room := fmt.Sprintf("room-%02d", i%100)
			if _, err := tx.ExecContext(ctx, insert, perSensor, id, baseMs, room); err != nil {
				b.Fatal(err)
			}
			if _, err := tx.ExecContext(ctx, `INSERT INTO sensors (id, room_id, site, first_seen_ms, last_seen_ms)
				VALUES (?, ?, 'hq', ?, ?)`, id, room, baseMs+1500, lastMs+1500); err != nil {
				b.Fatal(err)
			}
			if _, err := tx.ExecContext(ctx, `INSERT INTO sensor_types (sensor_id, type, value, unit, ts_ms)
				SELECT sensor_id, type, value, unit, ts_ms FROM readings WHERE sensor_id = ? AND ts_ms = ?`, id, lastMs); err != nil {
				b.Fatal(err)
			}
		}
		if err := tx.Commit(); err != nil {
			b.Fatal(err)
		}
	}
	if err := db.Close(); err != nil {
		b.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		b.Fatal(err)
	}
	b.Logf("built %s: %d readings in %s", path, n, time.Since(start).Round(time.Millisecond))
	return path
}
