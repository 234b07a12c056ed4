package agent_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"runtime/debug"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/atrium-iot/atrium/internal/testwait"

	"github.com/atrium-iot/atrium/internal/httpx/httpxtest"

	"github.com/atrium-iot/atrium/agent/agenttest"

	"github.com/eclipse/paho.golang/paho"

	"github.com/atrium-iot/atrium/agent"
	"github.com/atrium-iot/atrium/cloud"
	"github.com/atrium-iot/atrium/internal/launch"
	"github.com/atrium-iot/atrium/internal/logging"
	"github.com/atrium-iot/atrium/internal/mqtttest"
	"github.com/atrium-iot/atrium/internal/testenv"
)

// waitFor is the deadline of every wait: generous, for a noisy 2-core machine under
// the race detector. Waits poll; they return as soon as their condition holds.
const waitFor = 90 * time.Second

// testSite is the -site of every in-process agent.
const testSite = "test-site"

var binDir string // where TestMain lets the agent binary be built

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "atrium-agent-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binDir = dir
	code := m.Run()
	_ = os.RemoveAll(dir)
	os.Exit(code)
}

func noEnv(string) string { return "" }

// testLogger discards, unless ATRIUM_TEST_LOG is set (then it writes to the test's output).
func testLogger(t testing.TB) *slog.Logger {
	if os.Getenv("ATRIUM_TEST_LOG") == "" {
		return logging.Discard()
	}
	return slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// poll waits until cond holds, failing the test after waitFor.
func poll(t testing.TB, what string, cond func() bool) {
	t.Helper()
	testwait.Within(t, waitFor, what, cond)
}

// ---- the cloud: the real sensor service with its SQLite store ----

// cloudSvc is the real sensor service, built by the cloud program's own flag parsing.
// It can be stopped and started again on the same address and data directory.
type cloudSvc struct {
	t      testing.TB
	dir    string
	addr   string
	url    string
	cancel context.CancelFunc
	done   chan error
}

// startCloud starts the sensor service on 127.0.0.1:0 with its store in a new directory.
func startCloud(t testing.TB) *cloudSvc {
	t.Helper()
	c := &cloudSvc{t: t, dir: t.TempDir(), addr: "127.0.0.1:0"}
	c.start()
	t.Cleanup(c.stop)
	return c
}

// startCloudDown reserves an address and a data directory for a sensor service that is
// not running yet: the agent sees connection refused until start.
func startCloudDown(t testing.TB) *cloudSvc {
	t.Helper()
	c := startCloud(t)
	c.stop()
	return c
}

func (c *cloudSvc) start() {
	c.t.Helper()
	if c.cancel != nil {
		return
	}
	args := []string{"-target=sensor", "-sensor-addr=" + c.addr, "-data-dir=" + c.dir, "-log-level=error"}
	cfg, err := cloud.ParseFlags(args, noEnv, io.Discard)
	if err != nil {
		c.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var app *cloud.App
	// The port was free a moment ago; something else may hold it briefly: retry.
	deadline := time.Now().Add(waitFor)
	for {
		app, err = cloud.New(ctx, cfg, logging.Discard())
		if err == nil || c.addr == "127.0.0.1:0" || time.Now().After(deadline) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil {
		cancel()
		c.t.Fatalf("start sensor service on %s: %v", c.addr, err)
	}
	c.addr = app.Addr("sensor")
	c.url = "http://" + c.addr
	c.cancel, c.done = cancel, make(chan error, 1)
	go func() { c.done <- app.Run(ctx) }()
}

func (c *cloudSvc) stop() {
	if c.cancel == nil {
		return
	}
	c.cancel()
	if err := <-c.done; err != nil {
		c.t.Errorf("sensor service: %v", err)
	}
	c.cancel = nil
}

// storedReading is a reading as the sensor service answers it.
type storedReading struct {
	SensorID  string    `json:"sensor_id"`
	RoomID    string    `json:"room_id"`
	Site      string    `json:"site"`
	Type      string    `json:"type"`
	Value     float64   `json:"value"`
	Unit      string    `json:"unit"`
	Timestamp time.Time `json:"timestamp"`
}

func (r storedReading) identity() string {
	return r.SensorID + "|" + r.Type + "|" + r.Timestamp.UTC().Format(time.RFC3339Nano)
}

// readings returns every reading of a sensor (nil when the sensor is unknown), walking
// the cursor pagination with pages of 1000; typ filters by type when not empty.
func (c *cloudSvc) readings(t testing.TB, sensorID, typ string) []storedReading {
	t.Helper()
	var out []storedReading
	cursor := ""
	for {
		q := url.Values{"limit": {"1000"}}
		if typ != "" {
			q.Set("type", typ)
		}
		if cursor != "" {
			q.Set("cursor", cursor)
		}
		var page struct {
			Readings   []storedReading `json:"readings"`
			NextCursor string          `json:"next_cursor"`
		}
		code := getJSON(t, c.url+"/sensors/"+url.PathEscape(sensorID)+"/data?"+q.Encode(), &page)
		if code == http.StatusNotFound {
			return nil
		}
		if code != http.StatusOK {
			t.Fatalf("readings of %s: status %d", sensorID, code)
		}
		out = append(out, page.Readings...)
		if page.NextCursor == "" {
			return out
		}
		cursor = page.NextCursor
	}
}

// count is how many readings of a sensor the service holds.
func (c *cloudSvc) count(t testing.TB, sensorID string) int {
	t.Helper()
	return len(c.readings(t, sensorID, ""))
}

// byIdentity indexes readings by identity and fails the test on a reading stored twice.
func byIdentity(t testing.TB, rs []storedReading) map[string]storedReading {
	t.Helper()
	m := make(map[string]storedReading, len(rs))
	for _, r := range rs {
		if _, dup := m[r.identity()]; dup {
			t.Errorf("reading %s stored twice", r.identity())
		}
		m[r.identity()] = r
	}
	return m
}

// getJSON GETs url and decodes a 2xx body into v; it returns the status.
func getJSON(t testing.TB, u string, v any) int {
	t.Helper()
	return httpxtest.GetJSON(t, nil, u, v).Code
}

// ---- Prometheus text ----

// metrics is a scrape of a /metrics page.
type metrics = httpxtest.Metrics

// scrape reads GET base/metrics.
func scrape(t testing.TB, base string) metrics {
	t.Helper()
	return httpxtest.Scrape(t, nil, base)
}

// ---- the agent, in process ----

// agentRun is an agent started through the real flag parsing, running in this process.
type agentRun struct {
	cfg    agent.Config
	mqtt   string // host:port of the broker
	status string // base URL of the status server
	run    *agenttest.Running
}

// runAgent starts an agent with args, after edit (when not nil) on its
// configuration, logging to log (testLogger when nil).
func runAgent(t testing.TB, log *slog.Logger, edit func(*agent.Config), args ...string) *agentRun {
	t.Helper()
	if log == nil {
		log = testLogger(t)
	}
	r := agenttest.Run(t, log, edit, args...)
	return &agentRun{cfg: r.Config, mqtt: r.MQTTAddr(), status: "http://" + r.HTTPAddr(), run: r}
}

// startAgent starts an agent on loopback ports with a spool in a new directory, after
// the flags in extra (later flags win). It is stopped at the end of the test.
func startAgent(t testing.TB, cloudURL string, extra ...string) *agentRun {
	t.Helper()
	args := []string{
		"-mqtt-addr=127.0.0.1:0", "-http-addr=127.0.0.1:0", "-allow-anonymous",
		"-cloud-url=" + cloudURL, "-spool=" + filepath.Join(t.TempDir(), "spool.db"),
		"-site=" + testSite, "-linger=50ms", "-shutdown-timeout=2s",
	}
	return startAgentArgs(t, append(args, extra...)...)
}

func startAgentArgs(t testing.TB, args ...string) *agentRun {
	t.Helper()
	return runAgent(t, nil, nil, args...)
}

// stop cancels the agent's context and waits for Run to return.
func (r *agentRun) stop() error { return r.run.Stop() }

func (r *agentRun) metrics(t testing.TB) metrics { return scrape(t, r.status) }

// ---- MQTT 5 clients (paho.golang) ----

// dial connects an MQTT 5 client; user "" connects without credentials.
func dial(t testing.TB, addr, clientID, user, password string, will *paho.WillMessage) (*mqtttest.Client, *paho.Connack, error) {
	t.Helper()
	cp := mqtttest.Login(clientID, user, password)
	cp.WillMessage = will
	return mqtttest.Dial(t, addr, cp, mqtttest.Options{Within: waitFor})
}

// mustDial connects an MQTT 5 client without credentials.
func mustDial(t testing.TB, addr, clientID string) *mqtttest.Client {
	t.Helper()
	return mqtttest.MustDial(t, addr, mqtttest.Login(clientID, "", ""), mqtttest.Options{Within: waitFor})
}

// ---- the atrium-agent program, as a child process ----

var (
	buildOnce sync.Once
	agentBin  string
	buildErr  error
)

// buildAgent builds ./cmd/atrium-agent once per test binary, with the race detector when
// the tests run with it (so the build cache of the test build is reused).
func buildAgent(t testing.TB) string {
	t.Helper()
	buildOnce.Do(func() {
		var flags []string
		if raceEnabled() {
			flags = append(flags, "-race")
		}
		buildErr = launch.Compile(context.Background(), binDir, nil, flags, "./cmd/atrium-agent")
		agentBin = filepath.Join(binDir, "atrium-agent")
	})
	if buildErr != nil {
		testenv.Missing(t, "cannot build atrium-agent: %v", buildErr)
	}
	return agentBin
}

// raceEnabled reports whether this test binary was built with the race detector.
func raceEnabled() bool {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return false
	}
	for _, s := range bi.Settings {
		if s.Key == "-race" {
			return s.Value == "true"
		}
	}
	return false
}

// startChild runs the binary and waits until its status server answers /healthz. It
// is killed at the end of the test if it still runs.
func startChild(t testing.TB, bin, statusAddr string, args ...string) *launch.Proc {
	t.Helper()
	p, err := launch.Start(bin, args...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { kill(p) })
	testwait.WithinState(t, waitFor, "atrium-agent healthy", func() (bool, string) {
		if p.Exited() {
			t.Fatalf("atrium-agent exited during start: %v; log:\n%s", p.Err(), tail(p))
		}
		resp, err := http.Get("http://" + statusAddr + "/healthz")
		if err != nil {
			return false, err.Error()
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK, resp.Status
	})
	return p
}

// kill sends SIGKILL and waits for the process to be gone.
func kill(p *launch.Proc) {
	_ = p.Cmd.Process.Kill()
	<-p.Done()
}

// tail is the end of what the program logged.
func tail(p *launch.Proc) string {
	s := p.Log.String()
	return s[max(0, len(s)-4000):]
}

// runCLI runs `atrium-agent args...` in process and returns its standard output.
func runCLI(t testing.TB, args ...string) string {
	t.Helper()
	var out, errb bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	if err := agent.Run(ctx, args, noEnv, &out, &errb); err != nil {
		t.Fatalf("atrium-agent %q: %v: %s", args, err, errb.Bytes())
	}
	return out.String()
}

// deadLetter is one line of `atrium-agent spool dead-letters`.
type deadLetter struct {
	ID      uint64 `json:"id"`
	At      string `json:"at"`
	Topic   string `json:"topic"`
	Batch   string `json:"batch"`
	Reason  string `json:"reason"`
	Payload string `json:"payload"`
}

func listDeadLetters(t testing.TB, spoolPath string) []deadLetter {
	t.Helper()
	out := runCLI(t, "spool", "dead-letters", "-spool", spoolPath)
	var dls []deadLetter
	dec := json.NewDecoder(strings.NewReader(out))
	for dec.More() {
		var d deadLetter
		if err := dec.Decode(&d); err != nil {
			t.Fatalf("dead-letters output: %v: %s", err, out)
		}
		dls = append(dls, d)
	}
	return dls
}
