package sensor_test

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/atrium-iot/atrium/internal/httpx/httpxtest"
	"github.com/atrium-iot/atrium/internal/servicetest"
	"github.com/atrium-iot/atrium/internal/sqlitex"

	"github.com/atrium-iot/atrium/internal/bus"
	"github.com/atrium-iot/atrium/internal/logging"
	"github.com/atrium-iot/atrium/services/sensor"
	"github.com/atrium-iot/atrium/services/sensor/sqlitestore"
)

// service is the sensor service on a SQLite store in a directory and the
// in-process bus, served over real HTTP on loopback, with its Run loop going.
type service struct {
	url   string
	store *sqlitestore.Store
	bus   bus.Bus
	stop  func() // stops it before the test ends; the store stays on disk
}

// openStore opens the SQLite store sensor.db in dir with the synchronous mode
// given ("": the default), logging nothing, and closes it when tb ends.
func openStore(tb testing.TB, dir, synchronous string) *sqlitestore.Store {
	tb.Helper()
	st, err := sqlitestore.Open(context.Background(), filepath.Join(dir, "sensor.db"), sqlitestore.Options{Settings: sqlitex.Settings{Logger: logging.Discard(), Synchronous: synchronous}})
	return servicetest.Store(tb, st, err)
}

func serve(t *testing.T, dir string, opts sensor.Options) *service {
	t.Helper()
	st := openStore(t, dir, "")
	b := servicetest.Bus(t)
	run := servicetest.Start(t, sensor.New(st, b, logging.Discard(), opts))
	s := &service{url: run.URL, store: st, bus: b}
	var once sync.Once
	s.stop = func() {
		once.Do(func() {
			run.Stop()
			b.Close()
			_ = st.Close()
		})
	}
	t.Cleanup(s.stop)
	return s
}

type reply = httpxtest.Answer

// do sends a request with Content-Type application/json (unless headers name
// another) and the headers given as name, value pairs.
func do(t *testing.T, method, url string, body []byte, headers ...string) reply {
	t.Helper()
	return httpxtest.DoJSON(t, method, url, body, headers...)
}

// send posts body to /sensors/data.
func send(t *testing.T, url string, body []byte, headers ...string) reply {
	t.Helper()
	return do(t, http.MethodPost, url+"/sensors/data", body, headers...)
}

func ts(t time.Time) string { return t.UTC().Format(time.RFC3339Nano) }

func num(v any) int { f, _ := v.(float64); return int(f) }

func TestIngestForms(t *testing.T) {
	s := serve(t, t.TempDir(), sensor.Options{})
	base := time.Now().Add(-10 * time.Minute).Truncate(time.Millisecond)
	tests := []struct {
		name                 string
		body                 string
		headers              []string
		accepted, duplicates int
		rejected             []int
	}{
		{"batch object", fmt.Sprintf(`{"batch_id":"f1","readings":[{"sensor_id":"a","room_id":"r1","type":"temperature","value":21.5,"timestamp":%q},{"sensor_id":"a","type":"humidity","value":40,"timestamp":%d}]}`, ts(base), base.UnixMilli()), nil, 2, 0, nil},
		{"single object", fmt.Sprintf(`{"sensor_id":"b","type":"co2","value":600,"timestamp":%q}`, ts(base)), nil, 1, 0, nil},
		{"array", fmt.Sprintf(`[{"sensor_id":"c","type":"light","value":300,"timestamp":%d},{"sensor_id":"c","type":"light","value":310,"timestamp":%d}]`, base.UnixMilli(), base.UnixMilli()+1000), nil, 2, 0, nil},
		{"duplicate identity", fmt.Sprintf(`[{"sensor_id":"c","type":"light","value":300,"timestamp":%d}]`, base.UnixMilli()), nil, 0, 1, nil},
		{"duplicate within batch", fmt.Sprintf(`[{"sensor_id":"d","type":"noise","value":40,"timestamp":%d},{"sensor_id":"d","type":"noise","value":41,"timestamp":%d}]`, base.UnixMilli(), base.UnixMilli()), nil, 1, 1, nil},
		{"missing timestamp takes the receiver clock", `{"sensor_id":"e","type":"pressure","value":1013}`, nil, 1, 0, nil},
		{"unknown type accepted as is", `{"sensor_id":"e","type":"radon","value":12,"unit":"Bq/m3"}`, nil, 1, 0, nil},
		{"bad readings rejected, good stored", fmt.Sprintf(`{"readings":[
			{"sensor_id":"f","type":"temperature","value":"21"},
			{"sensor_id":"f","type":"temperature","value":"NaN"},
			{"sensor_id":"f","type":"temperature","value":"Infinity"},
			{"sensor_id":"f","type":"temperature","value":120},
			{"sensor_id":"f","type":"humidity","value":-1},
			{"sensor_id":"f","type":"co2","value":10001},
			{"sensor_id":"%s","type":"temperature","value":20},
			{"sensor_id":"bad id!","type":"temperature","value":20},
			{"sensor_id":"f","type":"Temperature","value":20},
			{"sensor_id":"f","type":"temperature","value":20,"timestamp":%q},
			{"sensor_id":"f","type":"temperature","value":true},
			{"sensor_id":5,"type":"temperature","value":20},
			{"sensor_id":"f","type":"temperature"},
			{"sensor_id":"f","type":"temperature","value":20,"timestamp":"yesterday"},
			{"sensor_id":"f","type":"temperature","value":20,"unit":"F"},
			{"sensor_id":"f","type":"temperature","value":20.5,"timestamp":%q}]}`,
			strings.Repeat("x", 129), ts(time.Now().Add(time.Hour)), ts(base)),
			nil, 1, 0, []int{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14}},
		{"idempotency key header", fmt.Sprintf(`[{"sensor_id":"g","type":"voc","value":100,"timestamp":%q}]`, ts(base)), []string{"Idempotency-Key", "hdr-1"}, 1, 0, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			a := do(t, "POST", s.url+"/sensors/data", []byte(tc.body), tc.headers...)
			if a.Code != 200 {
				t.Fatalf("status %d: %s", a.Code, a.Raw)
			}
			if num(a.Body["accepted"]) != tc.accepted || num(a.Body["duplicates"]) != tc.duplicates {
				t.Errorf("accepted %v duplicates %v, want %d %d: %s", a.Body["accepted"], a.Body["duplicates"], tc.accepted, tc.duplicates, a.Raw)
			}
			rej, _ := a.Body["rejected"].([]any)
			var idx []int
			for _, r := range rej {
				m := r.(map[string]any)
				if m["reason"] == "" {
					t.Errorf("rejection without a reason: %v", m)
				}
				idx = append(idx, num(m["index"]))
			}
			if fmt.Sprint(idx) != fmt.Sprint(tc.rejected) {
				t.Errorf("rejected indexes %v, want %v: %s", idx, tc.rejected, a.Raw)
			}
		})
	}
	t.Run("stored values read back", func(t *testing.T) {
		a := do(t, "GET", s.url+"/sensors/f/data", nil)
		rs := a.Body["readings"].([]any)
		if len(rs) != 1 || rs[0].(map[string]any)["value"] != 20.5 || rs[0].(map[string]any)["unit"] != "Cel" {
			t.Fatalf("readings of f: %s", a.Raw)
		}
		a = do(t, "GET", s.url+"/sensors/a/data?type=humidity", nil)
		rs = a.Body["readings"].([]any)
		r := rs[0].(map[string]any)
		if len(rs) != 1 || r["room_id"] != "r1" || r["timestamp"] != base.UTC().Format("2006-01-02T15:04:05.000Z") {
			t.Fatalf("room_id should come from the registry and the time round-trip: %s", a.Raw)
		}
	})
}

func TestIngestBadBodies(t *testing.T) {
	s := serve(t, t.TempDir(), sensor.Options{})
	var bomb bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&bomb, gzip.BestCompression)
	_, _ = zw.Write([]byte(`[`))
	_, _ = zw.Write(bytes.Repeat([]byte(" "), 100<<20))
	_ = zw.Close()
	big := append(bytes.Repeat([]byte(" "), 9<<20), []byte(`{}`)...)
	tests := []struct {
		name    string
		body    []byte
		headers []string
		code    int
	}{
		{"malformed JSON", []byte(`{"readings": [ {"sensor_id": `), nil, 400},
		{"not an object or array", []byte(`42`), nil, 400},
		{"empty", nil, nil, 400},
		{"readings not an array", []byte(`{"readings": {"a":1}}`), nil, 400},
		{"reading not an object", []byte(`{"readings": [1,2]}`), nil, 400},
		{"trailing garbage", []byte(`[] []`), nil, 400},
		{"batch id not a string", []byte(`{"batch_id": 7, "readings": []}`), nil, 400},
		{"9 MiB body", big, nil, 413},
		{"gzip bomb", bomb.Bytes(), []string{"Content-Encoding", "gzip"}, 413},
		{"broken gzip", []byte("not gzip"), []string{"Content-Encoding", "gzip"}, 400},
		{"unknown encoding", []byte(`[]`), []string{"Content-Encoding", "br"}, 415},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			httpxtest.CheckProblem(t, send(t, s.url, tc.body, tc.headers...), tc.code, "")
		})
	}
	a := do(t, "GET", s.url+"/sensors", nil)
	if n := len(a.Body["sensors"].([]any)); n != 0 {
		t.Fatalf("bad bodies stored %d sensors", n)
	}
}

func TestGzipBatchAndBigBatch(t *testing.T) {
	s := serve(t, t.TempDir(), sensor.Options{})
	base := time.Now().Add(-3 * time.Hour).UnixMilli()
	var b strings.Builder
	b.WriteString(`{"batch_id":"big","readings":[`)
	for i := range 10000 {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `{"sensor_id":"s%d","room_id":"r%d","type":"temperature","value":%d.5,"timestamp":%d}`, i%50, i%5, 15+i%10, base+int64(i))
	}
	b.WriteString(`]}`)
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	_, _ = zw.Write([]byte(b.String()))
	_ = zw.Close()
	a := do(t, "POST", s.url+"/sensors/data", gz.Bytes(), "Content-Encoding", "gzip")
	if a.Code != 200 || num(a.Body["accepted"]) != 10000 {
		t.Fatalf("10,000-reading gzip batch: %d %s", a.Code, a.Raw)
	}
	// every reading of s7 comes back exactly once across pages
	seen := map[string]bool{}
	cursor := ""
	for pages := 0; ; pages++ {
		if pages > 10 {
			t.Fatal("too many pages")
		}
		a = do(t, "GET", s.url+"/sensors/s7/data?limit=70&order=desc&cursor="+cursor, nil)
		for _, r := range a.Body["readings"].([]any) {
			k := r.(map[string]any)["timestamp"].(string)
			if seen[k] {
				t.Fatalf("reading %s twice", k)
			}
			seen[k] = true
		}
		c, _ := a.Body["next_cursor"].(string)
		if c == "" {
			break
		}
		cursor = c
	}
	if len(seen) != 200 {
		t.Fatalf("s7 has %d readings across pages, want 200", len(seen))
	}
}

func TestSameBatchFromEightClients(t *testing.T) {
	s := serve(t, t.TempDir(), sensor.Options{})
	events := make(chan bus.Message, 100)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if err := s.bus.Subscribe(ctx, "test", []string{bus.SensorDataReceived}, func(_ context.Context, m bus.Message) error {
		events <- m
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	base := time.Now().Add(-time.Hour).UnixMilli()
	var b strings.Builder
	b.WriteString(`{"batch_id":"same","site":"hq","readings":[`)
	for i := range 500 {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `{"sensor_id":"s%d","room_id":"r1","type":"co2","value":%d,"timestamp":%d}`, i%10, 400+i, base+int64(i))
	}
	b.WriteString(`]}`)
	var wg sync.WaitGroup
	answers := make([]string, 8)
	for i := range 8 {
		wg.Go(func() {
			a := do(t, "POST", s.url+"/sensors/data", []byte(b.String()))
			answers[i] = fmt.Sprint(a.Code, a.Body["accepted"], a.Body["duplicates"])
		})
	}
	wg.Wait()
	for _, a := range answers {
		if a != "200 500 0" {
			t.Fatalf("answers %v: every client must get the first answer", answers)
		}
	}
	total := 0
	for i := range 10 {
		a := do(t, "GET", fmt.Sprintf("%s/sensors/s%d/data?limit=1000", s.url, i), nil)
		total += len(a.Body["readings"].([]any))
	}
	if total != 500 {
		t.Fatalf("stored %d readings, want 500", total)
	}
	select {
	case m := <-events:
		var ev struct {
			BatchID  string           `json:"batch_id"`
			Site     string           `json:"site"`
			Readings []map[string]any `json:"readings"`
		}
		if err := json.Unmarshal(m.Body, &ev); err != nil || ev.BatchID != sensor.BatchKey(sensor.DirectPrincipal, "same") || ev.Site != "hq" || len(ev.Readings) != 500 {
			t.Fatalf("event %s: %v", m.Body, err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no sensor.data.received event")
	}
	select {
	case m := <-events:
		t.Fatalf("a second event for one batch: %.100s", m.Body)
	case <-time.After(300 * time.Millisecond):
	}
}

func TestRegistryAndRestart(t *testing.T) {
	dir := t.TempDir()
	s := serve(t, dir, sensor.Options{OfflineAfter: time.Hour})
	old := time.Now().Add(-2 * time.Hour).UnixMilli()
	do(t, "POST", s.url+"/sensors/data", []byte(fmt.Sprintf(`[
		{"sensor_id":"t1","room_id":"r1","type":"temperature","value":20,"timestamp":%d},
		{"sensor_id":"t1","room_id":"r1","type":"temperature","value":19,"timestamp":%d},
		{"sensor_id":"t1","room_id":"r1","type":"humidity","value":45,"timestamp":%d},
		{"sensor_id":"t2","room_id":"r2","type":"co2","value":800,"timestamp":%d}]`, old+1000, old, old, old)))
	a := do(t, "GET", s.url+"/sensors/t1", nil)
	lv := a.Body["last_values"].(map[string]any)
	if a.Code != 200 || a.Body["id"] != "t1" || a.Body["room_id"] != "r1" || a.Body["status"] != "online" ||
		lv["temperature"].(map[string]any)["value"] != 20.0 || len(a.Body["types"].([]any)) != 2 {
		t.Fatalf("sensor t1: %s", a.Raw)
	}
	for _, tc := range []struct {
		query string
		want  int
	}{{"", 2}, {"?room_id=r2", 1}, {"?type=humidity", 1}, {"?status=online", 2}, {"?status=offline", 0}, {"?limit=1", 1}} {
		a := do(t, "GET", s.url+"/sensors"+tc.query, nil)
		if a.Code != 200 || len(a.Body["sensors"].([]any)) != tc.want {
			t.Errorf("GET /sensors%s: %s", tc.query, a.Raw)
		}
	}
	for _, tc := range []struct {
		path string
		code int
	}{
		{"/sensors/nope", 404}, {"/sensors/nope/data", 404}, {"/sensors?status=asleep", 400},
		{"/sensors?room_id=room%20one", 400}, {"/sensors?type=CO2", 400}, {"/sensors?type=co2-ppm", 400},
		{"/sensors/t1/data?limit=0", 400}, {"/sensors/t1/data?from=soon", 400}, {"/sensors/t1/data?order=up", 400},
		{"/sensors/t1/data?cursor=garbage", 400}, {"/nowhere", 404}, {"/healthz", 200}, {"/readyz", 200}, {"/metrics", 200},
	} {
		if a := do(t, "GET", s.url+tc.path, nil); a.Code != tc.code {
			t.Errorf("GET %s: %d, want %d: %s", tc.path, a.Code, tc.code, a.Raw)
		}
	}
	if a := do(t, "DELETE", s.url+"/sensors/data", nil); a.Code != 405 {
		t.Errorf("DELETE /sensors/data: %d", a.Code)
	}
	s.stop()
	// Started again a minute later, with sensors offline after 30s.
	later := func() time.Time { return time.Now().Add(time.Minute) }
	s = serve(t, dir, sensor.Options{OfflineAfter: 30 * time.Second, Now: later})
	a = do(t, "GET", s.url+"/sensors/t1/data", nil)
	if len(a.Body["readings"].([]any)) != 3 {
		t.Fatalf("after restart: %s", a.Raw)
	}
	if a = do(t, "GET", s.url+"/sensors?status=offline", nil); len(a.Body["sensors"].([]any)) != 2 {
		t.Fatalf("offline a minute later: %s", a.Raw)
	}
}

func TestMetricsCountReadings(t *testing.T) {
	s := serve(t, t.TempDir(), sensor.Options{})
	do(t, "POST", s.url+"/sensors/data", []byte(`[{"sensor_id":"m","type":"co2","value":500},{"sensor_id":"m","type":"co2","value":"x"}]`))
	a := do(t, "GET", s.url+"/metrics", nil)
	for _, want := range []string{`atrium_sensor_readings_total{outcome="accepted"} 1`, `atrium_sensor_readings_total{outcome="rejected"} 1`, `atrium_http_requests_total{method="POST",route="/sensors/data",status="200"} 1`} {
		if !strings.Contains(string(a.Raw), want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
}
