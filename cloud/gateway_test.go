package cloud_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/atrium-iot/atrium/agent/agenttest"

	"github.com/atrium-iot/atrium/cloud/cloudtest"

	"github.com/eclipse/paho.golang/paho"

	"github.com/atrium-iot/atrium/cloud"
	"github.com/atrium-iot/atrium/gateway"
	"github.com/atrium-iot/atrium/internal/logging"
	"github.com/atrium-iot/atrium/internal/testenv"
)

// gwSystem is a running `atrium` with the gateway in front of whatever runs with it.
type gwSystem struct {
	app  *cloud.App
	stop func()
	url  string // the gateway
}

// freeURL is a loopback URL nothing listens on: the address of a part that does
// not run.
func freeURL(t testing.TB) string { return "http://" + testenv.FreeAddr(t) }

// startGW runs `atrium -target=TARGET` on loopback ports; parts that do not run
// point at closed ports.
func startGW(t testing.TB, target, dataDir string, logs io.Writer, extra ...string) *gwSystem {
	t.Helper()
	args := []string{"-target=" + target, "-data-dir=" + dataDir,
		"-gateway-addr=127.0.0.1:0", "-sensor-addr=127.0.0.1:0", "-room-addr=127.0.0.1:0",
		"-analytics-addr=127.0.0.1:0", "-notification-addr=127.0.0.1:0",
		"-sensor-url=" + freeURL(t), "-room-url=" + freeURL(t), "-analytics-url=" + freeURL(t), "-notification-url=" + freeURL(t)}
	var log *slog.Logger
	if logs != nil {
		log = slog.New(slog.NewJSONHandler(logs, nil))
	}
	r := cloudtest.Run(t, log, append(args, extra...)...)
	return &gwSystem{app: r.App, stop: r.Stop, url: "http://" + r.Addr("gateway")}
}

// addKey adds a key named name with scopes to keysFile and returns it.
func addKey(tb testing.TB, keysFile, name string, scopes ...gateway.Scope) string {
	tb.Helper()
	key, err := gateway.AddKey(keysFile, name, scopes)
	if err != nil {
		tb.Fatal(err)
	}
	return key
}

func auth(key string) []string { return []string{"Authorization", "Bearer " + key} }

func TestGatewayMakesAnAdminKeyOnFirstStart(t *testing.T) {
	dir := t.TempDir()
	logs := &logging.Buffer{}
	s := startGW(t, "sensor,gateway", dir, logs)
	var key string
	for _, l := range strings.Split(logs.String(), "\n") {
		var m map[string]any
		if json.Unmarshal([]byte(l), &m) == nil && m["key"] != nil {
			key, _ = m["key"].(string)
		}
	}
	if key == "" {
		t.Fatalf("no admin key in the first start's log:\n%s", logs)
	}
	if a := do(t, "GET", s.url+"/sensors", nil); a.Code != 401 {
		t.Fatalf("without the key: %d", a.Code)
	}
	if a := do(t, "POST", s.url+"/sensors/data", []byte(`{"sensor_id":"k1","type":"co2","value":500}`), auth(key)...); a.Code != 200 {
		t.Fatalf("admin key ingests: %d %s", a.Code, a.Raw)
	}
	s.stop()

	logs2 := &logging.Buffer{}
	s = startGW(t, "sensor,gateway", dir, logs2)
	if strings.Contains(logs2.String(), key) || strings.Contains(logs2.String(), "admin API key") {
		t.Fatalf("a later start shows a key again:\n%s", logs2)
	}
	if a := do(t, "GET", s.url+"/sensors/k1", nil, auth(key)...); a.Code != 200 || a.Body["id"] != "k1" {
		t.Fatalf("the key of the first start still works: %d %s", a.Code, a.Raw)
	}
	raw, _ := os.ReadFile(filepath.Join(dir, gateway.DefaultKeysFile))
	if strings.Contains(string(raw), key) || !strings.Contains(string(raw), gateway.HashKey(key)) {
		t.Fatalf("the keys file must hold the hash only: %s", raw)
	}
}

// TestGatewayAuthBeforeProxying runs every part the program has: 401 and 403 come
// from the gateway whatever runs behind it; a key with the right scope reaches the
// service when it runs, and gets 503 at once when it does not.
func TestGatewayAuthBeforeProxying(t *testing.T) {
	keysFile := filepath.Join(t.TempDir(), "keys.json")
	keys := map[string]string{}
	for name, sc := range map[string][]gateway.Scope{"reader": {gateway.ScopeRead}, "ingester": {gateway.ScopeIngest}, "admin": {gateway.ScopeAdmin}, "gone": {gateway.ScopeAdmin}} {
		keys[name] = addKey(t, keysFile, name, sc...)
	}
	if err := gateway.RemoveKey(keysFile, "gone"); err != nil {
		t.Fatal(err)
	}
	s := startGW(t, "all", t.TempDir(), nil, "-keys="+keysFile, "-rate-limit=0")
	now := time.Now().UTC().Format(time.RFC3339)
	for _, rc := range []struct {
		method, path, body string
		need               gateway.Scope
	}{
		{"GET", "/sensors", "", gateway.ScopeRead},
		{"POST", "/sensors/data", `{"sensor_id":"m1","type":"co2","value":600,"timestamp":"` + now + `"}`, gateway.ScopeIngest},
		{"GET", "/rooms", "", gateway.ScopeRead},
		{"POST", "/rooms", `{"id":"auth-room","name":"Auth"}`, gateway.ScopeAdmin},
		{"GET", "/analytics/summary", "", gateway.ScopeRead},
		{"GET", "/rules", "", gateway.ScopeRead},
		{"POST", "/rules", `{}`, gateway.ScopeAdmin},
		{"GET", "/alerts", "", gateway.ScopeRead},
		{"GET", "/events", "", gateway.ScopeRead},
		{"POST", "/notifications/send", `{"severity":"info","title":"t","message":"m"}`, gateway.ScopeAdmin},
	} {
		up := gateway.Upstream(rc.path)
		running := s.app.Addr(up) != ""
		for _, kc := range []struct {
			name, key string
			code      int
			scopes    []gateway.Scope // what the key may do
		}{
			{"none", "", 401, nil}, {"wrong", "atr_wrong", 401, nil}, {"revoked", keys["gone"], 401, nil},
			{"reader", keys["reader"], 0, []gateway.Scope{gateway.ScopeRead}},
			{"ingester", keys["ingester"], 0, []gateway.Scope{gateway.ScopeIngest}},
			{"admin", keys["admin"], 0, []gateway.Scope{gateway.ScopeRead, gateway.ScopeIngest, gateway.ScopeAdmin}},
		} {
			t.Run(fmt.Sprintf("%s %s/%s", rc.method, rc.path, kc.name), func(t *testing.T) {
				var h []string
				if kc.key != "" {
					h = auth(kc.key)
				}
				a := do(t, rc.method, s.url+rc.path, []byte(rc.body), h...)
				allowed := slices.Contains(kc.scopes, rc.need)
				switch {
				case kc.code != 0:
					if a.Code != kc.code {
						t.Fatalf("%d, want %d: %s", a.Code, kc.code, a.Raw)
					}
				case !allowed:
					if a.Code != 403 {
						t.Fatalf("%d, want 403: %s", a.Code, a.Raw)
					}
				case running:
					if a.Code == 401 || a.Code == 403 || a.Code >= 500 {
						t.Fatalf("%s runs: %d %s", up, a.Code, a.Raw)
					}
				default:
					if a.Code != 503 || a.Head.Get("Retry-After") == "" {
						t.Fatalf("%s does not run: %d %s, want 503 with Retry-After", up, a.Code, a.Raw)
					}
				}
			})
		}
	}
}

// TestGatewayReachesEveryDocumentedRoute sends every operation of the OpenAPI
// document through the gateway to the parts this program runs: none may meet the
// service router's "no such endpoint" or 405.
func TestGatewayReachesEveryDocumentedRoute(t *testing.T) {
	keysFile := filepath.Join(t.TempDir(), "keys.json")
	admin := addKey(t, keysFile, "admin", gateway.ScopeAdmin)
	s := startGW(t, "all", t.TempDir(), nil, "-keys="+keysFile, "-rate-limit=0")
	var doc struct {
		Paths map[string]map[string]any `json:"paths"`
	}
	if err := json.Unmarshal(do(t, "GET", s.url+"/openapi.json", nil).Raw, &doc); err != nil {
		t.Fatal(err)
	}
	var ops []string
	for p, item := range doc.Paths {
		for m := range item {
			if m != "parameters" {
				ops = append(ops, strings.ToUpper(m)+" "+p)
			}
		}
	}
	sort.Strings(ops)
	checked := 0
	for _, o := range ops {
		method, path, _ := strings.Cut(o, " ")
		up := gateway.Upstream(path)
		if up == "" || s.app.Addr(up) == "" {
			continue
		}
		checked++
		t.Run(o, func(t *testing.T) {
			concrete := strings.NewReplacer("{id}", "doc-check", "{sensor_id}", "doc-sensor").Replace(path)
			a := do(t, method, s.url+concrete, []byte(`{}`), auth(admin)...)
			if a.Code == 405 || (a.Code == 404 && strings.HasPrefix(fmt.Sprint(a.Body["detail"]), "no such endpoint")) {
				t.Fatalf("%s %s is documented but %s does not serve it: %d %s", method, concrete, up, a.Code, a.Raw)
			}
		})
	}
	if checked == 0 {
		t.Fatal("no documented route was checked")
	}
}

// TestAgentForwardsThroughTheGateway runs the real edge agent with -cloud-url at the
// gateway and an ingest key as -token; readings published over MQTT reach the sensor
// service and read back through the gateway with a read key.
func TestAgentForwardsThroughTheGateway(t *testing.T) {
	keysFile := filepath.Join(t.TempDir(), "keys.json")
	ingest := addKey(t, keysFile, "agent-hq", gateway.ScopeIngest)
	reader := addKey(t, keysFile, "dashboard", gateway.ScopeRead)
	s := startGW(t, "sensor,gateway", t.TempDir(), nil, "-keys="+keysFile)

	ag := agenttest.Run(t, nil, nil, "-mqtt-addr=127.0.0.1:0", "-http-addr=127.0.0.1:0", "-allow-anonymous",
		"-spool="+filepath.Join(t.TempDir(), "spool.db"), "-cloud-url="+s.url, "-token="+ingest,
		"-site=hq", "-linger=50ms", "-shutdown-timeout=2s")

	// paho (MQTT 5)
	conn, err := net.DialTimeout("tcp", ag.MQTTAddr(), 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	c := paho.NewClient(paho.ClientConfig{Conn: conn})
	pctx, pcancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer pcancel()
	if _, err := c.Connect(pctx, &paho.Connect{ClientID: "gw-sensor-1", CleanStart: true, KeepAlive: 30}); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = c.Disconnect(&paho.Disconnect{}) }()
	if _, err := c.Publish(pctx, &paho.Publish{QoS: 1, Topic: "atrium/room-gw/gw-sensor-1", Payload: []byte(`{"temperature":21.5,"humidity":40}`)}); err != nil {
		t.Fatal(err)
	}
	want := map[string]int{"gw-sensor-1": 2}

	// mosquitto_pub (MQTT 3.1.1), when installed
	if mosq, err := exec.LookPath("mosquitto_pub"); err == nil {
		host, port, _ := strings.Cut(ag.MQTTAddr(), ":")
		out, err := exec.CommandContext(pctx, mosq, "-h", host, "-p", port, "-V", "mqttv311", "-q", "1",
			"-i", "gw-sensor-2", "-t", "atrium/room-gw/gw-sensor-2/co2", "-m", "612").CombinedOutput()
		if err != nil {
			t.Fatalf("mosquitto_pub: %v: %s", err, out)
		}
		want["gw-sensor-2"] = 1
	} else if testenv.Required() {
		t.Fatal("mosquitto_pub not installed")
	}

	for id, n := range want {
		deadline := time.Now().Add(20 * time.Second)
		for {
			a := do(t, "GET", s.url+"/sensors/"+id+"/data", nil, auth(reader)...)
			if rs, _ := a.Body["readings"].([]any); len(rs) == n {
				r := rs[0].(map[string]any)
				if r["room_id"] != "room-gw" {
					t.Fatalf("reading %v", r)
				}
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("readings of %s never arrived through the gateway: %d %s", id, a.Code, a.Raw)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	// The agent's key may ingest, not read.
	if a := do(t, "GET", s.url+"/sensors", nil, auth(ingest)...); a.Code != 403 {
		t.Fatalf("ingest key reads: %d", a.Code)
	}
}

// BenchmarkGatewayOverhead measures what the gateway adds in front of the room
// service on GET /rooms/{id}/metrics, side by side in one run, with one client and
// its warm connections for every path, in the two shapes a gateway runs in:
//   - local: `atrium -target=sensor,room,gateway`, one process, where the gateway
//     serves the room service in-process;
//   - remote: `atrium -target=gateway` of its own, reaching the room service over
//     a loopback connection, as when the parts run apart (here in the same test
//     process, so on the same two cores).
//
// Per path:
//   - paced at 2,000 requests/s: p50 and p99 latency (target: p50 added ≤ 0.5 ms);
//   - closed loop with 16 clients: 20 rounds of 0.3 s on each path, the order of
//     the paths turned each round, so load from elsewhere that rises or falls
//     during a round hits every path alike. Per round the gateway/direct ratio of
//     requests/s (target: median ≥ 0.7×, with its quartiles, min and max), and the
//     process CPU per request on each path (client, gateway and service all run in
//     this process, so added-cpu-µs/req, the median of the rounds' gateway − direct
//     CPU, is what the gateway adds).
//
// Run: go test -run '^$' -bench GatewayOverhead -benchtime=1x -count 5 ./cloud
func BenchmarkGatewayOverhead(b *testing.B) {
	keysFile := filepath.Join(b.TempDir(), "keys.json")
	key := addKey(b, keysFile, "bench", gateway.ScopeRead)
	s := startGW(b, "sensor,room,gateway", b.TempDir(), nil, "-keys="+keysFile, "-rate-limit=0")
	direct := "http://" + s.app.Addr("room")
	remote := startGW(b, "gateway", b.TempDir(), nil, "-keys="+keysFile, "-rate-limit=0",
		"-room-url="+direct, "-sensor-url=http://"+s.app.Addr("sensor"))
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64, MaxIdleConns: 256}}
	now := time.Now().UTC().Add(-time.Minute).Truncate(time.Second)
	seed := fmt.Sprintf(`{"batch_id":"gw-bench-1","readings":[
		{"sensor_id":"bt1","room_id":"bench-room","type":"temperature","value":21,"timestamp":%q},
		{"sensor_id":"bt2","room_id":"bench-room","type":"temperature","value":23,"timestamp":%q},
		{"sensor_id":"bc1","room_id":"bench-room","type":"co2","value":700,"timestamp":%q}]}`, ts(now), ts(now), ts(now))
	resp, err := client.Post("http://"+s.app.Addr("sensor")+"/sensors/data", "application/json", strings.NewReader(seed))
	if err != nil || resp.StatusCode != 200 {
		b.Fatalf("seed: %v %v", resp, err)
	}
	resp.Body.Close()
	if n := roomCount(b, direct, "bench-room", "temperature", 2, 60*time.Second); n != 2 {
		b.Fatalf("seeded temperature readings in the room = %d, want 2", n)
	}
	path := "/rooms/bench-room/metrics"
	get := func(base string) (time.Duration, error) {
		req, _ := http.NewRequest("GET", base+path, nil)
		req.Header.Set("Authorization", "Bearer "+key)
		start := time.Now()
		resp, err := client.Do(req)
		if err != nil {
			return 0, err
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			return 0, fmt.Errorf("status %d", resp.StatusCode)
		}
		return time.Since(start), nil
	}
	// paced sends rate requests/s for d, 32 in flight at most, and returns the
	// latencies and the achieved rate.
	paced := func(base string, rate int, d time.Duration) ([]time.Duration, float64) {
		n := int(d.Seconds() * float64(rate))
		jobs := make(chan struct{}, n)
		var mu sync.Mutex
		lat := make([]time.Duration, 0, n)
		var wg sync.WaitGroup
		var failed atomic.Int64
		for range 32 {
			wg.Go(func() {
				for range jobs {
					l, err := get(base)
					if err != nil {
						failed.Add(1)
						continue
					}
					mu.Lock()
					lat = append(lat, l)
					mu.Unlock()
				}
			})
		}
		start := time.Now()
		for i := range n {
			if wait := time.Until(start.Add(time.Duration(i) * time.Second / time.Duration(rate))); wait > 0 {
				time.Sleep(wait)
			}
			jobs <- struct{}{}
		}
		close(jobs)
		wg.Wait()
		if failed.Load() > 0 {
			b.Fatalf("%d requests to %s failed", failed.Load(), base)
		}
		return lat, float64(n) / time.Since(start).Seconds()
	}
	// closed runs 16 clients back to back for d: requests/s and process CPU-µs per
	// request. The rate counts the requests still in flight at d and the time they
	// took to finish, so a slower path is not flattered by its longer tail.
	closed := func(base string, d time.Duration) (perSec, cpuUS float64) {
		var n, failed atomic.Int64
		cpu0 := testenv.ProcessCPU(b)
		start := time.Now()
		stop := start.Add(d)
		var wg sync.WaitGroup
		for range 16 {
			wg.Go(func() {
				for time.Now().Before(stop) {
					if _, err := get(base); err != nil {
						failed.Add(1)
						continue
					}
					n.Add(1)
				}
			})
		}
		wg.Wait()
		if failed.Load() > 0 {
			b.Fatalf("%d requests to %s failed", failed.Load(), base)
		}
		return float64(n.Load()) / time.Since(start).Seconds(), float64((testenv.ProcessCPU(b) - cpu0).Microseconds()) / float64(max(n.Load(), 1))
	}
	pct := func(l []time.Duration, p float64) float64 {
		return float64(l[int(float64(len(l)-1)*p)].Microseconds()) / 1000
	}
	// quantile interpolates linearly between the closest ranks.
	quantile := func(v []float64, q float64) float64 {
		v = slices.Clone(v)
		slices.Sort(v)
		pos := q * float64(len(v)-1)
		i := int(pos)
		if i+1 >= len(v) {
			return v[len(v)-1]
		}
		return v[i] + (pos-float64(i))*(v[i+1]-v[i])
	}
	median := func(v []float64) float64 { return quantile(v, .5) }
	type result struct {
		name      string // metric prefix: "" for direct
		base      string
		lat       []time.Duration
		pacedRate float64
		rates     []float64
		cpu       []float64
	}
	paths := []*result{{name: "direct-", base: direct}, {name: "", base: s.url}, {name: "remote-", base: remote.url}}
	for range b.N {
		for _, p := range paths {
			paced(p.base, 2000, 500*time.Millisecond) // warm up every path
		}
		for range 3 { // interleave, so drift on a busy machine hits every path alike
			for _, p := range paths {
				l, rate := paced(p.base, 2000, time.Second)
				p.lat, p.pacedRate = append(p.lat, l...), rate
			}
		}
		for _, p := range paths {
			slices.Sort(p.lat)
			closed(p.base, 300*time.Millisecond) // warm 16 connections on each path
		}
		for i := range 20 {
			for k := range paths {
				p := paths[(i+k)%len(paths)]
				r, c := closed(p.base, 300*time.Millisecond)
				p.rates, p.cpu = append(p.rates, r), append(p.cpu, c)
			}
		}
	}
	d := paths[0]
	b.ReportMetric(pct(d.lat, .5), "direct-p50-ms")
	b.ReportMetric(pct(d.lat, .99), "direct-p99-ms")
	b.ReportMetric(median(d.rates), "direct-req/s")
	b.ReportMetric(median(d.cpu), "direct-cpu-µs/req")
	for _, g := range paths[1:] {
		var ratios, added []float64
		for i := range d.rates {
			ratios = append(ratios, g.rates[i]/d.rates[i])
			added = append(added, g.cpu[i]-d.cpu[i])
		}
		b.ReportMetric(pct(g.lat, .5), g.name+"gateway-p50-ms")
		b.ReportMetric(pct(g.lat, .5)-pct(d.lat, .5), g.name+"added-p50-ms")
		b.ReportMetric(pct(g.lat, .99), g.name+"gateway-p99-ms")
		b.ReportMetric(g.pacedRate, g.name+"gateway-paced-req/s")
		b.ReportMetric(median(g.rates), g.name+"gateway-req/s")
		b.ReportMetric(median(g.cpu), g.name+"gateway-cpu-µs/req")
		b.ReportMetric(median(added), g.name+"added-cpu-µs/req")
		b.ReportMetric(median(ratios), g.name+"throughput-ratio")
		b.ReportMetric(quantile(ratios, .25), g.name+"p25-ratio")
		b.ReportMetric(quantile(ratios, .75), g.name+"p75-ratio")
		b.ReportMetric(slices.Min(ratios), g.name+"min-ratio")
		b.ReportMetric(slices.Max(ratios), g.name+"max-ratio")
	}
}
