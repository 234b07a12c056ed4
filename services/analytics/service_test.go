package analytics_test

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/atrium-iot/atrium/internal/bus"
	"github.com/atrium-iot/atrium/internal/events"
	"github.com/atrium-iot/atrium/internal/httpx/httpxtest"
	"github.com/atrium-iot/atrium/internal/logging"
	"github.com/atrium-iot/atrium/internal/reading"
	"github.com/atrium-iot/atrium/internal/servicetest"
	"github.com/atrium-iot/atrium/internal/testenv"
	"github.com/atrium-iot/atrium/internal/testwait"
	"github.com/atrium-iot/atrium/services/analytics"
	"github.com/atrium-iot/atrium/services/analytics/clickhousestore"
	"github.com/atrium-iot/atrium/services/analytics/sqlitestore"
	"github.com/atrium-iot/atrium/services/analytics/storetest"
)

// engine opens an empty analytics store; the same path or database reopens it.
type engine struct {
	name string
	open func(t testing.TB, where string) analytics.Store
}

// engines are SQLite always and ClickHouse when ATRIUM_TEST_CLICKHOUSE_URL is set
// (required when ATRIUM_REQUIRE_INTEGRATION=1).
func engines(t testing.TB) []engine {
	es := []engine{{"sqlite", func(t testing.TB, where string) analytics.Store {
		s, err := sqlitestore.Open(context.Background(), where+".db", sqlitestore.Options{})
		if err != nil {
			t.Fatal(err)
		}
		return s
	}}}
	base := os.Getenv("ATRIUM_TEST_CLICKHOUSE_URL")
	if base == "" {
		if testenv.Required() {
			t.Fatal("ATRIUM_TEST_CLICKHOUSE_URL is not set and ATRIUM_REQUIRE_INTEGRATION=1")
		}
		return es
	}
	return append(es, engine{"clickhouse", func(t testing.TB, where string) analytics.Store {
		u, err := url.Parse(base)
		if err != nil {
			t.Fatal(err)
		}
		u.Path = fmt.Sprintf("/svc_%d_%s", time.Now().UnixNano()%1e9, filepath.Base(where))
		if existing, ok := chDBs[where]; ok {
			u.Path = existing
		}
		s, err := clickhousestore.Open(context.Background(), u.String(), clickhousestore.Options{})
		if err != nil {
			t.Fatal(err)
		}
		if _, ok := chDBs[where]; !ok {
			chDBs[where] = u.Path
			t.Cleanup(func() {
				d, err := clickhousestore.Open(context.Background(), u.String(), clickhousestore.Options{})
				if err == nil {
					_ = d.DropDatabase(context.Background())
					d.Close()
				}
			})
		}
		return s
	}})
}

var chDBs = map[string]string{}

// rig is an analytics service on a real listener, with its bus and store.
type rig struct {
	svc   *analytics.Service
	store analytics.Store
	bus   bus.Bus
	url   string
	stop  func()
}

func startRig(t testing.TB, st analytics.Store, b bus.Bus, opts analytics.Options) *rig {
	t.Helper()
	if opts.SummaryTTL == 0 {
		opts.SummaryTTL = -1
	}
	svc := analytics.New(st, b, logging.Discard(), opts)
	// Declare the service's queue now: the in-process bus drops what no queue is
	// bound to, and Run subscribes in the background.
	declared, undeclare := context.WithCancel(context.Background())
	undeclare()
	if err := b.Subscribe(declared, "analytics", []string{bus.SensorDataReceived, bus.AlertRaised, bus.AlertResolved}, nil); err != nil {
		t.Fatal(err)
	}
	run := servicetest.Start(t, svc)
	return &rig{svc: svc, store: st, bus: b, url: run.URL, stop: run.Stop}
}

func near(a, b float64) bool { return math.Abs(a-b) <= 1e-9*math.Max(1, math.Abs(b)) }

// publishReadings sends readings on the bus as the sensor service does.
func publishReadings(t *testing.T, b bus.Bus, batch string, rs []reading.Reading) {
	t.Helper()
	if err := b.Publish(t.Context(), bus.SensorDataReceived, events.EncodeSensorData(batch, "hq", rs)); err != nil {
		t.Fatal(err)
	}
}

func TestTrendStatistics(t *testing.T) {
	base := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
	h := func(i int) time.Time { return base.Add(time.Duration(i) * time.Hour) }
	t.Run("slope", func(t *testing.T) {
		var bs []analytics.Bucket
		for i := range 24 {
			bs = append(bs, analytics.Bucket{Start: h(i), Count: 1, Mean: 10 + 0.5*float64(i)})
		}
		slope, ok := analytics.SlopePerHour(bs)
		if !ok || !near(slope, 0.5) {
			t.Errorf("SlopePerHour = %v, %v; want 0.5", slope, ok)
		}
		if a := analytics.Anomalies(bs); len(a) != 0 {
			t.Errorf("Anomalies of a line = %+v, want none", a)
		}
	})
	t.Run("spike", func(t *testing.T) {
		var bs []analytics.Bucket
		for i := range 21 {
			v := 10.0
			if i == 7 {
				v = 40
			}
			bs = append(bs, analytics.Bucket{Start: h(i), Count: 1, Mean: v})
		}
		// One outlier among n equal values has z = √(n-1) = √20 ≈ 4.47; the others -1/√20.
		a := analytics.Anomalies(bs)
		if len(a) != 1 || !a[0].Start.Equal(h(7)) || !near(a[0].Z, math.Sqrt(20)) || a[0].Mean != 40 {
			t.Errorf("Anomalies = %+v, want one at %s with z √20", a, h(7))
		}
	})
	t.Run("too few buckets for |z| > 3", func(t *testing.T) {
		bs := []analytics.Bucket{{Start: h(0), Count: 1, Mean: 0}, {Start: h(1), Count: 1, Mean: 0}, {Start: h(2), Count: 1, Mean: 1000}}
		if a := analytics.Anomalies(bs); len(a) != 0 {
			t.Errorf("Anomalies = %+v, want none", a)
		}
	})
	t.Run("change", func(t *testing.T) {
		prev := []analytics.Bucket{{Start: h(0), Count: 2, Mean: 10}, {Start: h(1), Count: 2, Mean: 20}}
		cur := []analytics.Bucket{{Start: h(2), Count: 1, Mean: 30}, {Start: h(3), Count: 3, Mean: 10}}
		c := analytics.Compare(cur, prev)
		if c.PreviousMean == nil || *c.PreviousMean != 15 || c.Absolute == nil || *c.Absolute != 0 || c.Percent == nil || *c.Percent != 0 {
			t.Errorf("Compare = %+v, want previous 15, change 0", c)
		}
		c = analytics.Compare([]analytics.Bucket{{Start: h(2), Count: 1, Mean: 18}}, prev)
		if *c.Absolute != 3 || *c.Percent != 20 {
			t.Errorf("Compare = abs %v pct %v, want 3 and 20", *c.Absolute, *c.Percent)
		}
		if c := analytics.Compare(cur, nil); c.PreviousMean != nil || c.Absolute != nil {
			t.Errorf("Compare without a previous period = %+v, want nulls", c)
		}
	})
}

// TestTrendsEndpoint drives GET /analytics/trends over readings sent on the bus:
// 24 hourly buckets on a line of slope 0.5/h with one spike, after a previous day
// flat at 10.
func TestTrendsEndpoint(t *testing.T) {
	for _, e := range engines(t) {
		t.Run(e.name, func(t *testing.T) {
			b := servicetest.Bus(t)
			r := startRig(t, e.open(t, filepath.Join(t.TempDir(), "trend")), b, analytics.Options{SensorURL: "http://127.0.0.1:1"})
			day := time.Date(2026, 3, 2, 0, 0, 0, 0, time.UTC)
			var rs []reading.Reading
			for i := range 24 {
				// two readings per hour, 10 minutes apart, means on the line 10 + 0.5 i
				v := 10 + 0.5*float64(i)
				rs = append(rs,
					reading.Reading{SensorID: "t1", RoomID: "lab", Type: "temperature", Value: v - 1, Timestamp: day.Add(time.Duration(i)*time.Hour + 5*time.Minute)},
					reading.Reading{SensorID: "t1", RoomID: "lab", Type: "temperature", Value: v + 1, Timestamp: day.Add(time.Duration(i)*time.Hour + 15*time.Minute)})
				rs = append(rs, reading.Reading{SensorID: "t2", RoomID: "lab", Type: "temperature", Value: 10, Timestamp: day.Add(time.Duration(i-24)*time.Hour + 30*time.Minute)})
			}
			publishReadings(t, b, "b1", rs)
			publishReadings(t, b, "b1", rs) // redelivered: changes nothing
			testwait.For(t, "readings stored", func() bool {
				n, err := r.store.CountReadings(t.Context(), day.Add(-24*time.Hour), day.Add(24*time.Hour))
				return err == nil && n == int64(len(rs))
			})
			tr := httpxtest.GetOK[analytics.TrendAnswer](t, r.url+"/analytics/trends?type=temperature&room_id=lab&bucket=1h&from="+day.Format(time.RFC3339)+"&to="+day.Add(24*time.Hour).Format(time.RFC3339))
			if len(tr.Buckets) != 24 || tr.Count != 48 {
				t.Fatalf("%d buckets, %d readings; want 24 and 48", len(tr.Buckets), tr.Count)
			}
			// mean of the line over 24 hours: 10 + 0.5 * 11.5 = 15.75; previous day: 10
			if tr.SlopePerHour == nil || !near(*tr.SlopePerHour, 0.5) {
				t.Errorf("slope_per_hour = %v, want 0.5", tr.SlopePerHour)
			}
			if tr.Mean == nil || !near(*tr.Mean, 15.75) || tr.Change.Absolute == nil || !near(*tr.Change.Absolute, 5.75) || !near(*tr.Change.Percent, 57.5) {
				t.Errorf("mean %v change %+v, want 15.75, +5.75, +57.5 %%", tr.Mean, tr.Change)
			}
			if tr.Min == nil || tr.Min.Value != 9 || !tr.Min.At.Equal(day.Add(5*time.Minute)) {
				t.Errorf("min = %+v, want 9 at 00:05", tr.Min)
			}
			if tr.Max == nil || tr.Max.Value != 22.5 || !tr.Max.At.Equal(day.Add(23*time.Hour+15*time.Minute)) {
				t.Errorf("max = %+v, want 22.5 at 23:15", tr.Max)
			}
			if len(tr.Anomalies) != 0 {
				t.Errorf("anomalies = %+v, want none on a line", tr.Anomalies)
			}
			// A spike: hour 30 of a flat building-wide series in the previous day.
			spike := reading.Reading{SensorID: "t3", RoomID: "hall", Type: "temperature", Value: 80, Timestamp: day.Add(-12*time.Hour + 31*time.Minute)}
			publishReadings(t, b, "b2", []reading.Reading{spike})
			testwait.For(t, "spike stored", func() bool {
				n, _ := r.store.CountReadings(t.Context(), day.Add(-24*time.Hour), day)
				return n == 25
			})
			tr = httpxtest.GetOK[analytics.TrendAnswer](t, r.url+"/analytics/trends?type=temperature&bucket=1h&from="+day.Add(-24*time.Hour).Format(time.RFC3339)+"&to="+day.Format(time.RFC3339))
			// 24 buckets at 10, except hour 12 whose mean is (10+80)/2 = 45: z = √23.
			if tr.Scope != "building" || len(tr.Anomalies) != 1 || tr.Anomalies[0].Mean != 45 || !near(tr.Anomalies[0].Z, math.Sqrt(23)) {
				t.Errorf("scope %s anomalies %+v, want one of mean 45, z √23", tr.Scope, tr.Anomalies)
			}
		})
	}
}

// sensorRegistry answers GET /sensors as the sensor service's registry does: one
// online sensor per sensor id in rs, in the room of its readings. The real sensor
// service in front of analytics is tested where the services are wired together
// (cloud's TestAnalyticsEndToEnd): a service's tests import no other service.
func sensorRegistry(t testing.TB, rs []reading.Reading) *httptest.Server {
	t.Helper()
	type entry struct {
		ID     string `json:"id"`
		RoomID string `json:"room_id"`
		Status string `json:"status"`
	}
	page := struct {
		Sensors []entry `json:"sensors"`
	}{Sensors: []entry{}}
	seen := map[string]bool{}
	for _, r := range rs {
		if !seen[r.SensorID] {
			seen[r.SensorID] = true
			page.Sensors = append(page.Sensors, entry{r.SensorID, r.RoomID, "online"})
		}
	}
	body, err := json.Marshal(page)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/sensors" {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(body)
	}))
	t.Cleanup(srv.Close)
	return srv
}

// TestSummaryAndReportOverUCI replays the recorded UCI excerpts over the bus, as
// the sensor service publishes them, then checks the summary and a report against
// figures computed from the CSV files.
func TestSummaryAndReportOverUCI(t *testing.T) {
	u := storetest.LoadUCI(t)
	for _, e := range engines(t) {
		t.Run(e.name, func(t *testing.T) {
			b := servicetest.Bus(t)
			sens := sensorRegistry(t, u.Readings)
			now := u.Last.Add(30 * time.Second)
			var skew atomic.Int64 // added to now once the clock moves on
			clock := func() time.Time { return now.Add(time.Duration(skew.Load())) }
			r := startRig(t, e.open(t, filepath.Join(t.TempDir(), "uci")), b, analytics.Options{SensorURL: sens.URL, Now: clock, RegistryBackoff: time.Millisecond})
			for i := 0; i < len(u.Readings); i += 500 {
				publishReadings(t, b, fmt.Sprintf("uci-%d", i), u.Readings[i:min(i+500, len(u.Readings))])
			}
			testwait.For(t, "readings stored", func() bool {
				n, err := r.store.CountReadings(t.Context(), u.First.Add(-time.Hour), u.Last.Add(time.Hour))
				return err == nil && n == int64(len(u.Readings))
			})
			for i, st := range []string{"alert.raised", "alert.raised", "alert.resolved", "alert.raised"} {
				id := []string{"a1", "a2", "a1", "a2"}[i]
				body := fmt.Sprintf(`{"id":%q,"rule_id":"r","state":"active","raised_at":%q}`, id, u.Last.Format(time.RFC3339Nano))
				if err := b.Publish(t.Context(), st, []byte(body)); err != nil {
					t.Fatal(err)
				}
			}
			testwait.For(t, "alerts recorded", func() bool {
				n, _ := r.store.ActiveAlerts(t.Context())
				return n == 1
			})

			sum := httpxtest.GetOK[analytics.Summary](t, r.url+"/analytics/summary")
			// From the CSV: the last hour (whole minutes up to now's) and day.
			end := now.Truncate(time.Minute).Add(time.Minute)
			rows := func(room string, from time.Time) (n int64) {
				for m, vs := range u.Rooms[room].Minutes["co2"] { // one co2 cell per row
					if m >= analytics.Minute(from) && m < analytics.Minute(end) {
						n += int64(len(vs))
					}
				}
				return n
			}
			// per row: OD 6 readings (temperature, humidity, light, co2, humidity_ratio,
			// occupancy); ROE 17 (4 temperature, 4 light, 4 sound, co2, co2_slope, 2 pir, occupancy)
			wantHour := 6*rows("uci-od-room", end.Add(-time.Hour)) + 17*rows("uci-roe-room", end.Add(-time.Hour))
			wantDay := 6*rows("uci-od-room", end.Add(-24*time.Hour)) + 17*rows("uci-roe-room", end.Add(-24*time.Hour))
			if sum.Readings.LastHour != wantHour || sum.Readings.LastDay != wantDay || wantHour == 0 {
				t.Errorf("readings %+v, want last hour %d, last day %d", sum.Readings, wantHour, wantDay)
			}
			if sum.Sensors.Total != 10 || sum.Sensors.Online != 10 || sum.Sensors.Stale || sum.Sensors.AsOf == nil {
				t.Errorf("sensors %+v, want 10 online, fresh", sum.Sensors)
			}
			if sum.Rooms != 2 || sum.Alerts != 1 {
				t.Errorf("rooms %d, active alerts %d; want 2 and 1", sum.Rooms, sum.Alerts)
			}
			wantT := u.Rooms["uci-roe-room"].Stat("temperature", end.Add(-time.Hour), end)
			if m := sum.Means["temperature"]; m.Count != wantT.Count || !near(m.Mean, wantT.Mean) {
				t.Errorf("temperature mean %+v, want %+v", m, wantT)
			}
			// The last ROE row has temperatures 25.1–27.4 °C (too warm) and 600 ppm co2;
			// the OD room's readings are older than an hour.
			if len(sum.Attention) != 1 || sum.Attention[0].RoomID != "uci-roe-room" || fmt.Sprint(sum.Attention[0].Reasons) != "[comfort]" {
				t.Errorf("attention %+v, want uci-roe-room for comfort", sum.Attention)
			}

			// A custom report over both data sets.
			from, to := u.First.Truncate(time.Hour), u.Last.Truncate(time.Minute).Add(time.Minute)
			body := fmt.Sprintf(`{"kind":"custom","from":%q,"to":%q,"capacities":{"uci-roe-room":4}}`, from.Format(time.RFC3339), to.Format(time.RFC3339))
			id := httpxtest.Expect[map[string]string](t, httpxtest.DoJSON(t, http.MethodPost, r.url+"/analytics/reports", []byte(body)), http.StatusAccepted)["id"]
			rep, a := waitReport(t, r.url, id)
			if rep.Status != analytics.StatusReady || len(rep.Content.Rooms) != 2 {
				t.Fatalf("report %s: %s", rep.Status, a.Raw)
			}
			for _, rr := range rep.Content.Rooms {
				f := u.Rooms[rr.RoomID].Figures(rr.RoomID)
				wantPct := 100 * float64(f.CompliantMinutes) / float64(f.ComfortMinutes)
				if rr.ComfortCompliancePct == nil || !near(*rr.ComfortCompliancePct, wantPct) || !near(rr.PoorAirHours, float64(f.PoorAirMinutes)/60) {
					t.Errorf("%s: compliance %v poor air %v h, want %v %% and %v h", rr.RoomID, rr.ComfortCompliancePct, rr.PoorAirHours, wantPct, float64(f.PoorAirMinutes)/60)
				}
				wantUtil := float64(f.OccupiedMinutes) / float64(f.OccupancyMinutes)
				if rr.RoomID == "uci-roe-room" {
					wantUtil = f.MeanOccupancy / 4
				}
				if rr.OccupancyUtilisation == nil || !near(*rr.OccupancyUtilisation, wantUtil) {
					t.Errorf("%s: utilisation %v (%s), want %v", rr.RoomID, rr.OccupancyUtilisation, rr.OccupancyBasis, wantUtil)
				}
				wt := u.Rooms[rr.RoomID].Stat("temperature", from, to)
				if got := rr.Types["temperature"]; got.Count != wt.Count || !near(got.Mean, wt.Mean) || got.Min != wt.Min || got.Max != wt.Max {
					t.Errorf("%s: temperature %+v, want %+v", rr.RoomID, got, wt)
				}
			}
			if len(rep.Content.Series) == 0 {
				t.Error("report has no chart series")
			}

			t.Run("csv", func(t *testing.T) {
				a := httpxtest.Get(t, r.url+"/analytics/reports/"+id+"?format=csv")
				lines := strings.Split(strings.TrimSpace(string(a.Raw)), "\n")
				if a.Code != 200 || !strings.HasPrefix(a.CType, "text/csv") || !strings.HasPrefix(lines[0], "room_id,type,count,min,mean,max,comfort_compliance_pct") {
					t.Fatalf("csv: %d %s %s", a.Code, a.CType, a.Raw)
				}
				if !strings.Contains(string(a.Raw), "\nuci-od-room,temperature,") || !strings.Contains(string(a.Raw), "\nuci-roe-room,co2,") {
					t.Errorf("csv lacks room rows:\n%s", a.Raw)
				}
			})
			t.Run("html", func(t *testing.T) {
				a := httpxtest.Get(t, r.url+"/analytics/reports/"+id+"?format=html")
				page := string(a.Raw)
				if a.Code != 200 || !strings.HasPrefix(a.CType, "text/html") || !strings.Contains(page, "<svg") || strings.Count(page, "<polyline") < 5 {
					t.Fatalf("html: %d %s, %d polylines", a.Code, a.CType, strings.Count(page, "<polyline"))
				}
				for _, ext := range []string{"src=", "href=", "@import", "url("} {
					if strings.Contains(page, ext) {
						t.Errorf("html refers to an external asset (%s)", ext)
					}
				}
				if os.Getenv("ATRIUM_WRITE_REPORT") != "" {
					_ = os.WriteFile(os.Getenv("ATRIUM_WRITE_REPORT"), a.Raw, 0o644)
				}
			})
			t.Run("list", func(t *testing.T) {
				a := httpxtest.Get(t, r.url+"/analytics/reports")
				l := httpxtest.Decode[struct {
					Reports []analytics.Report `json:"reports"`
				}](t, a)
				if a.Code != 200 || len(l.Reports) != 1 || l.Reports[0].ID != id || l.Reports[0].Status != analytics.StatusReady {
					t.Errorf("list: %d %s", a.Code, a.Raw)
				}
			})

			t.Run("sensor service down", func(t *testing.T) {
				sens.Close()
				skew.Store(int64(10 * time.Second)) // past the registry's 5 s cache
				s := httpxtest.GetOK[analytics.Summary](t, r.url+"/analytics/summary")
				if !s.Sensors.Stale || s.Sensors.AsOf == nil || s.Sensors.Total != 10 || s.Readings.LastDay != wantDay {
					t.Errorf("sensors %+v readings %+v, want the last answer marked stale", s.Sensors, s.Readings)
				}
			})
		})
	}
}

// readyReport is a report as GET /analytics/reports/{id} answers it, its content decoded.
type readyReport struct {
	analytics.Report
	Content analytics.ReportContent `json:"content"`
}

// waitReport polls the report id of the service at base until it is no longer
// pending, and returns it with the answer it came in.
func waitReport(t *testing.T, base, id string) (readyReport, httpxtest.Answer) {
	t.Helper()
	var rep readyReport
	var a httpxtest.Answer
	testwait.For(t, "report ready", func() bool {
		rep = readyReport{}
		a = httpxtest.Get(t, base+"/analytics/reports/"+id)
		if err := json.Unmarshal(a.Raw, &rep); err != nil {
			t.Fatalf("decode report: %v: %s", err, a.Raw)
		}
		return rep.Status != analytics.StatusPending
	})
	return rep, a
}

// TestSensorServiceNeverReached: without any good answer the registry part is
// stale with no as_of, and the rest of the summary is served.
func TestSensorServiceNeverReached(t *testing.T) {
	dead := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "down", http.StatusServiceUnavailable)
	}))
	t.Cleanup(dead.Close)
	b := servicetest.Bus(t)
	st := engines(t)[0].open(t, filepath.Join(t.TempDir(), "down"))
	r := startRig(t, st, b, analytics.Options{SensorURL: dead.URL, RegistryBackoff: time.Millisecond})
	s := httpxtest.GetOK[map[string]any](t, r.url+"/analytics/summary")
	sens := s["sensors"].(map[string]any)
	if sens["stale"] != true || sens["as_of"] != nil {
		t.Errorf("sensors %v, want stale with as_of null", sens)
	}
}

func TestBadRequests(t *testing.T) {
	b := servicetest.Bus(t)
	r := startRig(t, engines(t)[0].open(t, filepath.Join(t.TempDir(), "bad")), b, analytics.Options{SensorURL: "http://127.0.0.1:1"})
	tests := []struct {
		name, method, path, body string
		status                   int
		field                    string
	}{
		{"unknown bucket", "GET", "/analytics/trends?type=co2&bucket=7m", "", 400, "bucket"},
		{"from after to", "GET", "/analytics/trends?type=co2&from=2026-01-02T00:00:00Z&to=2026-01-01T00:00:00Z", "", 400, "from"},
		{"missing type", "GET", "/analytics/trends", "", 400, "type"},
		{"bad time", "GET", "/analytics/trends?type=co2&from=yesterday", "", 400, "from"},
		{"too many buckets", "GET", "/analytics/trends?type=co2&bucket=1m&from=2020-01-01T00:00:00Z&to=2026-01-01T00:00:00Z", "", 400, "bucket"},
		{"unknown report", "GET", "/analytics/reports/nope", "", 404, ""},
		{"unknown format", "GET", "/analytics/reports/nope?format=pdf", "", 400, "format"},
		{"bad cursor", "GET", "/analytics/reports?cursor=zzz", "", 400, "cursor"},
		{"unknown kind", "POST", "/analytics/reports", `{"kind":"hourly"}`, 400, "kind"},
		{"custom without to", "POST", "/analytics/reports", `{"kind":"custom","from":"2026-01-01T00:00:00Z"}`, 400, "from"},
		{"custom reversed", "POST", "/analytics/reports", `{"kind":"custom","from":"2026-01-02T00:00:00Z","to":"2026-01-01T00:00:00Z"}`, 400, "from"},
		{"daily of two days", "POST", "/analytics/reports", `{"kind":"daily","from":"2026-01-01T00:00:00Z","to":"2026-01-03T00:00:00Z"}`, 400, "to"},
		{"bad room", "POST", "/analytics/reports", `{"kind":"daily","rooms":["a b"]}`, 400, "rooms[0]"},
		{"bad capacity", "POST", "/analytics/reports", `{"kind":"daily","capacities":{"r1":-2}}`, 400, "capacities.r1"},
		{"not json", "POST", "/analytics/reports", `{"kind":`, 400, ""},
		{"wrong method", "DELETE", "/analytics/summary", "", 405, ""},
	}
	for _, tc := range tests {
		httpxtest.RunProblem(t, tc.name, tc.method, r.url+tc.path, tc.body, tc.status, tc.field)
	}
	t.Run("daily defaults to yesterday", func(t *testing.T) {
		id := httpxtest.Expect[map[string]string](t, httpxtest.DoJSON(t, "POST", r.url+"/analytics/reports", []byte(`{"kind":"daily"}`)), 202)["id"]
		rep := httpxtest.Decode[analytics.Report](t, httpxtest.Get(t, r.url+"/analytics/reports/"+id))
		midnight := time.Now().UTC().Truncate(24 * time.Hour)
		if !rep.To.Equal(midnight) || !rep.From.Equal(midnight.Add(-24*time.Hour)) {
			t.Errorf("daily report covers %s – %s, want the last day before %s", rep.From, rep.To, midnight)
		}
	})
}

// TestPendingReportsResume: a report left pending by a stopped service is
// generated by the next one on the same store.
func TestPendingReportsResume(t *testing.T) {
	for _, e := range engines(t) {
		t.Run(e.name, func(t *testing.T) {
			where := filepath.Join(t.TempDir(), "resume")
			st := e.open(t, where)
			day := time.Date(2026, 3, 2, 0, 0, 0, 0, time.UTC)
			if _, err := st.AddReadings(t.Context(), []reading.Reading{
				{SensorID: "c1", RoomID: "r1", Type: "co2", Value: 1200, Timestamp: day.Add(time.Hour)},
				{SensorID: "c1", RoomID: "r1", Type: "co2", Value: 1300, Timestamp: day.Add(time.Hour + time.Minute)},
			}); err != nil {
				t.Fatal(err)
			}
			rep := analytics.Report{ID: "left-over", Kind: analytics.KindDaily, Status: analytics.StatusPending, From: day, To: day.Add(24 * time.Hour), Rooms: []string{"r1"}, CreatedAt: day}
			if err := st.SaveReport(t.Context(), rep); err != nil {
				t.Fatal(err)
			}
			st.Close()
			b := servicetest.Bus(t)
			r := startRig(t, e.open(t, where), b, analytics.Options{SensorURL: "http://127.0.0.1:1"})
			var got struct {
				Status  string                  `json:"status"`
				Content analytics.ReportContent `json:"content"`
			}
			testwait.For(t, "left-over report generated", func() bool {
				got = httpxtest.Decode[struct {
					Status  string                  `json:"status"`
					Content analytics.ReportContent `json:"content"`
				}](t, httpxtest.Get(t, r.url+"/analytics/reports/left-over"))
				return got.Status == analytics.StatusReady
			})
			if len(got.Content.Rooms) != 1 || got.Content.Rooms[0].PoorAirHours != 2.0/60 {
				t.Errorf("content %+v, want r1 with 2 poor-air minutes", got.Content)
			}
		})
	}
}

// TestSummaryServedStaleWhileRevalidating holds the summary's cache: fresh for
// SummaryTTL, then served stale at once for SummaryStale while the next one is
// computed in the background, then computed while the caller waits.
func TestSummaryServedStaleWhileRevalidating(t *testing.T) {
	b := servicetest.Bus(t)
	st := engines(t)[0].open(t, filepath.Join(t.TempDir(), "swr"))
	sens := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"sensors":[]}`))
	}))
	t.Cleanup(sens.Close)
	var mu sync.Mutex
	clock := time.Now().UTC().Truncate(time.Second)
	now := func() time.Time { mu.Lock(); defer mu.Unlock(); return clock }
	advance := func(d time.Duration) { mu.Lock(); clock = clock.Add(d); mu.Unlock() }
	svc := analytics.New(st, b, logging.Discard(), analytics.Options{SensorURL: sens.URL, Now: now,
		SummaryTTL: time.Second, SummaryStale: 5 * time.Second})
	added := 0
	add := func(n int) {
		t.Helper()
		rs := make([]reading.Reading, n)
		for i := range rs {
			added++
			rs[i] = reading.Reading{SensorID: fmt.Sprintf("swr-%d", added), RoomID: "r1", Type: "co2", Value: 500, Timestamp: now().Add(-time.Minute)}
		}
		if _, err := st.AddReadings(t.Context(), rs); err != nil {
			t.Fatal(err)
		}
	}
	summary := func() *analytics.Summary {
		t.Helper()
		sum, err := svc.Summary(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		return sum
	}
	add(1)
	t0 := now()
	if s := summary(); !s.GeneratedAt.Equal(t0) || s.Readings.LastHour != 1 {
		t.Fatalf("first summary: generated %v, last hour %d; want %v, 1", s.GeneratedAt, s.Readings.LastHour, t0)
	}
	add(2) // not seen until a new summary is computed
	advance(500 * time.Millisecond)
	if s := summary(); !s.GeneratedAt.Equal(t0) || s.Readings.LastHour != 1 {
		t.Fatalf("within the TTL: generated %v, last hour %d; want the first summary", s.GeneratedAt, s.Readings.LastHour)
	}
	advance(time.Second) // 1.5 s: stale, served at once, refreshed behind
	t1 := now()
	if s := summary(); !s.GeneratedAt.Equal(t0) {
		t.Fatalf("stale summary: generated %v, want the first one (%v) served while refreshing", s.GeneratedAt, t0)
	}
	testwait.For(t, "the background refresh", func() bool {
		s := summary()
		return s.GeneratedAt.Equal(t1) && s.Readings.LastHour == 3
	})
	add(3)
	advance(10 * time.Second) // past TTL + stale: the caller waits for a new one
	t2 := now()
	if s := summary(); !s.GeneratedAt.Equal(t2) || s.Readings.LastHour != 6 {
		t.Fatalf("long after: generated %v, last hour %d; want %v, 6", s.GeneratedAt, s.Readings.LastHour, t2)
	}
}

// TestInvalidReadingsSkipped: an invalid reading inside an event is skipped and
// counted, the event's other readings are stored. Before, the sensor service's
// exact encoding stored it unchecked (a temperature of 500 °C), and any other
// encoding dropped the whole event for one bad reading.
func TestInvalidReadingsSkipped(t *testing.T) {
	b := servicetest.Bus(t)
	st := engines(t)[0].open(t, filepath.Join(t.TempDir(), "skip"))
	r := startRig(t, st, b, analytics.Options{SensorURL: "http://127.0.0.1:1"})
	at := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	good := func(id string, k int) reading.Reading {
		return reading.Reading{SensorID: id, RoomID: "r1", Type: "temperature", Value: 21, Unit: "Cel", Timestamp: at.Add(time.Duration(k) * time.Second)}
	}
	hot := good("s-hot", 0)
	hot.Value = 500 // outside the plausible range of a temperature
	publishReadings(t, b, "key:p/b-1", []reading.Reading{good("s1", 0), hot, good("s1", 1)})
	// The same kind of event as another producer may write it (spaced): one
	// reading with a room id that is no id.
	spaced := `{ "batch_id": "key:p/b-2", "readings": [
		{"sensor_id": "s2", "type": "temperature", "value": 20, "timestamp": "2026-03-01T12:00:02Z"},
		{"sensor_id": "s2", "room_id": "a b", "type": "temperature", "value": 20, "timestamp": "2026-03-01T12:00:03Z"} ] }`
	if err := b.Publish(t.Context(), bus.SensorDataReceived, []byte(spaced)); err != nil {
		t.Fatal(err)
	}
	testwait.For(t, "three valid readings stored", func() bool {
		n, err := st.CountReadings(t.Context(), at.Add(-time.Hour), at.Add(time.Hour))
		return err == nil && n == 3 && httpxtest.Scrape(t, nil, r.url).Get("atrium_analytics_readings_received_total") == 3
	})
	if got := httpxtest.Scrape(t, nil, r.url).Get("atrium_analytics_event_readings_skipped_total"); got != 2 {
		t.Errorf("skipped readings = %v, want 2", got)
	}
	if got := httpxtest.Scrape(t, nil, r.url).Get("atrium_analytics_bad_messages_total"); got != 0 {
		t.Errorf("bad messages = %v, want 0", got)
	}
}
