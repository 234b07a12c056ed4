package mongostore

import (
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/atrium-iot/atrium/internal/mongox/mongotest"
	"github.com/atrium-iot/atrium/internal/reading"
	"github.com/atrium-iot/atrium/services/room"
)

// BenchmarkApply applies batches of 500 readings (50 sensors in 10 rooms, 10
// instants a second apart, one type) from 4 goroutines, and reports readings
// per second.
func BenchmarkApply(b *testing.B) {
	c := mongotest.Client(b)
	s := openTest(b, mongotest.Database(b, c, "room_bench"), Options{})
	var next atomic.Int64
	b.SetParallelism(2) // 2 × GOMAXPROCS (2 here) goroutines
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := s.Apply(b.Context(), benchBatch(next.Add(1))); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N*500)/b.Elapsed().Seconds(), "readings/s")
}

// BenchmarkSnapshot reads the metrics snapshot of one room of ten sensors.
func BenchmarkSnapshot(b *testing.B) {
	c := mongotest.Client(b)
	s := openTest(b, mongotest.Database(b, c, "room_bench_snap"), Options{})
	for n := range int64(20) {
		if _, err := s.Apply(b.Context(), benchBatch(n)); err != nil {
			b.Fatal(err)
		}
	}
	from := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	b.ResetTimer()
	for b.Loop() {
		if _, err := s.Snapshot(b.Context(), "r1", from, from.Add(5*time.Minute)); err != nil {
			b.Fatal(err)
		}
	}
}

func benchBatch(n int64) room.Batch {
	rs := make([]reading.Reading, 0, 500)
	start := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC).Add(time.Duration(n) * 10 * time.Second)
	for i := range 10 {
		for sn := range 50 {
			rs = append(rs, reading.Reading{SensorID: fmt.Sprintf("s%02d", sn), RoomID: fmt.Sprintf("r%d", sn%10), Type: "co2",
				Value: float64(400 + sn + i), Unit: "ppm", Timestamp: start.Add(time.Duration(i) * time.Second)})
		}
	}
	return room.Batch{ID: fmt.Sprintf("b%d", n), Readings: rs, At: start}
}
