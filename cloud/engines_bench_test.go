// BenchmarkEngines measures the storage engines side by side, each in the
// role it plays: the sensor service's readings store (SQLite, or MongoDB through
// a wire-compatible server) and the analytics service's copy of the readings
// (SQLite, or ClickHouse). Every engine gets the same fixture in one run. It lives
// here, where the services are wired together, because it uses several of them.

package cloud_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/atrium-iot/atrium/internal/mongox"
	"github.com/atrium-iot/atrium/internal/mongox/mongotest"
	"github.com/atrium-iot/atrium/internal/reading"
	"github.com/atrium-iot/atrium/services/analytics"
	"github.com/atrium-iot/atrium/services/analytics/clickhousestore"
	"github.com/atrium-iot/atrium/services/analytics/clickhousestore/chtest"
	analyticssqlite "github.com/atrium-iot/atrium/services/analytics/sqlitestore"
	"github.com/atrium-iot/atrium/services/sensor"
	"github.com/atrium-iot/atrium/services/sensor/mongostore"
	sensorsqlite "github.com/atrium-iot/atrium/services/sensor/sqlitestore"
)

// The fixture: 50 rooms × 2 sensors, each reporting three types at the same
// instants, spread evenly over the 30 days before the run. The readings are
// ingested in batches of 500 by four callers, each sending the batches of its
// own quarter of the sensors in time order (like four agents, or one agent with
// four batches in flight, never two sharing a sensor).
const (
	fxRooms          = 50
	fxSensorsPerRoom = 2
	fxSensors        = fxRooms * fxSensorsPerRoom
	fxSpan           = 30 * 24 * time.Hour
	fxBatch          = 500
	fxCallers        = 4 // the agent's default of batches in flight
	// fxQueries is how many queries one op of a query benchmark runs; the
	// percentiles are over those.
	fxQueries = 200
)

var fxTypes = []struct{ typ, unit string }{{"temperature", "Cel"}, {"humidity", "%RH"}, {"co2", "ppm"}}

// enginesN is the fixture's size: ATRIUM_BENCH_ENGINES_N readings, 3,000 by
// default, which the MongoDB adapter on FerretDB 1.24 loads in 15–35 s on two
// cores (docs/benchmarks.md has a larger run, and why FerretDB gets no larger).
func enginesN(tb testing.TB) int {
	tb.Helper()
	s := os.Getenv("ATRIUM_BENCH_ENGINES_N")
	if s == "" {
		return 3_000
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < fxSensors*len(fxTypes) {
		tb.Fatalf("ATRIUM_BENCH_ENGINES_N=%q: want a number of at least %d", s, fxSensors*len(fxTypes))
	}
	return n
}

// fixture describes the readings: every sensor reports every type at the
// instants start + i·step, i < per.
type fixture struct {
	n          int // readings: per × sensors × types
	per        int // instants per series
	start, end time.Time
	step       time.Duration
}

// newFixture is the fixture of about n readings before end, the last of them a
// minute (or a step, if shorter) before end.
func newFixture(n int, end time.Time) fixture {
	per := n / (fxSensors * len(fxTypes))
	step := (fxSpan / time.Duration(per)).Truncate(time.Second)
	start := end.Add(-min(step, time.Minute) - time.Duration(per-1)*step)
	return fixture{n: per * fxSensors * len(fxTypes), per: per, start: start, end: end, step: step}
}

func fxSensorID(i int) string { return fmt.Sprintf("sensor-%03d", i) }
func fxRoomID(r int) string   { return fmt.Sprintf("room-%02d", r) }

// batches calls fn with the batches of one caller's sensors (those whose index
// modulo fxCallers is caller), in time order, fxBatch readings each but the last.
func (f fixture) batches(caller int, fn func(id string, rs []reading.Reading) error) error {
	var ids, rooms []string
	for s := caller; s < fxSensors; s += fxCallers {
		ids = append(ids, fxSensorID(s))
		rooms = append(rooms, fxRoomID(s/fxSensorsPerRoom))
	}
	rs := make([]reading.Reading, 0, fxBatch)
	k := 0
	flush := func() error {
		err := fn(fmt.Sprintf("engines-%d-%d", caller, k), rs)
		k++
		rs = make([]reading.Reading, 0, fxBatch)
		return err
	}
	for i := range f.per {
		ts := f.start.Add(time.Duration(i) * f.step)
		for s, id := range ids {
			for j, t := range fxTypes {
				v := 20 + float64((i+s+j)%9)*0.5
				switch t.typ {
				case "humidity":
					v = 35 + float64((i+s)%20)
				case "co2":
					v = 450 + float64((i*7+s)%900)
				}
				rs = append(rs, reading.Reading{SensorID: id, RoomID: rooms[s], Site: "hq", Type: t.typ, Value: v, Unit: t.unit, Timestamp: ts})
				if len(rs) == fxBatch {
					if err := flush(); err != nil {
						return err
					}
				}
			}
		}
	}
	if len(rs) > 0 {
		return flush()
	}
	return nil
}

// instants counts the fixture's instants in [from, to).
func (f fixture) instants(from, to time.Time) int {
	n := 0
	for i := range f.per {
		if ts := f.start.Add(time.Duration(i) * f.step); !ts.Before(from) && ts.Before(to) {
			n++
		}
	}
	return n
}

// hourlyRange is the range of the 30-day hourly queries: 30 days of whole hours,
// the last one the hour of the last reading.
func (f fixture) hourlyRange() (from, to time.Time) {
	to = f.end.Truncate(time.Hour).Add(time.Hour)
	return to.Add(-fxSpan), to
}

// store is an opened store of one engine in one role: how to ingest a batch, the
// queries it answers, and how to close it and drop its data.
type store struct {
	ingest func(ctx context.Context, id string, rs []reading.Reading) error
	ops    []queryOp
	close  func() error
}

// queryOp is one history query; run picks its parameters with r and returns how
// many readings the answer covers and how many the fixture says it must.
type queryOp struct {
	name string
	run  func(ctx context.Context, f fixture, r *rand.Rand) (got, want int, err error)
}

// engine is a storage engine in one role. setup gates on the engine's server
// (skipping tb without it, failing it when ATRIUM_REQUIRE_INTEGRATION=1) and
// returns a function that opens a fresh, empty store each call; everything it
// opens is dropped when tb ends at the latest.
type engine struct {
	name  string
	setup func(tb testing.TB) func(ctx context.Context) (*store, error)
}

var engines = []engine{
	{"sensor-sqlite", onSQLite("sensor", sensorsqlite.Open, sensorStore[*sensorsqlite.Store])},
	{"sensor-mongo", func(tb testing.TB) func(context.Context) (*store, error) {
		u := mongotest.URL(tb)
		c := mongotest.Client(tb)
		return func(ctx context.Context) (*store, error) {
			db := mongotest.Prefix() + "sensor_engines"
			drop := sync.OnceValue(func() error {
				ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
				defer cancel()
				return mongox.DropDatabases(ctx, c, db)
			})
			tb.Cleanup(func() { _ = drop() })
			// A batch's lease only matters when a process dies mid-batch; on a
			// slow server, a longer one than the default 15 s lets a slow batch
			// be measured instead of failing with a timeout.
			st, err := mongostore.Open(ctx, u, mongostore.Options{Database: db, Lease: 5 * time.Minute})
			if err != nil {
				return nil, errors.Join(err, drop())
			}
			s := sensorStore(st, func() error { return errors.Join(st.Close(), drop()) })
			s.ops = append(s.ops, queryOp{"hourly30d", mongoHourly(st)})
			return s, nil
		}
	}},
	{"analytics-sqlite", onSQLite("analytics", analyticssqlite.Open, analyticsStore[*analyticssqlite.Store])},
	{"analytics-clickhouse", func(tb testing.TB) func(context.Context) (*store, error) {
		base := chtest.URL(tb)
		return func(ctx context.Context) (*store, error) {
			u, err := url.Parse(base)
			if err != nil {
				return nil, err
			}
			u.Path = "/" + mongotest.Prefix() + "analytics_engines"
			st, err := clickhousestore.Open(ctx, u.String(), clickhousestore.Options{})
			if err != nil {
				return nil, err
			}
			closeDrop := sync.OnceValue(func() error {
				ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
				defer cancel()
				return errors.Join(st.DropDatabase(ctx), st.Close())
			})
			tb.Cleanup(func() { _ = closeDrop() })
			return analyticsStore(st, closeDrop), nil
		}
	}},
}

// onSQLite is the setup of an engine on SQLite: each store is opened by open,
// with the zero options, on a new file named after name in the test's
// temporary directory, and made a store by wrap, closed by its Close.
func onSQLite[S interface{ Close() error }, O any](name string, open func(ctx context.Context, path string, opts O) (S, error), wrap func(S, func() error) *store) func(testing.TB) func(context.Context) (*store, error) {
	return func(tb testing.TB) func(context.Context) (*store, error) {
		dir := tb.TempDir()
		seq := 0
		return func(ctx context.Context) (*store, error) {
			seq++
			var opts O
			st, err := open(ctx, filepath.Join(dir, fmt.Sprintf("%s-%d.db", name, seq)), opts)
			if err != nil {
				return nil, err
			}
			return wrap(st, st.Close), nil
		}
	}
}

// sensorStore is a sensor store: Ingest of whole batches, and the raw history
// GET /sensors/{id}/data answers: one sensor's readings of one type over the
// last 24 h, a page of at most 1,000, oldest first.
func sensorStore[S sensor.Store](st S, closeFn func() error) *store {
	return &store{
		ingest: func(ctx context.Context, id string, rs []reading.Reading) error {
			out, err := st.Ingest(ctx, sensor.Batch{ID: id, Site: "hq", Readings: rs, ReceivedAt: rs[len(rs)-1].Timestamp.Add(time.Second)})
			if err != nil {
				return err
			}
			if out.Result.Accepted != len(rs) {
				return fmt.Errorf("batch %s: %d of %d readings accepted", id, out.Result.Accepted, len(rs))
			}
			return nil
		},
		ops: []queryOp{{"raw24h", func(ctx context.Context, f fixture, r *rand.Rand) (int, int, error) {
			q := sensor.ReadingQuery{SensorID: fxSensorID(r.IntN(fxSensors)), Type: fxTypes[r.IntN(len(fxTypes))].typ,
				From: f.end.Add(-24 * time.Hour), Limit: 1000}
			rs, _, err := st.Readings(ctx, q)
			return len(rs), min(1000, f.instants(q.From, f.end)), err
		}}},
		close: closeFn,
	}
}

// mongoHourly is the sensor MongoDB store's hourly history of one room's type
// over 30 days: the rollups_1h buckets of the room's sensors, merged per hour,
// as a room's series of the analytics store is.
func mongoHourly(st *mongostore.Store) func(context.Context, fixture, *rand.Rand) (int, int, error) {
	return func(ctx context.Context, f fixture, r *rand.Rand) (int, int, error) {
		room, typ := r.IntN(fxRooms), fxTypes[r.IntN(len(fxTypes))].typ
		from, to := f.hourlyRange()
		type agg struct {
			n        int64
			sum      float64
			min, max float64
		}
		hours := map[time.Time]agg{}
		for s := room * fxSensorsPerRoom; s < (room+1)*fxSensorsPerRoom; s++ {
			ro, err := st.Rollups(ctx, fxSensorID(s), typ, from, to)
			if err != nil {
				return 0, 0, err
			}
			for _, b := range ro {
				a, ok := hours[b.Hour]
				if !ok {
					a.min, a.max = b.Min, b.Max
				}
				a.n += b.Count
				a.sum += b.Sum
				a.min, a.max = min(a.min, b.Min), max(a.max, b.Max)
				hours[b.Hour] = a
			}
		}
		got := 0
		for _, a := range hours {
			got += int(a.n)
		}
		return got, fxSensorsPerRoom * f.instants(from, to), nil
	}
}

// analyticsStore is an analytics store: AddReadings of whole batches, and the
// hourly series of one room's type over 30 days that trends and history answer.
func analyticsStore[S analytics.Store](st S, closeFn func() error) *store {
	return &store{
		ingest: func(ctx context.Context, id string, rs []reading.Reading) error {
			n, err := st.AddReadings(ctx, rs)
			if err != nil {
				return err
			}
			if n != len(rs) {
				return fmt.Errorf("batch %s: %d of %d readings added", id, n, len(rs))
			}
			return nil
		},
		ops: []queryOp{{"hourly30d", func(ctx context.Context, f fixture, r *rand.Rand) (int, int, error) {
			from, to := f.hourlyRange()
			q := analytics.SeriesQuery{RoomID: fxRoomID(r.IntN(fxRooms)), Type: fxTypes[r.IntN(len(fxTypes))].typ, From: from, To: to, Bucket: time.Hour}
			bs, err := st.Series(ctx, q)
			got := 0
			for _, b := range bs {
				got += int(b.Count)
			}
			return got, fxSensorsPerRoom * f.instants(from, to), err
		}}},
		close: closeFn,
	}
}

// load ingests the whole fixture into s from fxCallers concurrent callers.
func load(ctx context.Context, s *store, f fixture) error {
	g, ctx := errgroup.WithContext(ctx)
	for c := range fxCallers {
		g.Go(func() error {
			return f.batches(c, func(id string, rs []reading.Reading) error { return s.ingest(ctx, id, rs) })
		})
	}
	return g.Wait()
}

// measure runs count queries of op one after the other, checking every answer
// against the fixture, and returns their latencies, sorted. The seed makes every
// engine answer the same queries.
func measure(ctx context.Context, op queryOp, f fixture, count int) ([]time.Duration, error) {
	r := rand.New(rand.NewPCG(7, uint64(len(op.name))))
	lat := make([]time.Duration, 0, count)
	for range count {
		t0 := time.Now()
		got, want, err := op.run(ctx, f, r)
		lat = append(lat, time.Since(t0))
		if err != nil {
			return nil, fmt.Errorf("%s: %w", op.name, err)
		}
		if got != want || want == 0 {
			return nil, fmt.Errorf("%s: answer covers %d readings, the fixture has %d", op.name, got, want)
		}
	}
	slices.Sort(lat)
	return lat, nil
}

func percentile(sorted []time.Duration, p float64) time.Duration {
	return sorted[min(len(sorted)-1, int(float64(len(sorted))*p))]
}

// BenchmarkEngines loads one fixture of ATRIUM_BENCH_ENGINES_N readings (3,000
// by default) into every engine, through each store's own ingest method, then
// runs each engine's history queries on it. Sub-benchmarks:
//
//	engine=E/op=ingest     one op = the whole fixture into a fresh store; readings/s
//	engine=E/op=raw24h     sensor stores: one op = 200 pages of one sensor's type, last 24 h, limit 1,000
//	engine=E/op=hourly30d  one op = 200 hourly series of one room's type over 30 days
//
// The query ops report p50-ms and p99-ms over their 200 queries. Run with
// -benchtime 1x (one load per engine per -count) and the engines' URLs
// (ATRIUM_TEST_MONGODB_URL, ATRIUM_TEST_CLICKHOUSE_URL); an engine without its
// URL is skipped, or fails the run when ATRIUM_REQUIRE_INTEGRATION=1.
func BenchmarkEngines(b *testing.B) {
	f := newFixture(enginesN(b), time.Now().UTC().Truncate(time.Minute))
	b.Logf("fixture: %d readings, %d rooms, %d sensors × %d types, one instant every %s over 30 days",
		f.n, fxRooms, fxSensors, len(fxTypes), f.step)
	for _, e := range engines {
		b.Run("engine="+e.name, func(b *testing.B) {
			open := e.setup(b)
			var cur *store
			b.Cleanup(func() {
				if cur != nil {
					if err := cur.close(); err != nil {
						b.Errorf("close %s: %v", e.name, err)
					}
				}
			})
			// fresh replaces the current store with a new one holding the fixture,
			// and returns how long the load took.
			fresh := func(ctx context.Context) (time.Duration, error) {
				if cur != nil {
					err := cur.close()
					cur = nil
					if err != nil {
						return 0, err
					}
				}
				s, err := open(context.Background())
				if err != nil {
					return 0, err
				}
				cur = s
				t0 := time.Now()
				err = load(ctx, s, f)
				return time.Since(t0), err
			}
			ok := b.Run("op=ingest", func(b *testing.B) {
				var took time.Duration
				for range b.N {
					b.StopTimer()
					if cur != nil {
						if err := cur.close(); err != nil {
							b.Fatal(err)
						}
						cur = nil
					}
					b.StartTimer()
					d, err := fresh(b.Context())
					if err != nil {
						b.Fatal(err)
					}
					took += d
				}
				b.ReportMetric(float64(f.n*b.N)/took.Seconds(), "readings/s")
			})
			if !ok {
				return
			}
			if cur == nil { // the ingest op was filtered out
				if _, err := fresh(context.Background()); err != nil {
					b.Fatal(err)
				}
			}
			for _, op := range cur.ops {
				b.Run("op="+op.name, func(b *testing.B) {
					var all []time.Duration
					for range b.N {
						lat, err := measure(b.Context(), op, f, fxQueries)
						if err != nil {
							b.Fatal(err)
						}
						all = append(all, lat...)
					}
					slices.Sort(all)
					b.ReportMetric(float64(percentile(all, 0.50).Microseconds())/1000, "p50-ms")
					b.ReportMetric(float64(percentile(all, 0.99).Microseconds())/1000, "p99-ms")
				})
			}
		})
	}
}

// TestEngines runs what BenchmarkEngines measures on a small fixture, so the
// benchmark's loading and checks stay correct: every engine must store all of it
// and answer every query with exactly the fixture's readings.
func TestEngines(t *testing.T) {
	f := newFixture(1_200, time.Now().UTC().Truncate(time.Minute))
	for _, e := range engines {
		t.Run(e.name, func(t *testing.T) {
			s, err := e.setup(t)(t.Context())
			if err != nil {
				t.Fatal(err)
			}
			defer func() {
				if err := s.close(); err != nil {
					t.Errorf("close: %v", err)
				}
			}()
			if err := load(t.Context(), s, f); err != nil {
				t.Fatal(err)
			}
			for _, op := range s.ops {
				t.Run(op.name, func(t *testing.T) {
					lat, err := measure(t.Context(), op, f, 10)
					if err != nil {
						t.Fatal(err)
					}
					if len(lat) != 10 {
						t.Fatalf("%d latencies, want 10", len(lat))
					}
				})
			}
		})
	}
}

// TestFixture checks the fixture itself: the callers' batches hold every reading
// once, no sensor is sent by two callers, and the query ranges see readings.
func TestFixture(t *testing.T) {
	tests := []struct {
		n, want int
	}{
		{300, 300},
		{1_200, 1_200},
		{3_000, 3_000},
		{200_000, 199_800},
	}
	for _, tc := range tests {
		t.Run(strconv.Itoa(tc.n), func(t *testing.T) {
			end := time.Date(2026, 3, 1, 12, 34, 0, 0, time.UTC)
			f := newFixture(tc.n, end)
			if f.n != tc.want {
				t.Fatalf("n = %d, want %d", f.n, tc.want)
			}
			type key struct {
				sensor, typ string
				ts          time.Time
			}
			seen := map[key]bool{}
			owner := map[string]int{}
			for c := range fxCallers {
				err := f.batches(c, func(id string, rs []reading.Reading) error {
					if len(rs) == 0 || len(rs) > fxBatch {
						return fmt.Errorf("batch %s of %d readings", id, len(rs))
					}
					for _, r := range rs {
						k := key{r.SensorID, r.Type, r.Timestamp}
						if seen[k] {
							return fmt.Errorf("reading %v twice", k)
						}
						seen[k] = true
						if o, ok := owner[r.SensorID]; ok && o != c {
							return fmt.Errorf("sensor %s sent by callers %d and %d", r.SensorID, o, c)
						}
						owner[r.SensorID] = c
						if r.Timestamp.Before(end.Add(-fxSpan)) || !r.Timestamp.Before(end) {
							return fmt.Errorf("reading at %s, outside the 30 days before %s", r.Timestamp, end)
						}
					}
					return nil
				})
				if err != nil {
					t.Fatal(err)
				}
			}
			if len(seen) != f.n || len(owner) != fxSensors {
				t.Fatalf("%d readings of %d sensors, want %d of %d", len(seen), len(owner), f.n, fxSensors)
			}
			if got := f.instants(f.start, f.end); got != f.per {
				t.Fatalf("instants over the whole fixture = %d, want %d", got, f.per)
			}
			if got := f.instants(end.Add(-24*time.Hour), end); got < 1 {
				t.Fatalf("%d instants in the last 24 h, want at least 1", got)
			}
			from, to := f.hourlyRange()
			if to.Sub(from) != fxSpan || to.Before(end) || from.Minute() != 0 {
				t.Fatalf("hourly range [%s, %s)", from, to)
			}
		})
	}
}
