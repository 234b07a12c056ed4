package agent_test

import (
	"fmt"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/atrium-iot/atrium/agent"
	"github.com/atrium-iot/atrium/internal/reading"
)

// floorTxns is how many single-reading transactions measure the disk's floor.
const floorTxns = 200

// BenchmarkLatency measures how long a device waits for its PUBACK when it
// publishes QoS 1 one message at a time, as most firmware does, and what the disk
// allows in the same run:
//
//   - floor: one bbolt transaction carrying one reading (~150 bytes), committed
//     and fdatasynced, in the directory of the agent's spool, with the spool's
//     bbolt options. Nothing that answers after an fsync can answer faster.
//   - publishers=1: one paho connection, one message in flight.
//   - publishers=8: eight connections, one message in flight each.
//
// Every publisher sub-benchmark measures the floor again, just before and just
// after its load (floor-ms, the median of floorTxns transactions) and reports the PUBACK p50 and
// p99 (from the publish call to its return), msgs/s, and p50 as a multiple of
// that floor (p50/floor). Targets: a lone publisher's p50 ≤ 2× the floor, and
// eight publishers ≥ 4× the lone publisher's msgs/s.
//
//	go test -run '^$' -bench BenchmarkLatency -benchtime 2000x -count 5 ./agent/
func BenchmarkLatency(b *testing.B) {
	b.Run("floor", func(b *testing.B) {
		dir := b.TempDir()
		lat := benchFloor(b, dir, b.N)
		reportLatency(b, lat, 0)
	})
	for _, pubs := range []int{1, 8} {
		b.Run(fmt.Sprintf("publishers=%d", pubs), func(b *testing.B) {
			dir := b.TempDir()
			a := benchStartAgent(b, benchClosedURL(b), func(c *agent.Config) { c.Spool = filepath.Join(dir, "spool.db") })
			clients := benchConnect(b, a.MQTTAddr(), pubs)
			floorLat := benchFloor(b, dir, floorTxns/2)
			// One message per connection first: connection set-up and first-use costs
			// (stack growth, the spool's first pages) are not what this measures.
			for _, cl := range clients {
				if err := benchPublishOne(cl); err != nil {
					b.Fatal(err)
				}
			}
			lat := make([][]time.Duration, pubs)
			var (
				next   = make(chan struct{}, b.N)
				wg     sync.WaitGroup
				failed = make(chan error, pubs)
			)
			for range b.N {
				next <- struct{}{}
			}
			close(next)
			before := benchStatus(b, a.HTTPAddr())
			b.ResetTimer()
			for i, cl := range clients {
				wg.Go(func() {
					for range next {
						t0 := time.Now()
						if err := benchPublishOne(cl); err != nil {
							failed <- err
							return
						}
						lat[i] = append(lat[i], time.Since(t0))
					}
				})
			}
			wg.Wait()
			b.StopTimer()
			close(failed)
			if err := <-failed; err != nil {
				b.Fatal(err)
			}
			// The floor again after the load: the machine's disk and CPU share change
			// over a run, so the floor is the median of both measurements.
			floor := median(append(floorLat, benchFloor(b, dir, floorTxns/2)...))
			reportLatency(b, slices.Concat(lat...), floor)
			if c := benchStatus(b, a.HTTPAddr()).Commits - before.Commits; c > 0 {
				b.ReportMetric(float64(b.N)/float64(c), "msgs/commit")
			}
		})
	}
}

// benchFloor commits n transactions of one reading each into a bbolt file in dir,
// opened as the spool opens its file, and returns each one's duration.
func benchFloor(b testing.TB, dir string, n int) []time.Duration {
	b.Helper()
	db, err := bolt.Open(filepath.Join(dir, "floor.db"), 0o600, &bolt.Options{
		Timeout: time.Second, FreelistType: bolt.FreelistMapType, NoFreelistSync: true,
	})
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	r := reading.Reading{SensorID: "sensor_0001", RoomID: "room-001", Site: "bench-site", Type: "temperature",
		Value: 21.5, Unit: "Cel", Timestamp: time.Now().Truncate(time.Millisecond)}
	val := r.AppendJSON(nil)
	out := make([]time.Duration, 0, n)
	for i := range n {
		t0 := time.Now()
		err := db.Update(func(tx *bolt.Tx) error {
			bk, err := tx.CreateBucketIfNotExists([]byte("readings"))
			if err != nil {
				return err
			}
			return bk.Put(fmt.Appendf(nil, "%016x", i), val)
		})
		if err != nil {
			b.Fatal(err)
		}
		out = append(out, time.Since(t0))
	}
	return out
}

// reportLatency reports p50, p99 and the rate of lat (in the benchmark's elapsed
// time, or their sum when the timer did not run), and p50 against floor when set.
func reportLatency(b *testing.B, lat []time.Duration, floor time.Duration) {
	if len(lat) == 0 {
		return
	}
	slices.Sort(lat)
	p50, p99 := lat[len(lat)/2], lat[min(len(lat)-1, len(lat)*99/100)]
	ms := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
	b.ReportMetric(ms(p50), "p50-ms")
	b.ReportMetric(ms(p99), "p99-ms")
	secs := b.Elapsed().Seconds()
	if secs == 0 {
		var sum time.Duration
		for _, d := range lat {
			sum += d
		}
		secs = sum.Seconds()
	}
	b.ReportMetric(float64(len(lat))/secs, "msgs/s")
	if floor > 0 {
		b.ReportMetric(ms(floor), "floor-ms")
		b.ReportMetric(float64(p50)/float64(floor), "p50/floor")
	}
	b.ReportMetric(0, "ns/op")
}

// median of ds (sorted in place).
func median(ds []time.Duration) time.Duration {
	slices.Sort(ds)
	return ds[len(ds)/2]
}
