package room_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/atrium-iot/atrium/internal/bus"
	"github.com/atrium-iot/atrium/internal/events"
	"github.com/atrium-iot/atrium/internal/logging"
	"github.com/atrium-iot/atrium/internal/reading"
	"github.com/atrium-iot/atrium/internal/servicetest"
	"github.com/atrium-iot/atrium/internal/sqlitex"
	"github.com/atrium-iot/atrium/internal/testenv"
	"github.com/atrium-iot/atrium/services/room"
	"github.com/atrium-iot/atrium/services/room/sqlitestore"
)

var benchTypes = []string{"temperature", "humidity", "co2", "occupancy", "light"}

// benchEvent is a sensor.data.received body of 500 readings: 100 sensors in 10
// rooms (one type each), 5 readings per sensor a second apart; batch n starts 5 s
// after batch n-1, so every batch adds new minutes now and then.
func benchEvent(n int, base time.Time) []byte {
	t := base.Add(time.Duration(n) * 5 * time.Second)
	rs := make([]reading.Reading, 0, 500)
	for s := range 100 {
		for k := range 5 {
			rs = append(rs, reading.Reading{SensorID: fmt.Sprintf("sensor_%03d", s), RoomID: fmt.Sprintf("room-%d", s%10), Type: benchTypes[s%5],
				Value: float64(20 + (s+k+n)%7), Timestamp: t.Add(time.Duration(k) * time.Second)})
		}
	}
	return events.EncodeSensorData(fmt.Sprintf("bench-%d", n), "hq", rs)
}

func benchService(b *testing.B, opts sqlitestore.Options) (*room.Service, *sqlitestore.Store, bus.Bus) {
	return benchServiceWith(b, opts, room.Options{})
}

func benchServiceWith(b *testing.B, opts sqlitestore.Options, ropts room.Options) (*room.Service, *sqlitestore.Store, bus.Bus) {
	b.Helper()
	st := openStore(b, "", opts)
	mb := servicetest.Bus(b)
	return room.New(st, mb, logging.Discard(), ropts), st, mb
}

// BenchmarkConsume applies sensor.data.received bodies of 500 readings to the
// service's consumer and its SQLite store, one transaction each: the target is
// ≥200,000 readings/s. With estimate=on the occupancy estimate runs as in
// production, every PublishInterval (250 ms) beside the consumer, and once more
// at the end, inside the timing; estimate=off is the service without it.
func BenchmarkConsume(b *testing.B) {
	for _, mode := range []string{"FULL", "NORMAL"} {
		for _, est := range []bool{false, true} {
			b.Run(fmt.Sprintf("synchronous=%s/estimate=%s", mode, map[bool]string{false: "off", true: "on"}[est]), func(b *testing.B) {
				svc, _, _ := benchServiceWith(b, sqlitestore.Options{Settings: sqlitex.Settings{Synchronous: mode}}, room.Options{NoEstimate: !est})
				base := time.Now().Add(-24 * time.Hour).Truncate(time.Hour)
				bodies := make([][]byte, b.N)
				for i := range bodies {
					bodies[i] = benchEvent(i, base)
				}
				ctx, cancel := context.WithCancel(context.Background())
				defer cancel()
				var wg sync.WaitGroup
				b.ResetTimer()
				start := time.Now()
				cpu0 := testenv.ProcessCPU(b)
				if est {
					wg.Add(1)
					go func() {
						defer wg.Done()
						tick := time.NewTicker(250 * time.Millisecond)
						defer tick.Stop()
						for {
							select {
							case <-ctx.Done():
								return
							case <-tick.C:
								if err := svc.Estimate(ctx); err != nil && ctx.Err() == nil {
									b.Error(err)
								}
							}
						}
					}()
				}
				for i := range b.N {
					if err := svc.Consume(ctx, bus.Message{ID: fmt.Sprint(i), Subject: bus.SensorDataReceived, Body: bodies[i]}); err != nil {
						b.Fatal(err)
					}
				}
				cancel()
				wg.Wait()
				if err := svc.Estimate(context.Background()); err != nil {
					b.Fatal(err)
				}
				b.ReportMetric(float64(b.N*500)/time.Since(start).Seconds(), "readings/s")
				// CPU time of the process per reading: steadier than the rate
				// when other programs load the machine.
				b.ReportMetric(float64((testenv.ProcessCPU(b)-cpu0).Nanoseconds())/float64(b.N*500), "cpu-ns/reading")
			})
		}
	}
}

// fillRooms gives 50 rooms five types of four sensors each, with a reading every
// 10 s for the last 10 minutes.
func fillRooms(b *testing.B, svc *room.Service, now time.Time) {
	b.Helper()
	for r := range 50 {
		rs := make([]reading.Reading, 0, 20*60)
		for s := range 20 {
			for k := range 60 {
				rs = append(rs, reading.Reading{SensorID: fmt.Sprintf("r%d-s%d", r, s), RoomID: fmt.Sprintf("room-%02d", r), Type: benchTypes[s%5],
					Value: float64(400 + (r+s+k)%300), Timestamp: now.Add(-time.Duration(k) * 10 * time.Second)})
			}
		}
		consumeReadings(b, svc, fmt.Sprintf("fill-%d", r), rs)
	}
}

func percentile(d []time.Duration, p float64) time.Duration {
	if len(d) == 0 {
		return 0
	}
	slices.Sort(d)
	return d[min(len(d)-1, int(float64(len(d))*p))]
}

// BenchmarkMetricsHTTP sends GET /rooms/{id}/metrics over loopback HTTP at a fixed
// 2,000 requests/s (open loop: latency counts from each request's scheduled
// time) and reports p50 and p99; the target is p99 ≤ 2 ms. Run it with
// -benchtime=10000x (5 s).
func BenchmarkMetricsHTTP(b *testing.B) {
	const rate = 2000
	svc, _, _ := benchService(b, sqlitestore.Options{})
	fillRooms(b, svc, time.Now())
	url := servicetest.Serve(b, svc.Handler())
	const workers = 32
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: workers, MaxConnsPerHost: workers}}
	// Warm the connections and the store's caches.
	for i := range 200 {
		resp, err := client.Get(fmt.Sprintf("%s/rooms/room-%02d/metrics", url, i%50))
		if err != nil {
			b.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	lat := make([]time.Duration, b.N)
	jobs := make(chan int, b.N)
	var wg sync.WaitGroup
	var failed sync.Once
	var failure error
	b.ResetTimer()
	start := time.Now()
	cpu0 := testenv.ProcessCPU(b)
	for range workers {
		wg.Go(func() {
			for i := range jobs {
				due := start.Add(time.Duration(i) * time.Second / rate)
				if d := time.Until(due); d > 0 {
					time.Sleep(d)
				}
				resp, err := client.Get(fmt.Sprintf("%s/rooms/room-%02d/metrics", url, i%50))
				if err == nil {
					_, _ = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					if resp.StatusCode != 200 {
						err = fmt.Errorf("status %d", resp.StatusCode)
					}
				}
				if err != nil {
					failed.Do(func() { failure = err })
				}
				lat[i] = time.Since(due)
			}
		})
	}
	for i := range b.N {
		jobs <- i
	}
	close(jobs)
	wg.Wait()
	elapsed := time.Since(start)
	b.StopTimer()
	if failure != nil {
		b.Fatal(failure)
	}
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "req/s")
	// CPU time of the whole process (server and client) per request: less
	// sensitive than the tail latency to other load on the machine.
	b.ReportMetric(float64((testenv.ProcessCPU(b)-cpu0).Microseconds())/float64(b.N), "cpu-µs/req")
	b.ReportMetric(float64(percentile(lat, 0.50).Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(percentile(lat, 0.99).Microseconds())/1000, "p99-ms")
}

// BenchmarkHistory30Days asks GET /rooms/{id}/history over 30 days of minute
// rollups (a reading every 20 s) for each bucket size, one request at a time
// over loopback HTTP, and reports p50 and p99; the target is p99 ≤ 20 ms.
func BenchmarkHistory30Days(b *testing.B) {
	svc, _, _ := benchService(b, sqlitestore.Options{Settings: sqlitex.Settings{Synchronous: "NORMAL"}})
	end := time.Now().UTC().Truncate(24 * time.Hour)
	begin := end.Add(-30 * 24 * time.Hour)
	for day := range 30 {
		rs := make([]reading.Reading, 0, 3*1440)
		for k := range 3 * 1440 {
			rs = append(rs, reading.Reading{SensorID: fmt.Sprintf("s%d", k%3), RoomID: "hall", Type: "temperature",
				Value: float64(18 + k%9), Timestamp: begin.Add(time.Duration(day)*24*time.Hour + time.Duration(k)*20*time.Second)})
		}
		consumeReadings(b, svc, fmt.Sprintf("day-%d", day), rs)
	}
	base := servicetest.Serve(b, svc.Handler())
	for _, bucket := range []string{"1m", "5m", "15m", "1h", "1d"} {
		b.Run("bucket="+bucket, func(b *testing.B) {
			url := fmt.Sprintf("%s/rooms/hall/history?type=temperature&bucket=%s&limit=1000&from=%s&to=%s",
				base, bucket, begin.Format(time.RFC3339), end.Format(time.RFC3339))
			lat := make([]time.Duration, 0, b.N)
			var size int64
			for range b.N {
				t0 := time.Now()
				resp, err := http.Get(url)
				if err != nil {
					b.Fatal(err)
				}
				size, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 200 {
					b.Fatalf("status %d", resp.StatusCode)
				}
				lat = append(lat, time.Since(t0))
			}
			b.ReportMetric(float64(percentile(lat, 0.50).Microseconds())/1000, "p50-ms")
			b.ReportMetric(float64(percentile(lat, 0.99).Microseconds())/1000, "p99-ms")
			b.ReportMetric(float64(size), "bytes/resp")
		})
	}
}
