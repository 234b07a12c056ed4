package mongostore

import (
	"fmt"
	"path/filepath"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/atrium-iot/atrium/internal/mongox/mongotest"
	"github.com/atrium-iot/atrium/internal/reading"
	"github.com/atrium-iot/atrium/services/sensor"
	"github.com/atrium-iot/atrium/services/sensor/sqlitestore"
)

// benchStores opens, for one benchmark, an SQLite store and (when the test
// server is set) a MongoDB store, so that one run compares the engines.
func benchStores(b *testing.B) map[string]sensor.Store {
	b.Helper()
	stores := map[string]sensor.Store{}
	sq, err := sqlitestore.Open(b.Context(), filepath.Join(b.TempDir(), "sensor.db"), sqlitestore.Options{})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { sq.Close() })
	stores["sqlite"] = sq
	c := mongotest.Client(b)
	ms, err := Open(b.Context(), mongotest.URL(b), Options{Database: mongotest.Database(b, c, "sensor_bench")})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { ms.Close() })
	stores["mongo"] = ms
	return stores
}

// benchBatch is batch n of 500 readings: 50 sensors × 10 instants, all new.
func benchBatch(n int64) sensor.Batch {
	rs := make([]reading.Reading, 0, 500)
	at := base.Add(time.Duration(n*10) * time.Second)
	for i := range 10 {
		for s := range 50 {
			rs = append(rs, reading.Reading{SensorID: fmt.Sprintf("s%03d", s), RoomID: fmt.Sprintf("r%02d", s/5), Type: "co2",
				Value: float64(400 + i), Unit: "ppm", Timestamp: at.Add(time.Duration(i) * time.Second)})
		}
	}
	return sensor.Batch{ID: fmt.Sprintf("bench-%d", n), Readings: rs, ReceivedAt: at}
}

// BenchmarkIngest: 500-reading batches from 4 goroutines; reports readings/s.
func BenchmarkIngest(b *testing.B) {
	for _, engine := range []string{"sqlite", "mongo"} {
		b.Run(engine, func(b *testing.B) {
			st := benchStores(b)[engine]
			var n atomic.Int64
			b.SetParallelism(2) // 2 × GOMAXPROCS callers
			b.ResetTimer()
			start := time.Now()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if _, err := st.Ingest(b.Context(), benchBatch(n.Add(1))); err != nil {
						b.Error(err)
						return
					}
				}
			})
			b.ReportMetric(float64(n.Load()*500)/time.Since(start).Seconds(), "readings/s")
		})
	}
}

// BenchmarkHistory: pages of 100 readings of one sensor, at random offsets of its
// 2000-reading history; reports the p99 latency.
func BenchmarkHistory(b *testing.B) {
	for _, engine := range []string{"sqlite", "mongo"} {
		b.Run(engine, func(b *testing.B) {
			st := benchStores(b)[engine]
			for n := range int64(200) { // 200 batches × 10 readings per sensor
				if _, err := st.Ingest(b.Context(), benchBatch(n)); err != nil {
					b.Fatal(err)
				}
			}
			lat := make([]time.Duration, 0, b.N)
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				from := base.Add(time.Duration(i%1900) * time.Second)
				t0 := time.Now()
				rs, _, err := st.Readings(b.Context(), sensor.ReadingQuery{SensorID: fmt.Sprintf("s%03d", i%50), From: from, Limit: 100})
				lat = append(lat, time.Since(t0))
				if err != nil || len(rs) != 100 {
					b.Fatalf("Readings: %d readings, %v", len(rs), err)
				}
			}
			b.StopTimer()
			slices.Sort(lat)
			b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "p99-ms")
		})
	}
}
