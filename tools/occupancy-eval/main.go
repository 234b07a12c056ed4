// Command occupancy-eval measures the room service's occupancy estimate through
// the whole stack: it converts a UCI Occupancy Detection file into the
// simulator's generic replay CSV (each column but Occupancy a sensor of its own in
// room uci-od-room; -no-light leaves the light column out), starts `atrium
// -target=sensor,room` and `atrium-agent` on free ports, replays the file with
// `atrium-sim -replay -speed max`, waits for the room service to have applied
// every reading and estimated every minute, reads
// GET /rooms/uci-od-room/history?type=occupied_estimate&bucket=1m and judges
// every row of the file by the latest estimate at or before it (≥ 0.5 =
// occupied). It prints accuracy, precision, recall and the confusion matrix, and
// how many minutes differ from the same estimator run in process.
//
//	go run ./tools/occupancy-eval -data DIR/datatest.txt [-no-light]
//
// The programs are built into a temporary directory unless -bin names a
// directory holding atrium, atrium-agent and atrium-sim.
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/atrium-iot/atrium/internal/flagenv"
	"github.com/atrium-iot/atrium/internal/launch"
	"github.com/atrium-iot/atrium/services/room/occupancy"
)

func main() {
	ctx := context.Background()
	if _, err := run(ctx, os.Args[1:], os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "occupancy-eval:", err)
		os.Exit(1)
	}
}

// Room is the room the replayed sensors report from.
const Room = "uci-od-room"

// Result is what one evaluation found.
type Result struct {
	File      string
	Light     bool
	Readings  int
	Estimates []occupancy.Estimate
	Confusion occupancy.Confusion
	// Offline is the same file through the estimator in process; Differ counts
	// the minutes whose estimate is not the same through the stack.
	Offline occupancy.Confusion
	Differ  int
	Elapsed time.Duration
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) (*Result, error) {
	fs := flag.NewFlagSet("occupancy-eval", flag.ContinueOnError)
	fs.SetOutput(stderr)
	data := fs.String("data", "", "UCI Occupancy Detection file to replay (datatest.txt, datatest2.txt)")
	noLight := fs.Bool("no-light", false, "leave the light column out")
	binDir := fs.String("bin", "", "directory with atrium, atrium-agent and atrium-sim (default: build them)")
	timeout := fs.Duration("timeout", 10*time.Minute, "give up after this long")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if *data == "" {
		return nil, errors.New("-data is required")
	}
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	f, err := os.Open(*data)
	if err != nil {
		return nil, err
	}
	samples, err := occupancy.ReadUCI(f)
	f.Close()
	if err != nil {
		return nil, err
	}
	if len(samples) == 0 {
		return nil, fmt.Errorf("%s: no rows", *data)
	}
	dir, err := os.MkdirTemp("", "occupancy-eval-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	progs := launch.In(*binDir)
	if *binDir == "" {
		if progs, err = launch.Build(ctx, filepath.Join(dir, "bin")); err != nil {
			return nil, err
		}
	}
	csvPath := filepath.Join(dir, "replay.csv")
	n, err := writeReplay(csvPath, samples, !*noLight)
	if err != nil {
		return nil, err
	}

	start := time.Now()
	cloud, err := launch.Start(progs.Atrium, "-target=sensor,room", "-sensor-addr", "127.0.0.1:0",
		"-room-addr", "127.0.0.1:0", "-data-dir", filepath.Join(dir, "cloud"), "-log-format", "json")
	if err != nil {
		return nil, err
	}
	defer stop(cloud)
	sensorAddr, err := await(ctx, cloud, "addr", "listening", "server", "sensor")
	if err != nil {
		return nil, err
	}
	roomAddr, err := await(ctx, cloud, "addr", "listening", "server", "room")
	if err != nil {
		return nil, err
	}
	agent, err := launch.Start(progs.Agent, "-allow-anonymous", "-mqtt-addr", "127.0.0.1:0",
		"-http-addr", "127.0.0.1:0", "-cloud-url", "http://"+sensorAddr, "-spool", filepath.Join(dir, "spool.db"),
		"-site", "eval", "-linger", "100ms", "-log-format", "json")
	if err != nil {
		return nil, err
	}
	defer stop(agent)
	mqtt, err := await(ctx, agent, "mqtt", "agent started")
	if err != nil {
		return nil, err
	}
	sim := exec.CommandContext(ctx, progs.Sim, "-broker", "tcp://"+mqtt, "-replay", csvPath,
		"-speed", "max", "-summary", "json", "-log-format", "json", "-progress", "off")
	sim.Env = flagenv.Strip(os.Environ())
	var simErr strings.Builder
	sim.Stderr = &simErr
	out, err := sim.Output()
	if err != nil {
		return nil, fmt.Errorf("atrium-sim: %w\n%s", err, tail(simErr.String()))
	}
	var sum struct {
		Expect struct {
			Stored int `json:"stored"`
		} `json:"expect"`
	}
	if err := json.Unmarshal(out, &sum); err != nil {
		return nil, fmt.Errorf("atrium-sim summary: %w", err)
	}
	if sum.Expect.Stored != n {
		return nil, fmt.Errorf("atrium-sim expects %d readings stored, the file gives %d", sum.Expect.Stored, n)
	}
	roomURL := "http://" + roomAddr
	est, err := settle(ctx, roomURL, n, samples)
	if err != nil {
		return nil, err
	}
	use := [4]bool{true, true, true, !*noLight}
	off := occupancy.Default().Offline(samples, use)
	r := &Result{File: *data, Light: !*noLight, Readings: n, Estimates: est, Elapsed: time.Since(start),
		Confusion: occupancy.Judge(est, samples), Offline: occupancy.Judge(off, samples)}
	var diffs []string
	r.Differ, diffs = differ(est, off)
	streams := "with light"
	if *noLight {
		streams = "without light (temperature, humidity, co2)"
	}
	c := r.Confusion
	fmt.Fprintf(stdout, "%s, %s: %d rows, %d readings replayed, %d minutes estimated, %s\n",
		filepath.Base(*data), streams, len(samples), n, len(est), r.Elapsed.Round(time.Second))
	fmt.Fprintf(stdout, "  accuracy %.2f %%  precision %.2f %%  recall %.2f %%\n", 100*c.Accuracy(), 100*c.Precision(), 100*c.Recall())
	fmt.Fprintf(stdout, "  confusion (rows: actual, columns: estimated)\n")
	fmt.Fprintf(stdout, "               empty  occupied\n  empty     %7d   %7d\n  occupied  %7d   %7d\n", c.TN, c.FP, c.FN, c.TP)
	fmt.Fprintf(stdout, "  in process: accuracy %.2f %%; minutes that differ from it: %d\n", 100*r.Offline.Accuracy(), r.Differ)
	for _, d := range diffs {
		fmt.Fprintf(stdout, "    %s\n", d)
	}
	return r, nil
}

// columns are the replayed columns: sensor, type, unit.
var columns = []struct {
	sensor, typ, unit string
	value             func(s *occupancy.Sample) float64
	light             bool
}{
	{"uci-od-temperature", "temperature", "Cel", func(s *occupancy.Sample) float64 { return s.Temperature }, false},
	{"uci-od-humidity", "humidity", "%RH", func(s *occupancy.Sample) float64 { return s.Humidity }, false},
	{"uci-od-light", "light", "lx", func(s *occupancy.Sample) float64 { return s.Light }, true},
	{"uci-od-co2", "co2", "ppm", func(s *occupancy.Sample) float64 { return s.CO2 }, false},
}

// writeReplay writes the generic replay CSV and returns how many readings it holds.
func writeReplay(path string, samples []occupancy.Sample, light bool) (int, error) {
	f, err := os.Create(path)
	if err != nil {
		return 0, err
	}
	w := bufio.NewWriter(f)
	fmt.Fprintln(w, "timestamp,sensor_id,room_id,type,value,unit")
	n := 0
	for i := range samples {
		s := &samples[i]
		for _, c := range columns {
			if c.light && !light {
				continue
			}
			fmt.Fprintf(w, "%s,%s,%s,%s,%s,%s\n", s.Time.UTC().Format(time.RFC3339), c.sensor, Room, c.typ,
				strconv.FormatFloat(c.value(s), 'g', -1, 64), c.unit)
			n++
		}
	}
	if err := w.Flush(); err != nil {
		f.Close()
		return 0, err
	}
	return n, f.Close()
}

// settle waits until the room service has applied n readings and its estimate
// series is complete (an estimate for the minute of the last row) and no longer
// changes between two reads a publish round apart; it returns the series.
func settle(ctx context.Context, roomURL string, n int, samples []occupancy.Sample) ([]occupancy.Estimate, error) {
	last := samples[len(samples)-1].Time.Truncate(time.Minute)
	var prev []occupancy.Estimate
	for {
		applied, err := appliedReadings(ctx, roomURL)
		if err != nil {
			return nil, err
		}
		if applied >= float64(n) {
			est, err := history(ctx, roomURL, samples[0].Time.Truncate(time.Minute), last.Add(time.Minute))
			if err != nil {
				return nil, err
			}
			if len(est) > 0 && est[len(est)-1].Minute.Equal(last) && same(est, prev) {
				return est, nil
			}
			prev = est
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("waiting for the room service (applied readings %v of %d): %w", applied, n, ctx.Err())
		case <-time.After(500 * time.Millisecond):
		}
	}
}

func same(a, b []occupancy.Estimate) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// differ counts the minutes whose estimates differ between a and b (present in
// one only, or by more than 1e-9).
// The first few are described.
func differ(a, b []occupancy.Estimate) (int, []string) {
	m := map[time.Time]float64{}
	for _, e := range b {
		m[e.Minute] = e.P
	}
	d := 0
	var say []string
	for _, e := range a {
		p, ok := m[e.Minute]
		if !ok || math.Abs(p-e.P) > 1e-9 {
			if d++; d <= 5 {
				say = append(say, fmt.Sprintf("%s: through the stack %.6f, in process %.6f (present %v)", e.Minute.Format(time.RFC3339), e.P, p, ok))
			}
		}
		delete(m, e.Minute)
	}
	for t, p := range m {
		if d++; d <= 5 {
			say = append(say, fmt.Sprintf("%s: not through the stack, in process %.6f", t.Format(time.RFC3339), p))
		}
	}
	return d, say
}

func appliedReadings(ctx context.Context, base string) (float64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/metrics", nil)
	if err != nil {
		return 0, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), `atrium_room_readings_total{outcome="applied"} `); ok {
			return strconv.ParseFloat(v, 64)
		}
	}
	return 0, sc.Err()
}

// history reads the room's occupied_estimate series at 1m, page by page.
func history(ctx context.Context, base string, from, to time.Time) ([]occupancy.Estimate, error) {
	var out []occupancy.Estimate
	cursor := ""
	for {
		q := url.Values{"type": {occupancy.Series}, "bucket": {"1m"}, "limit": {"1000"},
			"from": {from.Format(time.RFC3339)}, "to": {to.Format(time.RFC3339)}}
		if cursor != "" {
			q.Set("cursor", cursor)
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/rooms/"+Room+"/history?"+q.Encode(), nil)
		if err != nil {
			return nil, err
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return nil, err
		}
		var page struct {
			Buckets []struct {
				Start time.Time `json:"start"`
				Mean  float64   `json:"mean"`
			} `json:"buckets"`
			NextCursor string `json:"next_cursor"`
		}
		err = json.NewDecoder(resp.Body).Decode(&page)
		resp.Body.Close()
		if resp.StatusCode == http.StatusNotFound {
			return nil, nil // the room is not there yet
		}
		if err != nil || resp.StatusCode != http.StatusOK {
			return nil, fmt.Errorf("history: status %d: %v", resp.StatusCode, err)
		}
		for _, b := range page.Buckets {
			out = append(out, occupancy.Estimate{Minute: b.Start.UTC(), P: b.Mean})
		}
		if page.NextCursor == "" {
			return out, nil
		}
		cursor = page.NextCursor
	}
}

// await waits for p's log line with message msg (and the key, value pairs of
// kv) and returns its field field.
func await(ctx context.Context, p *launch.Proc, field, msg string, kv ...string) (string, error) {
	l, err := p.Await(ctx, launch.Message(msg, kv...))
	if err != nil {
		return "", fmt.Errorf("%s: waiting for %q: %w\n%s", filepath.Base(p.Cmd.Path), msg, err, tail(p.Log.String()))
	}
	s, _ := l[field].(string)
	return s, nil
}

// stop interrupts the program and waits for it (killing it after 15 s).
func stop(p *launch.Proc) { _ = p.Stop(15 * time.Second) }

func tail(s string) string {
	if len(s) > 3000 {
		return s[len(s)-3000:]
	}
	return s
}
