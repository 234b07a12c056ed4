package analytics_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"testing"
	"time"

	"github.com/atrium-iot/atrium/internal/bus"
	"github.com/atrium-iot/atrium/internal/events"
	"github.com/atrium-iot/atrium/internal/logging"
	"github.com/atrium-iot/atrium/internal/reading"
	"github.com/atrium-iot/atrium/internal/servicetest"
	"github.com/atrium-iot/atrium/services/analytics"
)

// Benchmark fixture: 50 rooms × (temperature, humidity, co2), one sensor each,
// spread evenly over the 30 days before the fixture was made. 1M readings, or 10M
// with ATRIUM_BENCH_BIG=1.
const (
	benchRooms = 50
	benchSpan  = 30 * 24 * time.Hour
)

var benchTypes = []string{"temperature", "humidity", "co2"}

func benchSize() int {
	if os.Getenv("ATRIUM_BENCH_BIG") == "1" {
		return 10_000_000
	}
	return 1_000_000
}

// benchReadings calls fn with the fixture's readings in time order, batch by batch.
func benchReadings(end time.Time, n, batch int, fn func([]reading.Reading) error) error {
	sensors := benchRooms * len(benchTypes)
	per := n / sensors
	step := benchSpan / time.Duration(per)
	start := end.Add(-benchSpan)
	buf := make([]reading.Reading, 0, batch)
	for i := range per {
		ts := start.Add(time.Duration(i) * step)
		for s := range sensors {
			room, typ := s/len(benchTypes), benchTypes[s%len(benchTypes)]
			v := 21 + float64((i+s)%7)*0.5
			switch typ {
			case "humidity":
				v = 40 + float64((i+s)%11)
			case "co2":
				v = 600 + float64((i*7+s)%900)
			}
			buf = append(buf, reading.Reading{SensorID: fmt.Sprintf("b-%s-%02d", typ, room), RoomID: fmt.Sprintf("room-%02d", room), Type: typ, Value: v, Timestamp: ts})
			if len(buf) == batch {
				if err := fn(buf); err != nil {
					return err
				}
				buf = buf[:0]
			}
		}
	}
	if len(buf) > 0 {
		return fn(buf)
	}
	return nil
}

func percentile(ds []time.Duration, p float64) time.Duration {
	sort.Slice(ds, func(i, j int) bool { return ds[i] < ds[j] })
	return ds[min(len(ds)-1, int(float64(len(ds))*p))]
}

// timeEach calls op once per benchmark iteration, one call every every (0: back to
// back; the wait is not timed), and reports the p50 and p99 of the calls. An error
// fails the benchmark.
func timeEach(b *testing.B, every time.Duration, op func() error) {
	b.Helper()
	var tick <-chan time.Time
	if every > 0 {
		t := time.NewTicker(every)
		defer t.Stop()
		tick = t.C
	}
	var lat []time.Duration
	for b.Loop() {
		if tick != nil {
			<-tick
		}
		t0 := time.Now()
		if err := op(); err != nil {
			b.Fatal(err)
		}
		lat = append(lat, time.Since(t0))
	}
	b.ReportMetric(float64(percentile(lat, 0.50))/1e6, "p50-ms")
	b.ReportMetric(float64(percentile(lat, 0.99))/1e6, "p99-ms")
}

// BenchmarkAnalytics loads the fixture into each engine (AddReadings in batches of
// 20,000; the load rate is logged), then measures the dashboard summary (computed
// every time, no cache; and as served with the default cache), the store's part
// of it, and a 30-day hourly trend of one room; p50/p99 in ms.
func BenchmarkAnalytics(b *testing.B) {
	for _, e := range engines(b) {
		b.Run(e.name, func(b *testing.B) {
			st := e.open(b, filepath.Join(b.TempDir(), "fixture"))
			defer st.Close()
			end := time.Now().UTC()
			n := benchSize()
			start := time.Now()
			if err := benchReadings(end, n, 20000, func(rs []reading.Reading) error {
				_, err := st.AddReadings(context.Background(), rs)
				return err
			}); err != nil {
				b.Fatal(err)
			}
			load := time.Since(start)
			b.Logf("%s: loaded %d readings in %s: %.0f readings/s", e.name, n, load.Round(time.Millisecond), float64(n)/load.Seconds())
			mb := servicetest.Bus(b)
			sens := sensorRegistry(b, nil)
			svc := analytics.New(st, mb, logging.Discard(), analytics.Options{SensorURL: sens.URL, SummaryTTL: -1})

			b.Run("summary", func(b *testing.B) {
				timeEach(b, 0, func() error {
					_, err := svc.Summary(context.Background())
					return err
				})
			})
			// The summary as the endpoint serves it with the default options: fresh
			// for 1 s, then served stale while the next is computed behind (a
			// dashboard polling it never waits for the store). Requests every 2 ms.
			b.Run("summary-served", func(b *testing.B) {
				served := analytics.New(st, mb, logging.Discard(), analytics.Options{SensorURL: sens.URL})
				timeEach(b, 2*time.Millisecond, func() error {
					_, err := served.Summary(context.Background())
					return err
				})
			})
			// The store's part of the summary, in one call and as the six separate
			// queries the summary made before, alternately in the same loop (so
			// both see the same machine load): p50/p99 of each.
			b.Run("figures", func(b *testing.B) {
				ctx := context.Background()
				one := func() error {
					_, err := st.SummaryFigures(ctx, time.Now())
					return err
				}
				six := func() error {
					hourAgo, dayAgo, end := analytics.SummaryWindow(time.Now())
					_, err1 := st.CountReadings(ctx, hourAgo, end)
					_, err2 := st.CountReadings(ctx, dayAgo, end)
					_, err3 := st.TypeStats(ctx, hourAgo, end)
					_, err4 := st.Rooms(ctx)
					_, err5 := st.Latest(ctx, hourAgo)
					_, err6 := st.ActiveAlerts(ctx)
					return errors.Join(err1, err2, err3, err4, err5, err6)
				}
				var lat [2][]time.Duration
				i := 0
				for b.Loop() {
					for k := range 2 {
						which := (i + k) % 2 // alternate which goes first
						f := one
						if which == 1 {
							f = six
						}
						t0 := time.Now()
						if err := f(); err != nil {
							b.Fatal(err)
						}
						lat[which] = append(lat[which], time.Since(t0))
					}
					i++
				}
				for which, name := range []string{"one", "six"} {
					b.ReportMetric(float64(percentile(lat[which], 0.50).Microseconds())/1000, name+"-p50-ms")
					b.ReportMetric(float64(percentile(lat[which], 0.99).Microseconds())/1000, name+"-p99-ms")
				}
			})
			b.Run("trend30d", func(b *testing.B) {
				to := end.Truncate(time.Hour).Add(time.Hour)
				q := analytics.SeriesQuery{RoomID: "room-07", Type: "temperature", From: to.Add(-benchSpan), To: to, Bucket: time.Hour}
				timeEach(b, 0, func() error {
					tr, err := svc.Trend(context.Background(), q)
					if err == nil && len(tr.Buckets) < 700 {
						err = fmt.Errorf("%d buckets, want at least 700", len(tr.Buckets))
					}
					return err
				})
			})
		})
	}
}

// BenchmarkIngestFromBus publishes sensor.data.received events of 1,000 readings
// on the in-process bus and waits until the service has stored them all; one op
// is one event. readings/s counts from the first publish to the last store.
func BenchmarkIngestFromBus(b *testing.B) {
	for _, e := range engines(b) {
		b.Run(e.name, func(b *testing.B) {
			st := e.open(b, filepath.Join(b.TempDir(), fmt.Sprintf("ingest%d", time.Now().UnixNano())))
			b.Cleanup(func() { st.Close() }) // after the service stops
			mb := servicetest.Bus(b)
			startRig(b, st, mb, analytics.Options{SensorURL: "http://127.0.0.1:1"})
			ctx := b.Context()
			// Events prepared beforehand: the sensor service's encoding of 1,000 readings.
			const per = 1000
			base := time.Now().Add(-time.Hour).Truncate(time.Millisecond)
			bodies := make([][]byte, 0, b.N)
			n := 0
			for i := 0; len(bodies) < b.N; i++ {
				rs := make([]reading.Reading, per)
				for j := range rs {
					k := n + j
					rs[j] = reading.Reading{SensorID: fmt.Sprintf("s%03d", k%500), RoomID: fmt.Sprintf("room-%02d", k%500/10), Type: "temperature", Value: 20 + float64(k%50)/10, Timestamp: base.Add(time.Duration(k/500) * time.Millisecond)}
				}
				n += per
				bodies = append(bodies, events.EncodeSensorData(fmt.Sprintf("b%d", i), "hq", rs))
			}
			b.ResetTimer()
			start := time.Now()
			for _, ev := range bodies {
				if err := mb.Publish(ctx, bus.SensorDataReceived, ev); err != nil {
					b.Fatal(err)
				}
			}
			want := int64(n)
			for {
				got, err := st.CountReadings(ctx, base.Add(-time.Hour), base.Add(24*time.Hour))
				if err != nil {
					b.Fatal(err)
				}
				if got >= want {
					break
				}
				time.Sleep(2 * time.Millisecond)
			}
			el := time.Since(start)
			b.ReportMetric(float64(n)/el.Seconds(), "readings/s")
		})
	}
}
