package sensor_test

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os/exec"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/atrium-iot/atrium/internal/bus"
	"github.com/atrium-iot/atrium/internal/reading"
	"github.com/atrium-iot/atrium/internal/testenv"
	"github.com/atrium-iot/atrium/internal/testwait"
	"github.com/atrium-iot/atrium/services/sensor"
	"github.com/atrium-iot/atrium/services/sensor/sqlitestore"
)

// ingestServer is the sensor service on a SQLite store and the in-process bus,
// over real HTTP on loopback, with a clock the test moves and the batch ids of
// the events it published.
type ingestServer struct {
	url   string
	store *sqlitestore.Store
	mu    sync.Mutex
	now   time.Time
	evs   []string
}

func startIngest(t *testing.T) *ingestServer {
	t.Helper()
	s := &ingestServer{now: time.Now().UTC()}
	svc := serve(t, t.TempDir(), sensor.Options{RelayInterval: time.Hour, Now: s.clock})
	s.url, s.store = svc.url, svc.store
	if err := svc.bus.Subscribe(context.Background(), "t", []string{bus.SensorDataReceived}, func(_ context.Context, m bus.Message) error {
		var ev struct {
			BatchID string `json:"batch_id"`
		}
		if err := json.Unmarshal(m.Body, &ev); err != nil {
			return err
		}
		s.mu.Lock()
		s.evs = append(s.evs, ev.BatchID)
		s.mu.Unlock()
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return s
}

func (s *ingestServer) clock() time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.now
}

func (s *ingestServer) advance(d time.Duration) {
	s.mu.Lock()
	s.now = s.now.Add(d)
	s.mu.Unlock()
}

func (s *ingestServer) events() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.evs...)
}

func gzipped(t *testing.T, b string) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	if _, err := zw.Write([]byte(b)); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// readingsOf is the values stored for a sensor.
func (s *ingestServer) readingsOf(t *testing.T, id string) []float64 {
	t.Helper()
	rs, _, err := s.store.Readings(t.Context(), sensor.ReadingQuery{SensorID: id, Limit: 100})
	if err != nil {
		t.Fatal(err)
	}
	vs := []float64{}
	for _, r := range rs {
		vs = append(vs, r.Value)
	}
	return vs
}

// TestBatchIDsScopedToTheCaller: one caller's batch id is answered with its first
// answer only for the same request (however it is encoded); the same id with
// other readings is 422 and stores nothing; another caller's batch under the same
// id is a batch of its own.
func TestBatchIDsScopedToTheCaller(t *testing.T) {
	s := startIngest(t)
	ts := s.clock().Add(-time.Hour).Truncate(time.Second)
	ms := ts.UnixMilli()
	at := ts.Format(time.RFC3339)
	agent := []string{sensor.PrincipalHeader, "agent-hq"}
	first := `{"batch_id":"b-1","site":"hq","readings":[
		{"sensor_id":"s1","room_id":"r1","type":"co2","value":600,"timestamp":"` + at + `"},
		{"sensor_id":"s1","room_id":"r1","type":"co2","value":"lots","timestamp":"` + at + `"}]}`
	a := send(t, s.url, []byte(first), agent...)
	if a.Code != 200 || num(a.Body["accepted"]) != 1 || a.Body["batch_id"] != "b-1" {
		t.Fatalf("first batch: %d %s", a.Code, a.Raw)
	}
	wantAnswer := a.Raw

	// The same request, written otherwise: whitespace, key order, 600.0, Unix
	// ms, gzip, the id in the header.
	same := map[string]struct {
		body    []byte
		headers []string
	}{
		"as sent":         {[]byte(first), agent},
		"Idempotency-Key": {[]byte(strings.Replace(first, `"batch_id":"b-1",`, "", 1)), append([]string{"Idempotency-Key", "b-1"}, agent...)},
		"gzip":            {gzipped(t, first), append([]string{"Content-Encoding", "gzip"}, agent...)},
		"other spelling": {[]byte(`{ "readings" : [ {"timestamp":` + itoa(ms) + `,"value":600.0,"type":"co2","room_id":"r1","sensor_id":"s1"},
			{"sensor_id":"s1","room_id":"r1","type":"co2","value":"lots","timestamp":"` + at + `"} ], "site":"hq", "batch_id":"b-1" }`), agent},
	}
	for name, tc := range same {
		t.Run("same request/"+name, func(t *testing.T) {
			a := send(t, s.url, tc.body, tc.headers...)
			if a.Code != 200 || string(a.Raw) != string(wantAnswer) {
				t.Errorf("%d %s, want 200 %s", a.Code, a.Raw, wantAnswer)
			}
		})
	}

	// Another request under the same id, from the same caller.
	other := map[string]string{
		"empty":         `{"batch_id":"b-1","readings":[]}`,
		"other value":   strings.Replace(first, `"value":600`, `"value":601`, 1),
		"other site":    strings.Replace(first, `"site":"hq"`, `"site":"annex"`, 1),
		"fewer":         `{"batch_id":"b-1","site":"hq","readings":[{"sensor_id":"s1","room_id":"r1","type":"co2","value":600,"timestamp":"` + at + `"}]}`,
		"other sensor":  strings.Replace(first, `"sensor_id":"s1"`, `"sensor_id":"s2"`, 1),
		"one reading":   `{"sensor_id":"s2","type":"co2","value":1}`,
		"no timestamps": `[{"sensor_id":"s2","type":"co2","value":1}]`,
	}
	for name, body := range other {
		t.Run("other request/"+name, func(t *testing.T) {
			a := send(t, s.url, []byte(body), append([]string{"Idempotency-Key", "b-1"}, agent...)...)
			if a.Code != http.StatusUnprocessableEntity || !strings.HasPrefix(a.CType, "application/problem+json") {
				t.Fatalf("%d %s %s, want 422 problem+json", a.Code, a.CType, a.Raw)
			}
			if a.Body["status"] != 422.0 || !strings.Contains(a.Body["detail"].(string), `"b-1"`) ||
				!strings.Contains(string(a.Raw), `"field":"batch_id"`) {
				t.Errorf("problem %s: want status 422, a detail naming b-1 and a batch_id error", a.Raw)
			}
		})
	}
	if got := s.readingsOf(t, "s1"); !reflect.DeepEqual(got, []float64{600}) {
		t.Errorf("s1 readings %v, want [600]", got)
	}
	if got := s.readingsOf(t, "s2"); len(got) != 0 {
		t.Errorf("s2 readings %v, want none: refused batches store nothing", got)
	}

	// Other callers, same id: each a batch of its own, also a key named
	// "direct" and a direct call (no header).
	callers := []struct {
		name    string
		headers []string
		sensor  string
		event   string
	}{
		{"key intruder", []string{sensor.PrincipalHeader, "intruder"}, "i1", "key:intruder/b-1"},
		{"key named direct", []string{sensor.PrincipalHeader, "direct"}, "d1", "key:direct/b-1"},
		{"direct call", nil, "d2", "direct/b-1"},
	}
	for _, c := range callers {
		t.Run("other caller/"+c.name, func(t *testing.T) {
			body := `{"batch_id":"b-1","readings":[{"sensor_id":"` + c.sensor + `","type":"co2","value":700,"timestamp":` + itoa(ms) + `}]}`
			a := send(t, s.url, []byte(body), c.headers...)
			if a.Code != 200 || num(a.Body["accepted"]) != 1 || a.Body["batch_id"] != "b-1" {
				t.Fatalf("%d %s, want 200 with 1 accepted", a.Code, a.Raw)
			}
			if got := s.readingsOf(t, c.sensor); !reflect.DeepEqual(got, []float64{700}) {
				t.Errorf("%s readings %v, want [700]", c.sensor, got)
			}
		})
	}
	// The bus hands each event to the subscriber on a goroutine of its own:
	// wait for the last.
	wantEvents := []string{"key:agent-hq/b-1", "key:intruder/b-1", "key:direct/b-1", "direct/b-1"}
	testwait.WithinState(t, 5*time.Second, "the events of the four batches", func() (bool, string) {
		got := s.events()
		return reflect.DeepEqual(got, wantEvents), "published " + strings.Join(got, ", ")
	})
	// agent-hq's batch is still answered as it was.
	if a := send(t, s.url, []byte(first), agent...); a.Code != 200 || string(a.Raw) != string(wantAnswer) {
		t.Errorf("agent-hq's batch at the end: %d %s, want %s", a.Code, a.Raw, wantAnswer)
	}

	t.Run("key name too long", func(t *testing.T) {
		a := send(t, s.url, []byte(first), sensor.PrincipalHeader, strings.Repeat("k", sensor.MaxKeyNameLen+1))
		if a.Code != 400 {
			t.Errorf("%d %s, want 400", a.Code, a.Raw)
		}
	})
	t.Run("metrics", func(t *testing.T) {
		resp, err := http.Get(s.url + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		want := `atrium_sensor_batches_total{outcome="conflict"} ` + itoa(int64(len(other)))
		if !strings.Contains(string(b), want+"\n") {
			t.Errorf("/metrics has no %q", want)
		}
	})
}

// TestResendIndependentOfTheClock: readings without a timestamp take the
// receiver's clock, and one too far ahead is rejected by it; resent later, the
// request is the same and gets its first answer, not a 422.
func TestResendIndependentOfTheClock(t *testing.T) {
	s := startIngest(t)
	future := s.clock().Add(6 * time.Minute).UnixMilli()
	body := `{"batch_id":"clock-1","readings":[{"sensor_id":"c1","type":"co2","value":500},
		{"sensor_id":"c1","type":"humidity","value":40,"timestamp":` + itoa(future) + `}]}`
	a := send(t, s.url, []byte(body))
	if a.Code != 200 || num(a.Body["accepted"]) != 1 || len(a.Body["rejected"].([]any)) != 1 {
		t.Fatalf("first: %d %s", a.Code, a.Raw)
	}
	s.advance(10 * time.Minute)
	if b := send(t, s.url, []byte(body)); b.Code != 200 || string(b.Raw) != string(a.Raw) {
		t.Errorf("resent 10 minutes later: %d %s, want the first answer %s", b.Code, b.Raw, a.Raw)
	}
	if got := s.readingsOf(t, "c1"); len(got) != 1 {
		t.Errorf("c1 readings %v, want 1", got)
	}
}

// TestConflictWithCurl: what a client sees with curl.
func TestConflictWithCurl(t *testing.T) {
	curl := testenv.Tool(t, "curl")
	s := startIngest(t)
	run := func(body string) string {
		t.Helper()
		out, err := exec.Command(curl, "-sS", "-i", "-X", "POST", s.url+"/sensors/data",
			"-H", "Content-Type: application/json", "-H", "Idempotency-Key: curl-1", "-d", body).CombinedOutput()
		if err != nil {
			t.Fatalf("curl: %v: %s", err, out)
		}
		return strings.ReplaceAll(string(out), "\r\n", "\n")
	}
	if out := run(`{"sensor_id":"k1","type":"co2","value":500}`); !strings.HasPrefix(out, "HTTP/1.1 200 ") {
		t.Fatalf("first: %s", out)
	}
	out := run(`{"sensor_id":"k1","type":"co2","value":501}`)
	head, body, _ := strings.Cut(out, "\n\n")
	if !strings.HasPrefix(head, "HTTP/1.1 422 ") || !strings.Contains(head, "\nContent-Type: application/problem+json") {
		t.Fatalf("same key, other reading: %s", out)
	}
	var p struct {
		Type, Title, Detail string
		Status              int
		Errors              []struct{ Field, Reason string }
	}
	if err := json.Unmarshal([]byte(body), &p); err != nil {
		t.Fatalf("body %q: %v", body, err)
	}
	if p.Status != 422 || p.Title != "Unprocessable Entity" || !strings.Contains(p.Detail, `"curl-1"`) ||
		len(p.Errors) != 1 || p.Errors[0].Field != "batch_id" {
		t.Errorf("problem %+v", p)
	}
	if got := s.readingsOf(t, "k1"); !reflect.DeepEqual(got, []float64{500}) {
		t.Errorf("k1 readings %v, want [500]", got)
	}
}

func TestFingerprint(t *testing.T) {
	decode := func(t *testing.T, body string) sensor.Batch {
		t.Helper()
		var b struct {
			Site     string          `json:"site"`
			Readings []reading.Input `json:"readings"`
		}
		if err := json.Unmarshal([]byte(body), &b); err != nil {
			t.Fatal(err)
		}
		return sensor.Batch{Site: b.Site, Fingerprint: sensor.Fingerprint(b.Site, b.Readings)}
	}
	const base = `{"site":"hq","readings":[{"sensor_id":"s1","room_id":"r1","type":"co2","value":600,"unit":"ppm","timestamp":"2026-11-25T12:00:00Z"}]}`
	tests := []struct {
		name, body string
		same       bool
	}{
		{"as is", base, true},
		{"whitespace and order", `{ "readings": [ { "timestamp": "2026-11-25T12:00:00.000Z", "unit": "ppm", "value": 6e2, "type": "co2", "room_id": "r1", "sensor_id": "s1" } ], "site": "hq" }`, true},
		{"unix ms", strings.Replace(base, `"2026-11-25T12:00:00Z"`, itoa(time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC).UnixMilli()), 1), true},
		{"offset", strings.Replace(base, `12:00:00Z`, `13:00:00+01:00`, 1), true},
		{"unknown field", strings.Replace(base, `"value":600`, `"value":600,"fw":"1.0"`, 1), true},
		{"value", strings.Replace(base, `600`, `601`, 1), false},
		{"timestamp", strings.Replace(base, `12:00:00Z`, `12:00:01Z`, 1), false},
		{"no timestamp", strings.Replace(base, `,"timestamp":"2026-11-25T12:00:00Z"`, ``, 1), false},
		{"site", strings.Replace(base, `"hq"`, `"annex"`, 1), false},
		{"sensor", strings.Replace(base, `"s1"`, `"s2"`, 1), false},
		{"room", strings.Replace(base, `"r1"`, `"r2"`, 1), false},
		{"type", strings.Replace(base, `"co2"`, `"co3"`, 1), false},
		{"unit", strings.Replace(base, `"ppm"`, `"ppb"`, 1), false},
		{"bad value", strings.Replace(base, `600`, `"600"`, 1), false},
		{"two readings", strings.Replace(base, `}]}`, `},{"sensor_id":"s1","type":"co2","value":600}]}`, 1), false},
		{"no readings", `{"site":"hq","readings":[]}`, false},
	}
	want := decode(t, base).Fingerprint
	if len(want) != 64 {
		t.Fatalf("fingerprint %q: want 64 hex digits", want)
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := decode(t, tc.body).Fingerprint; (got == want) != tc.same {
				t.Errorf("fingerprint equal to the base's: %v, want %v", got == want, tc.same)
			}
		})
	}
	t.Run("room empty or missing", func(t *testing.T) {
		a := decode(t, strings.Replace(base, `"room_id":"r1",`, ``, 1)).Fingerprint
		b := decode(t, strings.Replace(base, `"r1"`, `""`, 1)).Fingerprint
		if a != b {
			t.Error("a missing and an empty room_id fingerprint differently")
		}
	})
	t.Run("-0 is 0", func(t *testing.T) {
		a := decode(t, strings.Replace(base, `600`, `-0`, 1)).Fingerprint
		b := decode(t, strings.Replace(base, `600`, `0`, 1)).Fingerprint
		if a != b {
			t.Error("-0 and 0 fingerprint differently")
		}
	})
	// Fingerprint encodes every field of reading.Input by name: a new field
	// must be added to it.
	if n := reflect.TypeFor[reading.Input]().NumField(); n != 7 {
		t.Errorf("reading.Input has %d fields; Fingerprint encodes 7: add the new ones", n)
	}
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

// BenchmarkFingerprint: the cost the fingerprint adds to a 500-reading batch.
func BenchmarkFingerprint(b *testing.B) {
	var sb strings.Builder
	sb.WriteString(`[`)
	for i := range 500 {
		if i > 0 {
			sb.WriteString(",")
		}
		sb.WriteString(`{"sensor_id":"sensor_` + itoa(int64(i%50)) + `","room_id":"room-101","type":"co2","value":` + itoa(int64(400+i)) +
			`,"unit":"ppm","timestamp":` + itoa(int64(1795608000000+i*1000)) + `}`)
	}
	sb.WriteString(`]`)
	var inputs []reading.Input
	if err := json.Unmarshal([]byte(sb.String()), &inputs); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		_ = sensor.Fingerprint("hq", inputs)
	}
}
