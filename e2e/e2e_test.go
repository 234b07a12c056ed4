package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/atrium-iot/atrium/internal/httpx/httpxtest"
	"github.com/atrium-iot/atrium/internal/launch"
	"github.com/atrium-iot/atrium/internal/reading"

	sim "github.com/atrium-iot/atrium/firmware-sim"
	"github.com/atrium-iot/atrium/internal/testwait"
)

// Generous bounds for a loaded 2-core machine; the tests poll and finish as soon as
// the condition holds, so these only matter when something is wrong.
const (
	startTimeout  = 20 * time.Second // a program binds its listeners
	simTimeout    = 60 * time.Second // atrium-sim runs to its end
	settleTimeout = 30 * time.Second // the agent's spool drains into the cloud
	exitTimeout   = 15 * time.Second // a program exits after SIGINT (its own drains are 5–10 s)
)

// bins are the programs under test, built once by TestMain; with
// ATRIUM_E2E_RACE=1 they are built with the race detector.
var bins launch.Programs

func TestMain(m *testing.M) {
	flag.Parse()
	if testing.Short() {
		os.Exit(m.Run()) // every test skips itself
	}
	dir, err := os.MkdirTemp("", "atrium-e2e-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		os.Exit(1)
	}
	var flags []string
	if os.Getenv("ATRIUM_E2E_RACE") == "1" {
		flags = append(flags, "-race") // the programs themselves under the race detector
	}
	code := 1
	if bins, err = launch.Build(context.Background(), dir, flags...); err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
	} else {
		code = m.Run()
	}
	_ = os.RemoveAll(dir)
	os.Exit(code)
}

func skipShort(t *testing.T) {
	t.Helper()
	if testing.Short() {
		t.Skip("end-to-end test: runs the real programs")
	}
}

// proc is one running program.
type proc struct {
	*launch.Proc
	name string
}

// start runs bin with args. The process is stopped (SIGINT, then SIGKILL) when the
// test ends, and its log is printed if the test failed.
func start(t *testing.T, name, bin string, args ...string) *proc {
	t.Helper()
	lp, err := launch.Start(bin, args...)
	if err != nil {
		t.Fatal(err)
	}
	p := &proc{Proc: lp, name: name}
	t.Cleanup(func() {
		// Every program must drain and exit 0 on SIGINT, whenever it comes.
		if err := p.Stop(exitTimeout); err != nil {
			t.Errorf("%s: exit after SIGINT: %v", name, err)
		}
		if strings.Contains(p.Log.String(), "WARNING: DATA RACE") {
			t.Errorf("%s: the race detector reported a data race", name)
		}
		if t.Failed() {
			t.Logf("%s %s\n--- log of %s ---\n%s", name, strings.Join(args, " "), name, tail(p.Log.String(), 3000))
		}
	})
	return p
}

func tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return "…" + s[len(s)-n:]
}

// wait waits up to d for the process to end and returns its Wait error; it fails
// the test if the process is still running then.
func (p *proc) wait(t *testing.T, d time.Duration) error {
	t.Helper()
	select {
	case <-p.Done():
		return p.Err()
	case <-time.After(d):
		t.Fatalf("%s still running after %s", p.name, d)
		return nil
	}
}

// interrupt sends SIGINT, as Ctrl-C in a terminal does, and returns how long the
// process took to exit and its Wait error. It fails the test after exitTimeout.
func (p *proc) interrupt(t *testing.T) (time.Duration, error) {
	t.Helper()
	began := time.Now()
	if err := p.Cmd.Process.Signal(os.Interrupt); err != nil {
		t.Fatalf("SIGINT %s: %v", p.name, err)
	}
	err := p.wait(t, exitTimeout)
	return time.Since(began), err
}

// awaitLog waits for a log line with msg and, for each key of want, that value.
func (p *proc) awaitLog(t *testing.T, msg string, want map[string]string) map[string]any {
	t.Helper()
	var kv []string
	for k, v := range want {
		kv = append(kv, k, v)
	}
	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()
	l, err := p.Await(ctx, launch.Message(msg, kv...))
	if errors.Is(err, launch.ErrExited) {
		t.Fatalf("%s exited (%v) before logging %q", p.name, p.Err(), msg)
	}
	if err != nil {
		t.Fatalf("%s did not log %q within %s", p.name, msg, startTimeout)
	}
	return l
}

func logString(t *testing.T, l map[string]any, key string) string {
	t.Helper()
	s, ok := l[key].(string)
	if !ok || s == "" {
		t.Fatalf("log line %v: no %q", l, key)
	}
	return s
}

// sensorService is a running `atrium -target=sensor`.
type sensorService struct {
	*proc
	addr    string // host:port it listens on
	url     string // http://addr
	dataDir string
}

// startSensor runs the sensor service on addr (127.0.0.1:0 picks a free port) with
// its SQLite store under dataDir.
func startSensor(t *testing.T, dataDir, addr string) *sensorService {
	t.Helper()
	p := start(t, "atrium", bins.Atrium, "-target=sensor", "-sensor-addr", addr, "-data-dir", dataDir, "-log-format", "json")
	l := p.awaitLog(t, "listening", map[string]string{"server": "sensor"})
	a := logString(t, l, "addr")
	return &sensorService{proc: p, addr: a, url: "http://" + a, dataDir: dataDir}
}

// edgeAgent is a running atrium-agent.
type edgeAgent struct {
	*proc
	mqtt  string // host:port of its MQTT listener
	url   string // http:// of its status server
	spool string
}

// startAgent runs the agent on free ports, forwarding to cloudURL; extra flags come last.
func startAgent(t *testing.T, cloudURL, spool string, extra ...string) *edgeAgent {
	t.Helper()
	args := append([]string{"-allow-anonymous", "-mqtt-addr", "127.0.0.1:0", "-http-addr", "127.0.0.1:0",
		"-cloud-url", cloudURL, "-spool", spool, "-site", "e2e", "-linger", "100ms", "-log-format", "json"}, extra...)
	p := start(t, "atrium-agent", bins.Agent, args...)
	l := p.awaitLog(t, "agent started", nil)
	return &edgeAgent{proc: p, mqtt: logString(t, l, "mqtt"), url: "http://" + logString(t, l, "status"), spool: spool}
}

// stack is a sensor service and an agent forwarding to it, in a fresh directory.
type stack struct {
	sensor *sensorService
	agent  *edgeAgent
	dir    string
}

func startStack(t *testing.T, agentFlags ...string) *stack {
	t.Helper()
	dir := t.TempDir()
	s := startSensor(t, filepath.Join(dir, "cloud"), "127.0.0.1:0")
	a := startAgent(t, s.url, filepath.Join(dir, "agent", "spool.db"), agentFlags...)
	return &stack{sensor: s, agent: a, dir: dir}
}

// simArgs are the flags of every simulator run: the agent's broker, JSON summary and logs.
func (s *stack) simArgs(extra ...string) []string {
	return append([]string{"-broker", "tcp://" + s.agent.mqtt, "-summary", "json", "-log-format", "json"}, extra...)
}

// runSim runs atrium-sim to its end against the stack's agent and returns its summary.
func (s *stack) runSim(t *testing.T, extra ...string) sim.Summary {
	t.Helper()
	p := start(t, "atrium-sim", bins.Sim, s.simArgs(extra...)...)
	if err := p.wait(t, simTimeout); err != nil {
		t.Fatalf("atrium-sim: %v\n%s", err, tail(p.Log.String(), 4000))
	}
	return parseSummary(t, p)
}

func parseSummary(t *testing.T, p *proc) sim.Summary {
	t.Helper()
	var sum sim.Summary
	if err := json.Unmarshal(p.Stdout.Bytes(), &sum); err != nil {
		t.Fatalf("atrium-sim summary: %v\n%s", err, p.Stdout.Bytes())
	}
	return sum
}

// settle waits until the agent has forwarded everything it took in: its spool is
// empty and the cloud acknowledged every ingested reading. It returns the agent's
// metrics then. Call it after the simulator exited: its devices had a PUBACK, so
// the spool already holds everything.
func (s *stack) settle(t *testing.T) metrics {
	t.Helper()
	var m metrics
	testwait.WithinState(t, settleTimeout, "the agent's spool to drain into the cloud", func() (bool, string) {
		m = scrape(t, s.agent.url)
		in, fwd, left := m.Get("atrium_agent_ingested_total"), m.Get("atrium_agent_forwarded_total"), m.Get("atrium_agent_spool_readings")
		return left == 0 && fwd == in, fmt.Sprintf("ingested %v, forwarded %v, in spool %v", in, fwd, left)
	})
	return m
}

var httpClient = &http.Client{Timeout: 10 * time.Second}

// getJSON GETs url and decodes a 200 answer into v.
func getJSON(t *testing.T, rawURL string, v any) {
	t.Helper()
	if a := httpxtest.GetJSON(t, httpClient, rawURL, v); a.Code != http.StatusOK {
		t.Fatalf("GET %s: %d: %s", rawURL, a.Code, tail(a.String(), 500))
	}
}

// metrics is one scrape of a /metrics page.
type metrics = httpxtest.Metrics

func scrape(t *testing.T, base string) metrics {
	t.Helper()
	return httpxtest.Scrape(t, httpClient, base)
}

// identity is a reading's identity in the contract: (sensor_id, type, timestamp in ms).
type identity struct {
	sensor, typ string
	ms          int64
}

// storedID is the identity of a reading as GET /sensors/{id}/data answers it.
func storedID(r reading.Reading) identity { return identity{r.SensorID, r.Type, r.UnixMilli()} }

// registered is an entry of GET /sensors.
type registered struct {
	ID     string   `json:"id"`
	RoomID string   `json:"room_id"`
	Site   string   `json:"site"`
	Types  []string `json:"types"`
}

// listSensors reads the whole registry, page by page.
func listSensors(t *testing.T, base string) []registered {
	t.Helper()
	return pageSensors(t, base, func(u string, v any) { getJSON(t, u, v) })
}

// pageSensors reads the whole registry at base with get, page by page.
func pageSensors(t *testing.T, base string, get func(url string, v any)) []registered {
	t.Helper()
	var all []registered
	cursor := ""
	for page := 0; ; page++ {
		q := url.Values{"limit": {"1000"}}
		if cursor != "" {
			q.Set("cursor", cursor)
		}
		var p struct {
			Sensors    []registered `json:"sensors"`
			NextCursor string       `json:"next_cursor"`
		}
		get(base+"/sensors?"+q.Encode(), &p)
		all = append(all, p.Sensors...)
		if p.NextCursor == "" {
			return all
		}
		if page > 1000 {
			t.Fatal("GET /sensors: cursor never ends")
		}
		cursor = p.NextCursor
	}
}

// readAll reads every stored reading of every registered sensor with cursor
// pagination (pages of limit), and fails on a reading listed twice.
func readAll(t *testing.T, base string, limit int) []reading.Reading {
	t.Helper()
	var all []reading.Reading
	seen := map[identity]bool{}
	for _, s := range listSensors(t, base) {
		cursor := ""
		for page := 0; ; page++ {
			q := url.Values{"limit": {strconv.Itoa(limit)}}
			if cursor != "" {
				q.Set("cursor", cursor)
			}
			var p struct {
				Readings   []reading.Reading `json:"readings"`
				NextCursor string            `json:"next_cursor"`
			}
			getJSON(t, base+"/sensors/"+url.PathEscape(s.ID)+"/data?"+q.Encode(), &p)
			for _, r := range p.Readings {
				if r.SensorID != s.ID {
					t.Errorf("GET /sensors/%s/data lists a reading of %s", s.ID, r.SensorID)
				}
				if seen[storedID(r)] {
					t.Errorf("reading %+v listed twice", storedID(r))
				}
				seen[storedID(r)] = true
			}
			all = append(all, p.Readings...)
			if p.NextCursor == "" {
				break
			}
			if page > 100000 {
				t.Fatalf("GET /sensors/%s/data: cursor never ends", s.ID)
			}
			cursor = p.NextCursor
		}
	}
	return all
}

// exitCode is the exit status in a Wait error: 0 for nil, -1 when the process did
// not exit normally (e.g. killed by a signal).
func exitCode(err error) int {
	if err == nil {
		return 0
	}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return ee.ExitCode()
	}
	return -1
}
