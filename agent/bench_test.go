package agent_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/atrium-iot/atrium/agent/agenttest"

	"github.com/eclipse/paho.golang/paho"
	"github.com/mochi-mqtt/server/v2/hooks/auth"

	"github.com/atrium-iot/atrium/agent"
	"github.com/atrium-iot/atrium/agent/forward"
	"github.com/atrium-iot/atrium/agent/spool"
	"github.com/atrium-iot/atrium/cloud/cloudtest"
	"github.com/atrium-iot/atrium/internal/mqtttest"
	"github.com/atrium-iot/atrium/internal/reading"
	"github.com/atrium-iot/atrium/internal/testenv"
)

// benchWait bounds every wait of these benchmarks (a noisy 2-core machine).
const benchWait = 2 * time.Minute

// Shape of the ingest load: benchConns connections, each with benchWindow
// goroutines publishing one QoS 1 message at a time, so each connection has up to
// benchWindow messages in flight (paho numbers them; the broker's Receive Maximum
// caps the window: mochi 1,024, Mosquitto 20).
const (
	benchConns  = 50
	benchWindow = 8
)

// BenchmarkIngest publishes small JSON payloads of two readings each
// ({"temperature":…,"humidity":…,"ts":…} on atrium/<room>/<sensor>) at QoS 1 from
// 32 (issue 17's load), 50 and 500 paho connections into three brokers, each timed from the first publish
// to the last PUBACK:
//
//   - agent: the whole agent, whose PUBACK means both readings are fsynced in its
//     spool. Its cloud URL is a closed port, so the forwarder only backs off and
//     probes: this measures ingest, not forwarding (BenchmarkDrain does that).
//   - mochi: a bare mochi-mqtt v2 server (allow-all auth hook, nothing on disk).
//   - mosquitto: a private `mosquitto` on a free loopback port (persistence off), or
//     the one on 127.0.0.1:1883 when the binary is not installed; skipped when
//     neither is there, unless ATRIUM_REQUIRE_INTEGRATION=1.
//
// The targets are agent ≥ 0.8× mochi and ≥ 1.0× Mosquitto in msgs/s.
func BenchmarkIngest(b *testing.B) {
	var agentHTTP string // the agent's status address, while the agent runs
	brokers := []struct {
		name  string
		start func(b *testing.B) string
	}{
		{"agent", func(b *testing.B) string {
			a := benchStartAgent(b, benchClosedURL(b), nil)
			agentHTTP = a.HTTPAddr()
			return a.MQTTAddr()
		}},
		{"mochi", benchStartMochi},
		{"mosquitto", benchStartMosquitto},
	}
	for _, conns := range []int{32, benchConns, 10 * benchConns} {
		for _, br := range brokers {
			b.Run(fmt.Sprintf("conns=%d/broker=%s", conns, br.name), func(b *testing.B) {
				agentHTTP = ""
				addr := br.start(b)
				clients := benchConnect(b, addr, conns)
				var before benchSpoolStats
				if agentHTTP != "" {
					before = benchStatus(b, agentHTTP)
				}
				cpu0 := testenv.ProcessCPU(b)
				b.ResetTimer()
				if err := benchPublish(clients, benchWindow, b.N); err != nil {
					b.Fatal(err)
				}
				b.StopTimer()
				secs := b.Elapsed().Seconds()
				b.ReportMetric(float64(b.N)/secs, "msgs/s")
				b.ReportMetric(float64(2*b.N)/secs, "readings/s")
				if br.name != "mosquitto" { // its own process: its CPU is not counted here
					b.ReportMetric(float64((testenv.ProcessCPU(b)-cpu0).Microseconds())/float64(b.N), "cpu-µs/msg")
				}
				if agentHTTP != "" {
					if c := benchStatus(b, agentHTTP).Commits - before.Commits; c > 0 {
						b.ReportMetric(float64(b.N)/float64(c), "msgs/commit")
					}
				}
			})
		}
	}
}

// BenchmarkIngestSpooled checks what BenchmarkIngest's agent numbers mean: after the
// last PUBACK, every reading of every message is in the spool, and it reports how
// many readings each fsync carried.
func BenchmarkIngestSpooled(b *testing.B) {
	a := benchStartAgent(b, benchClosedURL(b), nil)
	clients := benchConnect(b, a.MQTTAddr(), benchConns)
	before := benchStatus(b, a.HTTPAddr())
	cpu0 := testenv.ProcessCPU(b)
	b.ResetTimer()
	if err := benchPublish(clients, benchWindow, b.N); err != nil {
		b.Fatal(err)
	}
	b.StopTimer()
	b.ReportMetric(float64((testenv.ProcessCPU(b)-cpu0).Microseconds())/float64(b.N), "cpu-µs/msg")
	after := benchStatus(b, a.HTTPAddr())
	if got, want := after.Appended-before.Appended, int64(2*b.N); got != want {
		b.Fatalf("spool took %d readings after %d PUBACKs, want %d", got, b.N, want)
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
	if c := after.Commits - before.Commits; c > 0 {
		b.ReportMetric(float64(2*b.N)/float64(c), "readings/commit")
	}
}

// BenchmarkDrain measures draining a full spool into the real sensor service
// (SQLite store): a spool file already holding 100,000 readings of ~150 bytes from
// 2,000 sensors (ATRIUM_BENCH_BIG=1: 1,000,000), timed from opening the spool
// (which recounts it) until the spool is empty and the sensor service has accepted
// every reading. It runs the spool and the forwarder as the agent wires them (the
// broker plays no part in a drain), with the default batch size (500) and a larger
// one, and with one batch in flight (the forwarder before MaxInFlight) or the
// default four. Target ≥ 100,000 readings/s. cpu-µs/reading is the CPU time of the
// whole process (forwarder and sensor service) per reading.
func BenchmarkDrain(b *testing.B) {
	total := 100_000
	if os.Getenv("ATRIUM_BENCH_BIG") == "1" {
		total = 1_000_000
	}
	for _, batch := range []int{500, 2000} { // 500 is -batch-max's default
		for _, inflight := range []int{1, forward.DefaultMaxInFlight} {
			b.Run(fmt.Sprintf("readings=%d/batch=%d/inflight=%d", total, batch, inflight), func(b *testing.B) {
				var (
					drained int
					cpu     time.Duration
				)
				for range b.N {
					b.StopTimer()
					dir := b.TempDir()
					path := filepath.Join(dir, "spool.db")
					benchFillSpool(b, path, total)
					cloudURL := benchStartCloud(b, filepath.Join(dir, "cloud"))
					cpu0 := testenv.ProcessCPU(b)
					b.StartTimer()
					s := benchDrain(b, path, cloudURL, batch, inflight, total)
					b.StopTimer()
					cpu += testenv.ProcessCPU(b) - cpu0
					if st := s.Stats(); st.Readings != 0 || st.OpenBatches != 0 {
						b.Fatalf("spool after the drain: %d readings, %d open batches", st.Readings, st.OpenBatches)
					}
					drained += total
				}
				b.ReportMetric(float64(drained)/b.Elapsed().Seconds(), "readings/s")
				b.ReportMetric(float64(cpu.Microseconds())/float64(drained), "cpu-µs/reading")
			})
		}
	}
}

// benchDrain opens the spool at path and forwards it to cloudURL until the sensor
// service has accepted total readings and the spool is empty.
func benchDrain(b *testing.B, path, cloudURL string, batch, inflight, total int) *spool.Spool {
	b.Helper()
	s, err := spool.Open(path, spool.Options{})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = s.Close() })
	f := forward.New(forward.NewSpoolQueue(s), forward.Config{URL: cloudURL, MaxCount: batch, MaxInFlight: inflight})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- f.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			b.Errorf("forwarder: %v", err)
		}
	}()
	deadline := time.Now().Add(10 * benchWait)
	for {
		accepted, err := benchMetric(cloudURL+"/metrics", `atrium_sensor_readings_total{outcome="accepted"}`)
		if err == nil && accepted >= float64(total) && s.Stats().Readings == 0 {
			if accepted != float64(total) {
				b.Fatalf("sensor service accepted %v readings, want %d", accepted, total)
			}
			return s
		}
		if time.Now().After(deadline) {
			b.Fatalf("not drained in time: sensor service accepted %v of %d (err %v)", accepted, total, err)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// benchWaitDrained polls until the sensor service has accepted total readings and
// the agent's spool is empty.
func benchWaitDrained(b *testing.B, agentAddr, cloudURL string, total int) {
	b.Helper()
	deadline := time.Now().Add(10 * benchWait)
	for {
		accepted, err := benchMetric(cloudURL+"/metrics", `atrium_sensor_readings_total{outcome="accepted"}`)
		if err == nil && accepted >= float64(total) {
			if st := benchStatus(b, agentAddr); st.Readings == 0 {
				if accepted != float64(total) {
					b.Fatalf("sensor service accepted %v readings, want %d", accepted, total)
				}
				return
			}
		}
		if time.Now().After(deadline) {
			b.Fatalf("not drained in time: sensor service accepted %v of %d (err %v)", accepted, total, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// benchFillSpool writes total readings (JSON as the agent spools it) into a new
// spool file at path: 2,000 sensors in 200 rooms, four types, unique identities.
func benchFillSpool(b *testing.B, path string, total int) {
	b.Helper()
	s, err := spool.Open(path, spool.Options{})
	if err != nil {
		b.Fatal(err)
	}
	kinds := []struct {
		typ, unit string
		base      float64
	}{{"temperature", "Cel", 21}, {"humidity", "%RH", 40}, {"co2", "ppm", 600}, {"light", "lx", 300}}
	start := time.Now().Add(-48 * time.Hour).Truncate(time.Millisecond)
	chunk := make([][]byte, 0, 10_000)
	for i := range total {
		k := kinds[i%len(kinds)]
		r := reading.Reading{
			SensorID:  fmt.Sprintf("sensor_%04d", i%2000),
			RoomID:    fmt.Sprintf("room-%03d", i%2000/10),
			Site:      "bench-site",
			Type:      k.typ,
			Value:     k.base + float64(i%97)/10,
			Unit:      k.unit,
			Timestamp: start.Add(time.Duration(i) * time.Millisecond),
		}
		chunk = append(chunk, r.AppendJSON(make([]byte, 0, 160)))
		if len(chunk) == cap(chunk) || i == total-1 {
			if err := s.Append(context.Background(), chunk); err != nil {
				b.Fatal(err)
			}
			chunk = chunk[:0]
		}
	}
	if got := s.Stats().Readings; got != int64(total) {
		b.Fatalf("spool holds %d readings, want %d", got, total)
	}
	if err := s.Close(); err != nil {
		b.Fatal(err)
	}
}

// benchStartAgent runs an agent on loopback ports with anonymous devices, its spool
// in a temporary directory, after applying edit to the parsed configuration.
func benchStartAgent(b testing.TB, cloudURL string, edit func(*agent.Config)) *agent.Agent {
	b.Helper()
	return agenttest.Run(b, nil, edit,
		"-mqtt-addr=127.0.0.1:0", "-http-addr=127.0.0.1:0", "-allow-anonymous",
		"-spool="+filepath.Join(b.TempDir(), "spool.db"), "-cloud-url="+cloudURL,
		"-site=bench-site", "-shutdown-timeout=200ms").Agent
}

// benchStartCloud runs the real sensor service (SQLite store under dir) on a
// loopback port and returns its base URL.
func benchStartCloud(b testing.TB, dir string) string {
	b.Helper()
	app := cloudtest.Start(b, "-target=sensor", "-sensor-addr=127.0.0.1:0", "-data-dir="+dir)
	return "http://" + app.Addr("sensor")
}

// benchClosedURL is the URL of a loopback port nothing listens on.
func benchClosedURL(b testing.TB) string {
	b.Helper()
	return "http://" + testenv.FreeAddr(b)
}

// benchStartMochi runs a bare mochi-mqtt server: an allow-all auth hook and nothing else.
func benchStartMochi(b *testing.B) string {
	b.Helper()
	return mqtttest.Serve(b, new(auth.AllowHook), nil)
}

// benchStartMosquitto starts a private mosquitto (anonymous on loopback, no
// persistence) on a free port when the binary is installed; otherwise it uses the
// one on 127.0.0.1:1883 if that port answers.
func benchStartMosquitto(b *testing.B) string {
	b.Helper()
	bin, err := exec.LookPath("mosquitto")
	if err != nil {
		for _, dir := range []string{"/usr/sbin", "/usr/local/sbin"} {
			if _, serr := os.Stat(filepath.Join(dir, "mosquitto")); serr == nil {
				bin, err = filepath.Join(dir, "mosquitto"), nil
				break
			}
		}
	}
	if err == nil {
		for range 3 { // the free port may be taken between the check and mosquitto's bind
			if addr, ok := benchRunMosquitto(b, bin); ok {
				return addr
			}
		}
		b.Fatal("mosquitto did not start on a free port in 3 tries")
	}
	const shared = "127.0.0.1:1883"
	if c, derr := net.DialTimeout("tcp", shared, 2*time.Second); derr == nil {
		_ = c.Close()
		return shared
	}
	testenv.Missing(b, "mosquitto not installed (%v) and nothing on %s", err, shared)
	return ""
}

// benchRunMosquitto runs bin on a free port; ok is false when it exited before
// accepting connections.
func benchRunMosquitto(b *testing.B, bin string) (string, bool) {
	b.Helper()
	addr := testenv.FreeAddr(b)
	_, port, _ := net.SplitHostPort(addr)
	conf := filepath.Join(b.TempDir(), "mosquitto.conf")
	text := "listener " + port + " 127.0.0.1\nallow_anonymous true\npersistence false\nlog_dest stderr\nlog_type error\nmax_queued_messages 100000\n"
	if err := os.WriteFile(conf, []byte(text), 0o644); err != nil {
		b.Fatal(err)
	}
	cmd := exec.Command(bin, "-c", conf)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	stop := func() {
		_ = cmd.Process.Kill()
		<-exited
	}
	deadline := time.Now().Add(benchWait)
	for time.Now().Before(deadline) {
		select {
		case err := <-exited:
			b.Logf("mosquitto exited: %v: %s", err, stderr.String())
			return "", false
		default:
		}
		if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
			_ = c.Close()
			b.Cleanup(stop)
			return addr, true
		}
		time.Sleep(20 * time.Millisecond)
	}
	stop()
	b.Fatalf("mosquitto on %s did not accept connections within %v", addr, benchWait)
	return "", false
}

// benchClient is one device: an MQTT 5 connection and the topic it publishes to.
type benchClient struct {
	c     *paho.Client
	topic string
	seq   atomic.Int64
}

// benchConnect opens n MQTT 5 connections to addr, anonymous, with clean sessions,
// and disconnects them at the end of the benchmark.
func benchConnect(b testing.TB, addr string, n int) []*benchClient {
	b.Helper()
	clients := make([]*benchClient, n)
	errs := make(chan error, n)
	sem := make(chan struct{}, 32)
	var wg sync.WaitGroup
	for i := range clients {
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			c, err := benchDial(addr, fmt.Sprintf("bench-%d-%d", time.Now().UnixNano(), i))
			if err != nil {
				errs <- err
				return
			}
			clients[i] = &benchClient{c: c, topic: fmt.Sprintf("atrium/room-%03d/sensor_%04d", i/10, i)}
		})
	}
	wg.Wait()
	close(errs)
	b.Cleanup(func() {
		for _, c := range clients {
			if c != nil {
				_ = c.c.Disconnect(&paho.Disconnect{})
			}
		}
	})
	if err := <-errs; err != nil {
		b.Fatal(err)
	}
	return clients
}

// benchDial connects one anonymous MQTT 5 client.
func benchDial(addr, id string) (*paho.Client, error) {
	conn, err := net.DialTimeout("tcp", addr, benchWait)
	if err != nil {
		return nil, fmt.Errorf("dial %s: %w", addr, err)
	}
	// Keepalive 0: no pinger, whose PINGREQ costs the benchmark nothing useful.
	c := paho.NewClient(paho.ClientConfig{Conn: conn, PacketTimeout: benchWait})
	ctx, cancel := context.WithTimeout(context.Background(), benchWait)
	defer cancel()
	ack, err := c.Connect(ctx, &paho.Connect{ClientID: id, KeepAlive: 0, CleanStart: true})
	if err != nil {
		_ = conn.Close()
		return nil, fmt.Errorf("connect %s: %w (connack %+v)", id, err, ack)
	}
	return c, nil
}

// benchPayload is one message of two readings, timestamped in Unix ms.
func benchPayload(seq int64, now time.Time) []byte {
	return fmt.Appendf(nil, `{"temperature":%d.%d,"humidity":%d,"ts":%d}`, 18+seq%8, seq%10, 35+seq%20, now.UnixMilli())
}

// benchPublish sends total QoS 1 messages spread over the clients, window at a time
// per client, and returns the first failure.
func benchPublish(clients []*benchClient, window, total int) error {
	var next atomic.Int64
	var failed atomic.Pointer[error]
	var wg sync.WaitGroup
	for _, cl := range clients {
		for range window {
			wg.Go(func() {
				for next.Add(1) <= int64(total) && failed.Load() == nil {
					if err := benchPublishOne(cl); err != nil {
						failed.CompareAndSwap(nil, &err)
						return
					}
				}
			})
		}
	}
	wg.Wait()
	if p := failed.Load(); p != nil {
		return *p
	}
	return nil
}

// benchPublishOne publishes the client's next message and waits for its PUBACK.
func benchPublishOne(cl *benchClient) error {
	ctx, cancel := context.WithTimeout(context.Background(), benchWait)
	defer cancel()
	p := &paho.Publish{Topic: cl.topic, QoS: 1, Payload: benchPayload(cl.seq.Add(1), time.Now())}
	if _, err := cl.c.Publish(ctx, p); err != nil {
		return fmt.Errorf("publish on %s: %w", cl.topic, err)
	}
	return nil
}

// benchSpoolStats is the part of the agent's /status these benchmarks read.
type benchSpoolStats struct {
	Readings int64
	Appended int64
	Commits  int64
}

// benchStatus reads the spool's counters from the agent's /status.
func benchStatus(b testing.TB, httpAddr string) benchSpoolStats {
	b.Helper()
	var doc struct {
		Spool benchSpoolStats `json:"spool"`
	}
	if code := getJSON(b, "http://"+httpAddr+"/status", &doc); code != http.StatusOK {
		b.Fatalf("agent /status: %d", code)
	}
	return doc.Spool
}

// benchMetric reads one sample of a Prometheus text exposition; series is the
// metric name with its labels exactly as exposed.
func benchMetric(url, series string) (float64, error) {
	resp, err := http.Get(url)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), series+" "); ok {
			return strconv.ParseFloat(strings.TrimSpace(rest), 64)
		}
	}
	if err := sc.Err(); err != nil {
		return 0, err
	}
	return 0, errNoSeries
}

var errNoSeries = errors.New("series not exposed")
