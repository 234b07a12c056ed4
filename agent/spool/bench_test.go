package spool

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
)

// benchReading is a realistic ~150-byte reading.
func benchReading(n int) []byte {
	return fmt.Appendf(nil, `{"sensor_id":"sensor_%04d","room_id":"room-%03d","type":"temperature","value":21.5,"unit":"Cel","timestamp":"2026-11-25T12:00:00.000Z","site":"hq%s"}`,
		n%10000, n%500, strings.Repeat("x", 5))
}

// BenchmarkAppend: one reading per call, from 1 or 64 concurrent appenders. Every call
// waits for its fsync; concurrent calls share commits.
func BenchmarkAppend(b *testing.B) {
	for _, appenders := range []int{1, 64} {
		b.Run(fmt.Sprintf("appenders=%d", appenders), func(b *testing.B) {
			s := openTest(b, filepath.Join(b.TempDir(), "spool.db"), Options{})
			r := benchReading(1)
			ctx := context.Background()
			var next atomic.Int64
			start := s.Stats().Commits
			b.ResetTimer()
			var wg sync.WaitGroup
			for range appenders {
				wg.Go(func() {
					for next.Add(1) <= int64(b.N) {
						if err := s.Append(ctx, [][]byte{r}); err != nil {
							b.Error(err)
							return
						}
					}
				})
			}
			wg.Wait()
			b.StopTimer()
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "readings/s")
			b.ReportMetric(float64(b.N)/float64(s.Stats().Commits-start), "readings/commit")
		})
	}
}

// BenchmarkDrain: the forwarder's loop, NextBatch(500) + AckBatch, over 1,000,000
// spooled readings of ~150 bytes.
func BenchmarkDrain(b *testing.B) {
	const total = 1_000_000
	s := openTest(b, filepath.Join(b.TempDir(), "spool.db"), Options{})
	chunk := make([][]byte, 10_000)
	for i := range chunk {
		chunk[i] = benchReading(i)
	}
	drained := 0
	b.ResetTimer()
	for range b.N {
		b.StopTimer()
		for i := 0; i < total; i += len(chunk) {
			if err := s.Append(context.Background(), chunk); err != nil {
				b.Fatal(err)
			}
		}
		b.StartTimer()
		for {
			batch, ok, err := s.NextBatch(500, 0)
			if err != nil {
				b.Fatal(err)
			}
			if !ok {
				break
			}
			if err := s.AckBatch(batch.ID); err != nil {
				b.Fatal(err)
			}
			drained += len(batch.Readings)
		}
	}
	b.StopTimer()
	if drained != total*b.N {
		b.Fatalf("drained %d readings, want %d", drained, total*b.N)
	}
	b.ReportMetric(float64(drained)/b.Elapsed().Seconds(), "readings/s")
	st := s.Stats()
	b.ReportMetric(float64(st.FileBytes)/(1<<20), "file-MiB")
}

// BenchmarkOpen: reopening a spool of 1,000,000 readings (~190 MB): bbolt rebuilds its
// freelist and the spool recounts its readings.
func BenchmarkOpen(b *testing.B) {
	const total = 1_000_000
	path := filepath.Join(b.TempDir(), "spool.db")
	s, err := Open(path, Options{})
	if err != nil {
		b.Fatal(err)
	}
	chunk := make([][]byte, 10_000)
	for i := range chunk {
		chunk[i] = benchReading(i)
	}
	for i := 0; i < total; i += len(chunk) {
		if err := s.Append(context.Background(), chunk); err != nil {
			b.Fatal(err)
		}
	}
	if err := s.Close(); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for range b.N {
		s, err := Open(path, Options{})
		if err != nil {
			b.Fatal(err)
		}
		if got := s.Stats().Readings; got != total {
			b.Fatalf("readings = %d, want %d", got, total)
		}
		if err := s.Close(); err != nil {
			b.Fatal(err)
		}
	}
}
