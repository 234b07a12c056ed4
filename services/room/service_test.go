package room_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/atrium-iot/atrium/internal/bus"
	"github.com/atrium-iot/atrium/internal/events"
	"github.com/atrium-iot/atrium/internal/httpx/httpxtest"
	"github.com/atrium-iot/atrium/internal/logging"
	"github.com/atrium-iot/atrium/internal/reading"
	"github.com/atrium-iot/atrium/internal/servicetest"
	"github.com/atrium-iot/atrium/internal/testwait"
	"github.com/atrium-iot/atrium/services/room"
	"github.com/atrium-iot/atrium/services/room/sqlitestore"
)

// now is the service clock of the tests: 12:10:30, so the 5-minute window is
// 12:06:00–12:10:30.
var now = time.Date(2026, 11, 25, 12, 10, 30, 0, time.UTC)

func clock(hms string) time.Time {
	t, err := time.Parse("15:04:05", hms)
	if err != nil {
		panic(err)
	}
	return time.Date(2026, 11, 25, t.Hour(), t.Minute(), t.Second(), 0, time.UTC)
}

type env struct {
	svc   *room.Service
	store *sqlitestore.Store
	bus   bus.Bus
	url   string
}

// openStore opens the SQLite store at path, a new file when path is "", and
// closes it when tb ends.
func openStore(tb testing.TB, path string, opts sqlitestore.Options) *sqlitestore.Store {
	tb.Helper()
	if path == "" {
		path = filepath.Join(tb.TempDir(), "room.db")
	}
	st, err := sqlitestore.Open(context.Background(), path, opts)
	return servicetest.Store(tb, st, err)
}

// newEnv is the service at the tests' clock over the store at path (a new
// one when ""), on b (servicetest.Bus when nil), its API served on loopback;
// its Run loop waits for run.
func newEnv(t *testing.T, path string, b bus.Bus) *env {
	t.Helper()
	st := openStore(t, path, sqlitestore.Options{})
	if b == nil {
		b = servicetest.Bus(t)
	}
	svc := room.New(st, b, logging.Discard(), room.Options{Now: func() time.Time { return now }, PublishInterval: 20 * time.Millisecond})
	return &env{svc: svc, store: st, bus: b, url: servicetest.Serve(t, svc.Handler())}
}

// run starts the service's bus consumer and publisher until the test ends.
func (e *env) run(t *testing.T) {
	t.Helper()
	servicetest.Run(t, e.svc.Run)
	servicetest.WaitReady(t, e.url)
}

type rd struct {
	sensor, room, typ string
	value             float64
	at                string // hh:mm:ss on the test day
}

func readingsOf(rds []rd) []reading.Reading {
	rs := make([]reading.Reading, len(rds))
	for i, r := range rds {
		rs[i] = reading.Reading{SensorID: r.sensor, RoomID: r.room, Type: r.typ, Value: r.value, Timestamp: clock(r.at)}
	}
	return rs
}

func eventBody(batchID string, rds ...rd) []byte {
	return events.EncodeSensorData(batchID, "", readingsOf(rds))
}

func (e *env) consume(t *testing.T, batchID string, rds ...rd) {
	t.Helper()
	consumeReadings(t, e.svc, batchID, readingsOf(rds))
}

// consumeReadings hands svc the sensor.data.received event of batch batchID,
// as the bus would.
func consumeReadings(tb testing.TB, svc *room.Service, batchID string, rs []reading.Reading) {
	tb.Helper()
	body := events.EncodeSensorData(batchID, "", rs)
	if err := svc.Consume(tb.Context(), bus.Message{ID: "m-" + batchID, Subject: bus.SensorDataReceived, Body: body}); err != nil {
		tb.Fatalf("Consume(%s): %v", batchID, err)
	}
}

// getJSON is httpxtest.GetOK, for the tests of this package.
func getJSON[T any](t *testing.T, url string) T {
	t.Helper()
	return httpxtest.GetOK[T](t, url)
}

func ptr[T any](v T) *T { return &v }

func f64(p *float64) string {
	if p == nil {
		return "null"
	}
	return fmt.Sprint(*p)
}

// updatesOf collects the rooms of the room.metrics.updated events published on b.
func updatesOf(t *testing.T, b bus.Bus) <-chan room.Metrics {
	t.Helper()
	updates := make(chan room.Metrics, 100)
	if err := b.Subscribe(t.Context(), "test-updates", []string{bus.RoomMetricsUpdated}, func(_ context.Context, m bus.Message) error {
		var v room.Metrics
		if err := json.Unmarshal(m.Body, &v); err != nil {
			t.Errorf("room.metrics.updated body %s: %v", m.Body, err)
		}
		updates <- v
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return updates
}

// waitUpdates waits for a room.metrics.updated event of each of rooms.
func waitUpdates(t *testing.T, updates <-chan room.Metrics, rooms ...string) map[string]room.Metrics {
	t.Helper()
	got := map[string]room.Metrics{}
	deadline := time.After(20 * time.Second)
	for _, id := range rooms {
		for _, ok := got[id]; !ok; _, ok = got[id] {
			select {
			case m := <-updates:
				got[m.RoomID] = m
			case <-deadline:
				t.Fatalf("room.metrics.updated for %v, want %v", got, rooms)
			}
		}
	}
	return got
}

// TestMetricsFixture checks every figure of one room against hand-computed values.
func TestMetricsFixture(t *testing.T) {
	e := newEnv(t, "", nil)
	if a := httpxtest.DoJSON(t, "POST", e.url+"/rooms", []byte(`{"id":"r1","name":"Blue","capacity":12}`)); a.Code != 201 {
		t.Fatalf("create: %d %s", a.Code, a.Raw)
	}
	e.consume(t, "b1",
		rd{"t1", "r1", "temperature", 21, "12:09:00"},
		rd{"t1", "r1", "temperature", 22, "12:10:00"},
		rd{"t2", "r1", "temperature", 23, "12:10:10"},
		rd{"t3", "r1", "temperature", 30, "12:00:00"}, // stale: out of the value and the window
		rd{"h1", "r1", "humidity", 45, "12:07:00"},
		rd{"h1", "r1", "humidity", 55, "12:05:59"}, // before the window
		rd{"c1", "r1", "co2", 950, "12:10:20"},
		rd{"o1", "r1", "occupancy", 3, "12:10:00"},
	)
	// Redelivered, and a late reading of t1 in another batch.
	e.consume(t, "b1", rd{"t1", "r1", "temperature", 21, "12:09:00"})
	e.consume(t, "b2", rd{"t1", "r1", "temperature", 20, "12:08:00"})

	m := getJSON[room.Metrics](t, e.url+"/rooms/r1/metrics")
	type want struct {
		value    float64
		ts       string
		sensors  int
		mean, lo *float64
		hi       *float64
		count    int64
	}
	wants := map[string]want{
		// value: mean of t1's 22 and t2's 23 (t3 is 10 min behind t2);
		// window: 21, 22, 23 and the late 20.
		"temperature": {22.5, "12:10:10", 2, ptr(21.5), ptr(20.0), ptr(23.0), 4},
		"humidity":    {45, "12:07:00", 1, ptr(45.0), ptr(45.0), ptr(45.0), 1},
		"co2":         {950, "12:10:20", 1, ptr(950.0), ptr(950.0), ptr(950.0), 1},
		"occupancy":   {3, "12:10:00", 1, ptr(3.0), ptr(3.0), ptr(3.0), 1},
	}
	if len(m.Metrics) != len(wants) {
		t.Errorf("metrics of %d types, want %d: %+v", len(m.Metrics), len(wants), m.Metrics)
	}
	for typ, w := range wants {
		t.Run(typ, func(t *testing.T) {
			g, ok := m.Metrics[typ]
			if !ok {
				t.Fatalf("no %s", typ)
			}
			if g.Value != w.value || !g.Timestamp.Equal(clock(w.ts)) || g.Sensors != w.sensors || g.Count5m != w.count ||
				f64(g.Mean5m) != f64(w.mean) || f64(g.Min5m) != f64(w.lo) || f64(g.Max5m) != f64(w.hi) {
				t.Errorf("%s = value %v at %s from %d sensors, 5m mean %s min %s max %s count %d; want %+v",
					typ, g.Value, g.Timestamp, g.Sensors, f64(g.Mean5m), f64(g.Min5m), f64(g.Max5m), g.Count5m, w)
			}
		})
	}
	if m.Occupied == nil || !*m.Occupied || f64(m.OccupancyRatio) != "0.25" || m.AirQuality == nil || *m.AirQuality != "moderate" ||
		m.Comfort.Status != "ok" || len(m.Comfort.Issues) != 0 {
		t.Errorf("derived: occupied %v ratio %s air %v comfort %+v; want true 0.25 moderate ok", m.Occupied, f64(m.OccupancyRatio), m.AirQuality, m.Comfort)
	}
	if !m.Window.From.Equal(clock("12:06:00")) || !m.Window.To.Equal(now) || m.RoomID != "r1" {
		t.Errorf("window %+v of %s, want 12:06:00–12:10:30 of r1", m.Window, m.RoomID)
	}

	list := getJSON[struct {
		Rooms []map[string]any `json:"rooms"`
	}](t, e.url+"/rooms")
	if len(list.Rooms) != 1 {
		t.Fatalf("rooms = %+v", list.Rooms)
	}
	got := list.Rooms[0]
	wantSummary := map[string]any{"id": "r1", "name": "Blue", "capacity": 12.0, "sensor_count": 6.0, "occupied": true, "air_quality": "moderate", "comfort": "ok",
		"metrics": map[string]any{"temperature": 22.5, "humidity": 45.0, "co2": 950.0, "occupancy": 3.0}}
	for k, v := range wantSummary {
		if !reflect.DeepEqual(got[k], v) {
			t.Errorf("summary %s = %v, want %v", k, got[k], v)
		}
	}
}

// TestDerived checks the derived metrics at their bounds, one room per case.
func TestDerived(t *testing.T) {
	e := newEnv(t, "", nil)
	tests := []struct {
		name     string
		capacity string // JSON, "" for a room created by its readings
		readings []rd
		occupied *bool
		ratio    *float64
		air      *string
		comfort  string
		issues   []string
	}{
		{"no data", "", nil, nil, nil, nil, "unknown", nil},
		{"co2 799 good", "", []rd{{"c", "", "co2", 799, "12:10:00"}}, nil, nil, ptr("good"), "unknown", nil},
		{"co2 800 moderate", "", []rd{{"c", "", "co2", 800, "12:10:00"}}, nil, nil, ptr("moderate"), "unknown", nil},
		{"co2 999.5 moderate", "", []rd{{"c", "", "co2", 999.5, "12:10:00"}}, nil, nil, ptr("moderate"), "unknown", nil},
		{"co2 1000 poor", "", []rd{{"c", "", "co2", 1000, "12:10:00"}}, nil, nil, ptr("poor"), "unknown", nil},
		{"co2 1500 bad", "", []rd{{"c", "", "co2", 1500, "12:10:00"}}, nil, nil, ptr("bad"), "unknown", nil},
		{"co2 mean of two sensors 1400 and 1600 bad", "", []rd{{"c", "", "co2", 1400, "12:10:00"}, {"d", "", "co2", 1600, "12:09:00"}}, nil, nil, ptr("bad"), "unknown", nil},
		{"comfort at the lower bounds", "", []rd{{"t", "", "temperature", 20, "12:10:00"}, {"h", "", "humidity", 30, "12:10:00"}}, nil, nil, nil, "ok", nil},
		{"comfort at the upper bounds", "", []rd{{"t", "", "temperature", 24, "12:10:00"}, {"h", "", "humidity", 60, "12:10:00"}}, nil, nil, nil, "ok", nil},
		{"too cold", "", []rd{{"t", "", "temperature", 19.9, "12:10:00"}}, nil, nil, nil, "uncomfortable", []string{"temperature_low"}},
		{"too warm and too dry", "", []rd{{"t", "", "temperature", 24.1, "12:10:00"}, {"h", "", "humidity", 29, "12:10:00"}}, nil, nil, nil, "uncomfortable", []string{"temperature_high", "humidity_low"}},
		{"too humid", "", []rd{{"h", "", "humidity", 61, "12:10:00"}}, nil, nil, nil, "uncomfortable", []string{"humidity_high"}},
		{"occupancy 2 of 8", "8", []rd{{"o", "", "occupancy", 2, "12:10:00"}}, ptr(true), ptr(0.25), nil, "unknown", nil},
		{"occupancy without capacity", "", []rd{{"o", "", "occupancy", 2, "12:10:00"}}, ptr(true), nil, nil, "unknown", nil},
		{"occupancy with capacity 0", "0", []rd{{"o", "", "occupancy", 2, "12:10:00"}}, ptr(true), nil, nil, "unknown", nil},
		{"empty now, someone 3 min ago", "4", []rd{{"o", "", "occupancy", 1, "12:07:30"}, {"o", "", "occupancy", 0, "12:10:00"}}, ptr(true), ptr(0.0), nil, "unknown", nil},
		{"empty for 6 min", "4", []rd{{"o", "", "occupancy", 1, "12:04:00"}, {"o", "", "occupancy", 0, "12:10:00"}}, ptr(false), ptr(0.0), nil, "unknown", nil},
		{"pir motion 2 min ago", "", []rd{{"p", "", "pir", 1, "12:08:00"}, {"p", "", "pir", 0, "12:10:00"}}, ptr(true), nil, nil, "unknown", nil},
		{"pir quiet", "", []rd{{"p", "", "pir", 0, "12:10:00"}}, ptr(false), nil, nil, "unknown", nil},
		{"motion long ago", "", []rd{{"p", "", "motion", 1, "12:00:00"}}, ptr(false), nil, nil, "unknown", nil},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			id := fmt.Sprintf("derived-%d", i)
			body := fmt.Sprintf(`{"id":%q}`, id)
			if tc.capacity != "" {
				body = fmt.Sprintf(`{"id":%q,"capacity":%s}`, id, tc.capacity)
			}
			if a := httpxtest.DoJSON(t, "POST", e.url+"/rooms", []byte(body)); a.Code != 201 {
				t.Fatalf("create: %d %s", a.Code, a.Raw)
			}
			for j := range tc.readings {
				tc.readings[j].room = id
				tc.readings[j].sensor = id + "-" + tc.readings[j].sensor
			}
			if len(tc.readings) > 0 {
				e.consume(t, id, tc.readings...)
			}
			m := getJSON[room.Metrics](t, e.url+"/rooms/"+id+"/metrics")
			if fmt.Sprint(deref(m.Occupied)) != fmt.Sprint(deref(tc.occupied)) {
				t.Errorf("occupied = %v, want %v", deref(m.Occupied), deref(tc.occupied))
			}
			if f64(m.OccupancyRatio) != f64(tc.ratio) {
				t.Errorf("occupancy_ratio = %s, want %s", f64(m.OccupancyRatio), f64(tc.ratio))
			}
			if fmt.Sprint(deref(m.AirQuality)) != fmt.Sprint(deref(tc.air)) {
				t.Errorf("air_quality = %v, want %v", deref(m.AirQuality), deref(tc.air))
			}
			if tc.issues == nil {
				tc.issues = []string{}
			}
			if m.Comfort.Status != tc.comfort || !reflect.DeepEqual(m.Comfort.Issues, tc.issues) {
				t.Errorf("comfort = %+v, want %s %v", m.Comfort, tc.comfort, tc.issues)
			}
		})
	}
}

func deref[T any](p *T) any {
	if p == nil {
		return nil
	}
	return *p
}

// TestHistory checks the buckets of GET /rooms/{id}/history and its pages.
func TestHistory(t *testing.T) {
	e := newEnv(t, "", nil)
	e.consume(t, "b1",
		rd{"s1", "h", "co2", 400, "11:00:00"},
		rd{"s1", "h", "co2", 500, "11:02:30"},
		rd{"s2", "h", "co2", 600, "11:02:40"},
		rd{"s1", "h", "co2", 700, "11:07:00"},
		rd{"s1", "h", "co2", 800, "12:01:00"},
		rd{"s1", "h", "temperature", 21, "11:00:00"},
	)
	type bucket = room.BucketStats
	type page struct {
		Buckets    []bucket `json:"buckets"`
		NextCursor string   `json:"next_cursor"`
	}
	b := func(start string, d time.Duration, lo, mean, hi float64, n int64) bucket {
		return bucket{clock(start), clock(start).Add(d), lo, mean, hi, n}
	}
	from, to := "&from="+clock("11:00:00").Format(time.RFC3339), "&to="+clock("12:10:00").Format(time.RFC3339)
	tests := []struct {
		name  string
		query string
		want  []bucket
	}{
		{"1m", "bucket=1m" + from + to, []bucket{
			b("11:00:00", time.Minute, 400, 400, 400, 1), b("11:02:00", time.Minute, 500, 550, 600, 2),
			b("11:07:00", time.Minute, 700, 700, 700, 1), b("12:01:00", time.Minute, 800, 800, 800, 1)}},
		{"5m", "bucket=5m" + from + to, []bucket{
			b("11:00:00", 5*time.Minute, 400, 500, 600, 3), b("11:05:00", 5*time.Minute, 700, 700, 700, 1),
			b("12:00:00", 5*time.Minute, 800, 800, 800, 1)}},
		{"15m", "bucket=15m" + from + to, []bucket{
			b("11:00:00", 15*time.Minute, 400, 550, 700, 4), b("12:00:00", 15*time.Minute, 800, 800, 800, 1)}},
		{"1h", "bucket=1h" + from + to, []bucket{
			b("11:00:00", time.Hour, 400, 550, 700, 4), b("12:00:00", time.Hour, 800, 800, 800, 1)}},
		{"1d", "bucket=1d" + from + to, []bucket{
			{time.Date(2026, 11, 25, 0, 0, 0, 0, time.UTC), time.Date(2026, 11, 26, 0, 0, 0, 0, time.UTC), 400, 600, 800, 5}}},
		{"default: 1h over the last 24h", "", []bucket{
			b("11:00:00", time.Hour, 400, 550, 700, 4), b("12:00:00", time.Hour, 800, 800, 800, 1)}},
		{"from is aligned down to the bucket", "bucket=1h&from=" + clock("11:30:00").Format(time.RFC3339), []bucket{
			b("11:00:00", time.Hour, 400, 550, 700, 4), b("12:00:00", time.Hour, 800, 800, 800, 1)}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := getJSON[page](t, e.url+"/rooms/h/history?type=co2&"+tc.query)
			if !reflect.DeepEqual(p.Buckets, tc.want) || p.NextCursor != "" {
				t.Errorf("buckets = %+v (cursor %q),\nwant %+v", p.Buckets, p.NextCursor, tc.want)
			}
		})
	}
	t.Run("pages", func(t *testing.T) {
		var all []bucket
		url := e.url + "/rooms/h/history?type=co2&bucket=1m&limit=1" + from + to
		for range 10 {
			p := getJSON[page](t, url)
			all = append(all, p.Buckets...)
			if p.NextCursor == "" {
				break
			}
			url = e.url + "/rooms/h/history?type=co2&bucket=1m&limit=1" + from + to + "&cursor=" + p.NextCursor
		}
		if len(all) != 4 || all[3].Mean != 800 {
			t.Errorf("pages of 1 bucket = %+v, want the 4 minute buckets", all)
		}
	})
}

// TestRooms walks the space management API.
func TestRooms(t *testing.T) {
	e := newEnv(t, "", nil)
	a := httpxtest.DoJSON(t, "POST", e.url+"/rooms", []byte(`{"id":"r-1","name":"Blue","floor":2,"building":"A","capacity":10,"area_m2":30.5}`))
	if a.Code != 201 || a.Head.Get("Location") != "/rooms/r-1" {
		t.Fatalf("POST: %d %s %v", a.Code, a.Raw, a.Head)
	}
	steps := []struct {
		method, path, body string
		code               int
		want               string // fields of the answer, as JSON object
	}{
		{"GET", "/rooms/r-1", "", 200, `{"id":"r-1","name":"Blue","floor":2,"building":"A","capacity":10,"area_m2":30.5,"sensor_count":0}`},
		{"PATCH", "/rooms/r-1", `{"name":"Green","capacity":null}`, 200, `{"name":"Green","floor":2,"building":"A","capacity":null,"area_m2":30.5}`},
		{"PUT", "/rooms/r-1", `{"name":"Red","capacity":4}`, 200, `{"name":"Red","floor":null,"building":"","capacity":4,"area_m2":null}`},
		{"PUT", "/rooms/r-1/sensors/s-9", "", 200, `{"sensor_count":1,"sensors":["s-9"]}`},
		{"DELETE", "/rooms/r-1", "", 204, ``},
		{"GET", "/rooms/r-1", "", 404, `{"status":404,"detail":"room \"r-1\" does not exist"}`},
	}
	for _, st := range steps {
		a := httpxtest.DoJSON(t, st.method, e.url+st.path, []byte(st.body))
		if a.Code != st.code {
			t.Fatalf("%s %s: %d %s, want %d", st.method, st.path, a.Code, a.Raw, st.code)
		}
		if st.want == "" {
			continue
		}
		var got, want map[string]any
		_ = json.Unmarshal(a.Raw, &got)
		if err := json.Unmarshal([]byte(st.want), &want); err != nil {
			t.Fatal(err)
		}
		for k, v := range want {
			if !reflect.DeepEqual(got[k], v) {
				t.Errorf("%s %s: %s = %v, want %v (%s)", st.method, st.path, k, got[k], v, a.Raw)
			}
		}
	}
	// An assigned sensor's readings go to its room whatever room_id they carry.
	httpxtest.DoJSON(t, "POST", e.url+"/rooms", []byte(`{"id":"lab"}`))
	httpxtest.DoJSON(t, "PUT", e.url+"/rooms/lab/sensors/s-7", nil)
	e.consume(t, "b1", rd{"s-7", "elsewhere", "co2", 650, "12:10:00"})
	m := getJSON[room.Metrics](t, e.url+"/rooms/lab/metrics")
	if m.Metrics["co2"].Value != 650 {
		t.Errorf("lab co2 = %+v, want 650 from the assigned sensor", m.Metrics)
	}
	if a := httpxtest.DoJSON(t, "GET", e.url+"/rooms/elsewhere", nil); a.Code != 404 {
		t.Errorf("the room_id of an assigned sensor's reading is ignored, yet: %d %s", a.Code, a.Raw)
	}
}

// TestBadInput checks that every client error is a problem+json with its status.
func TestBadInput(t *testing.T) {
	e := newEnv(t, "", nil)
	httpxtest.DoJSON(t, "POST", e.url+"/rooms", []byte(`{"id":"r1"}`))
	tests := []struct {
		name, method, path, body string
		code                     int
		field                    string // a field named in errors, if any
	}{
		{"unknown room metrics", "GET", "/rooms/nope/metrics", "", 404, ""},
		{"unknown room", "GET", "/rooms/nope", "", 404, ""},
		{"unknown room history", "GET", "/rooms/nope/history?type=co2", "", 404, ""},
		{"unknown room patch", "PATCH", "/rooms/nope", `{"name":"x"}`, 404, ""},
		{"put with a bad room id", "PUT", "/rooms/bad%20id", `{"name":"x"}`, 404, ""},
		{"unknown room delete", "DELETE", "/rooms/nope", "", 404, ""},
		{"unknown room assign", "PUT", "/rooms/nope/sensors/s1", "", 404, ""},
		{"negative capacity", "POST", "/rooms", `{"id":"r2","capacity":-1}`, 400, "capacity"},
		{"fractional capacity", "POST", "/rooms", `{"id":"r2","capacity":2.5}`, 400, "capacity"},
		{"capacity as text", "PATCH", "/rooms/r1", `{"capacity":"ten"}`, 400, "capacity"},
		{"zero area", "PATCH", "/rooms/r1", `{"area_m2":0}`, 400, "area_m2"},
		{"floor as text", "PATCH", "/rooms/r1", `{"floor":"2nd"}`, 400, "floor"},
		{"name as number", "PATCH", "/rooms/r1", `{"name":5}`, 400, "name"},
		{"malformed JSON", "POST", "/rooms", `{"id":"r2",`, 400, ""},
		{"array body", "POST", "/rooms", `[1]`, 400, ""},
		{"null body", "POST", "/rooms", `null`, 400, ""},
		{"bad id", "POST", "/rooms", `{"id":"bad id!"}`, 400, "id"},
		{"existing id", "POST", "/rooms", `{"id":"r1"}`, 409, ""},
		{"id differs from path", "PUT", "/rooms/r1", `{"id":"r9"}`, 400, ""},
		{"bad sensor id", "PUT", "/rooms/r1/sensors/a%20b", "", 400, ""},
		{"history without type", "GET", "/rooms/r1/history", "", 400, "type"},
		{"history bad bucket", "GET", "/rooms/r1/history?type=co2&bucket=2m", "", 400, "bucket"},
		{"history to before from", "GET", "/rooms/r1/history?type=co2&from=2026-11-25T12:00:00Z&to=2026-11-25T11:00:00Z", "", 400, "to"},
		{"history bad time", "GET", "/rooms/r1/history?type=co2&from=yesterday", "", 400, "from"},
		{"history bad cursor", "GET", "/rooms/r1/history?type=co2&cursor=%21%21", "", 400, "cursor"},
		{"rooms bad limit", "GET", "/rooms?limit=0", "", 400, "limit"},
		{"method not allowed", "POST", "/rooms/r1", "{}", 405, ""},
	}
	for _, tc := range tests {
		httpxtest.RunProblem(t, tc.name, tc.method, e.url+tc.path, tc.body, tc.code, tc.field)
	}
	if a := httpxtest.DoJSON(t, "GET", e.url+"/rooms/r1", nil); a.Code != 200 || !bytes.Contains(a.Raw, []byte(`"capacity":null`)) {
		t.Errorf("the rejected patches changed the room: %s", a.Raw)
	}
}

// TestFedByBus runs the service on the in-process bus: readings published as
// sensor.data.received show up in the metrics, a redelivered event changes
// nothing, and room.metrics.updated is published once per room per round.
func TestFedByBus(t *testing.T) {
	e := newEnv(t, "", nil)
	updates := updatesOf(t, e.bus)
	e.run(t)
	body := eventBody("bus-1", rd{"s1", "a", "co2", 500, "12:09:00"}, rd{"s1", "a", "co2", 700, "12:10:00"}, rd{"s2", "b", "temperature", 21, "12:10:00"})
	for range 3 { // the same event, redelivered as new messages
		if err := e.bus.Publish(t.Context(), bus.SensorDataReceived, body); err != nil {
			t.Fatal(err)
		}
	}
	got := waitUpdates(t, updates, "a", "b")
	if c := got["a"].Metrics["co2"]; c.Value != 700 || c.Count5m != 2 || f64(c.Mean5m) != "600" {
		t.Errorf("published metrics of a = %+v, want 700, 2 readings, mean 600", c)
	}
	// Every event is handled (the membus delivers them in order): once the three
	// are through, the counts are those of one.
	testwait.For(t, "the three events handled", func() bool {
		return httpxtest.Scrape(t, nil, e.url).Get(`atrium_room_batches_total{outcome="duplicate"}`) == 2
	})
	m := getJSON[room.Metrics](t, e.url+"/rooms/a/metrics")
	if c := m.Metrics["co2"]; c.Count5m != 2 || f64(c.Mean5m) != "600" {
		t.Errorf("after redelivery co2 = %+v, want 2 readings, mean 600", c)
	}
}

// TestReplicas runs two services on one store file and one queue: they share the
// events, each delivered twice, and the answers are exact.
func TestReplicas(t *testing.T) {
	b := servicetest.Bus(t)
	path := filepath.Join(t.TempDir(), "room.db")
	e1, e2 := newEnv(t, path, b), newEnv(t, path, b)
	e1.run(t)
	e2.run(t)
	const batches = 60
	for i := range batches {
		body := eventBody(fmt.Sprintf("rep-%d", i), rd{"s1", "shared", "occupancy", float64(i % 4), fmt.Sprintf("12:%02d:%02d", i/60, i%60)})
		for range 2 {
			if err := b.Publish(t.Context(), bus.SensorDataReceived, body); err != nil {
				t.Fatal(err)
			}
		}
	}
	// 0,1,2,3 repeated 15 times: 60 readings summing to 90.
	type page struct {
		Buckets []struct {
			Count int64   `json:"count"`
			Mean  float64 `json:"mean"`
		} `json:"buckets"`
	}
	url := "/rooms/shared/history?type=occupancy&bucket=1h&from=2026-11-25T12:00:00Z&to=2026-11-25T13:00:00Z"
	testwait.For(t, "every batch in the history", func() bool {
		a := httpxtest.Get(t, e1.url+url)
		var p page
		_ = json.Unmarshal(a.Raw, &p)
		return a.Code == 200 && len(p.Buckets) == 1 && p.Buckets[0].Count >= batches
	})
	// Let every redelivery through, then check both replicas answer the same.
	testwait.For(t, "every redelivery handled", func() bool {
		return handled(t, e1.url)+handled(t, e2.url) >= 2*batches
	})
	for _, u := range []string{e1.url, e2.url} {
		p := getJSON[page](t, u+url)
		if len(p.Buckets) != 1 || p.Buckets[0].Count != batches || p.Buckets[0].Mean != 1.5 {
			t.Errorf("replica %s: %+v, want %d readings, mean 1.5", u, p.Buckets, batches)
		}
	}
	if h1, h2 := handled(t, e1.url), handled(t, e2.url); h1 == 0 || h2 == 0 {
		t.Logf("one replica handled everything (%d, %d)", h1, h2)
	}
}

// handled is how many events a service has handled, from its Prometheus metrics.
func handled(t *testing.T, url string) int {
	t.Helper()
	return int(httpxtest.Scrape(t, nil, url).Sum("atrium_room_batches_total"))
}

// TestMalformedEvent: an event that is not JSON fails (the bus dead-letters it);
// invalid readings in a good event are skipped.
func TestMalformedEvent(t *testing.T) {
	e := newEnv(t, "", nil)
	if err := e.svc.Consume(t.Context(), bus.Message{ID: "x", Body: []byte("{not json")}); err == nil {
		t.Error("Consume of a malformed event: no error")
	}
	body := `{"batch_id":"mixed","readings":[{"sensor_id":"s1","room_id":"m","type":"co2","value":"high","timestamp":"2026-11-25T12:10:00Z"},
		{"sensor_id":"s1","room_id":"m","type":"co2","value":640,"timestamp":"2026-11-25T12:10:00Z"}]}`
	if err := e.svc.Consume(t.Context(), bus.Message{ID: "y", Body: []byte(body)}); err != nil {
		t.Fatal(err)
	}
	if m := getJSON[room.Metrics](t, e.url+"/rooms/m/metrics"); m.Metrics["co2"].Value != 640 || m.Metrics["co2"].Count5m != 1 {
		t.Errorf("co2 = %+v, want the one valid reading", m.Metrics["co2"])
	}
}

func TestPutCreatesTheRoom(t *testing.T) {
	e := newEnv(t, "", nil)
	a := httpxtest.DoJSON(t, "PUT", e.url+"/rooms/new-room", []byte(`{"name":"New","capacity":10}`))
	if a.Code != 201 || !strings.Contains(string(a.Raw), `"capacity":10`) {
		t.Fatalf("PUT of a new room: %d %s", a.Code, a.Raw)
	}
	a = httpxtest.DoJSON(t, "PUT", e.url+"/rooms/new-room", []byte(`{"name":"Renamed","capacity":12}`))
	if a.Code != 200 || !strings.Contains(string(a.Raw), `"Renamed"`) {
		t.Fatalf("PUT of an existing room: %d %s", a.Code, a.Raw)
	}
}
