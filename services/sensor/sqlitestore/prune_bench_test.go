package sqlitestore

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/atrium-iot/atrium/internal/retention"
)

// BenchmarkPrune deletes the older half of a 1,000,000-reading store (1,000
// sensors, 200 minutes each) while one caller ingests 500-reading batches, and
// compares that caller's latencies with the same ingest on an untouched copy.
// Each iteration works on a fresh copy of the store. Metrics: deleted
// readings/s, and the ingest p50/p99/max with and without the prune.
func BenchmarkPrune(b *testing.B) {
	src := benchStore(b, 1_000_000)
	ids := make([]string, benchSensors)
	for i := range ids {
		ids[i] = benchSensorID(i)
	}
	ctx := context.Background()
	var rate []float64
	var with, without []time.Duration
	for i := range b.N {
		b.StopTimer()
		// The cutoff is 100 minutes into the 200: half the readings go.
		now := base.Add(100*time.Minute + 24*time.Hour)
		open := func(name string) *Store {
			path := filepath.Join(b.TempDir(), name)
			copyFile(b, src, path)
			s, err := Open(ctx, path, Options{Policy: retention.Policy{Retention: 24 * time.Hour, PruneEvery: -1, Now: func() time.Time { return now }}})
			if err != nil {
				b.Fatal(err)
			}
			return s
		}
		// ingest runs batches until stop is closed, recording each latency.
		ingest := func(s *Store, first int, stop <-chan struct{}) (lat []time.Duration, err error) {
			for k := first; ; k++ {
				select {
				case <-stop:
					return lat, nil
				default:
				}
				bt := benchBatch(k, ids)
				for j := range bt.Readings {
					bt.Readings[j].Timestamp = bt.Readings[j].Timestamp.Add(48 * time.Hour) // newer than the cutoff
				}
				start := time.Now()
				if _, err := s.Ingest(ctx, bt); err != nil {
					return lat, err
				}
				lat = append(lat, time.Since(start))
			}
		}

		s := open(fmt.Sprintf("prune-%d.db", i))
		stop := make(chan struct{})
		type result struct {
			lat []time.Duration
			err error
		}
		res := make(chan result, 1)
		go func() { l, err := ingest(s, i*100000, stop); res <- result{l, err} }()
		b.StartTimer()
		start := time.Now()
		deleted, _, err := s.Prune(ctx)
		if err != nil {
			b.Fatal(err)
		}
		took := time.Since(start)
		b.StopTimer()
		close(stop)
		r := <-res
		if r.err != nil {
			b.Fatal(r.err)
		}
		if deleted != 500_000 {
			b.Fatalf("deleted %d readings, want 500000", deleted)
		}
		with = append(with, r.lat...)
		rate = append(rate, float64(deleted)/took.Seconds())
		s.Close()

		// The same ingest for as long, without a prune.
		s = open(fmt.Sprintf("base-%d.db", i))
		stop = make(chan struct{})
		go func() { l, err := ingest(s, i*100000, stop); res <- result{l, err} }()
		time.Sleep(took)
		close(stop)
		r = <-res
		if r.err != nil {
			b.Fatal(r.err)
		}
		without = append(without, r.lat...)
		s.Close()
		b.StartTimer()
	}
	pct := func(lat []time.Duration, p int) float64 {
		slices.Sort(lat)
		return float64(lat[min(len(lat)-1, len(lat)*p/100)]) / 1e6
	}
	med := func(v []float64) float64 { slices.Sort(v); return v[len(v)/2] }
	b.ReportMetric(med(rate), "deleted/s")
	b.ReportMetric(pct(with, 50), "ingest-p50-ms")
	b.ReportMetric(pct(with, 99), "ingest-p99-ms")
	b.ReportMetric(pct(with, 100), "ingest-max-ms")
	b.ReportMetric(pct(without, 50), "base-p50-ms")
	b.ReportMetric(pct(without, 99), "base-p99-ms")
	b.ReportMetric(pct(without, 100), "base-max-ms")
}

func copyFile(b *testing.B, src, dst string) {
	b.Helper()
	in, err := os.Open(src)
	if err != nil {
		b.Fatal(err)
	}
	defer in.Close()
	out, err := os.Create(dst)
	if err != nil {
		b.Fatal(err)
	}
	if _, err := io.Copy(out, in); err != nil {
		b.Fatal(err)
	}
	if err := out.Close(); err != nil {
		b.Fatal(err)
	}
}
