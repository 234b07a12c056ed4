package sim_test

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"
	"time"

	sim "github.com/atrium-iot/atrium/firmware-sim"
)

// clock is a settable clock for Progress.
type clock struct{ t time.Time }

func (c *clock) now() time.Time          { return c.t }
func (c *clock) advance(d time.Duration) { c.t = c.t.Add(d) }
func newClock() *clock                   { return &clock{t: time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC)} }
func jsonLines(t *testing.T, b *bytes.Buffer) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, l := range strings.Split(strings.TrimSpace(b.String()), "\n") {
		if l == "" {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("log line %q: %v", l, err)
		}
		out = append(out, m)
	}
	return out
}

func TestFormatProgress(t *testing.T) {
	tests := []struct {
		name string
		st   sim.ProgressState
		want string
	}{
		{"start, nothing known", sim.ProgressState{Total: 200, Left: -1},
			"replay   0.0% [--------------------] 0/200 rounds  0.0 readings/s  --"},
		{"a quarter, slow", sim.ProgressState{Done: 50, Total: 200, Percent: 25, Rate: 12.345, Left: 95 * time.Second},
			"replay  25.0% [#####---------------] 50/200 rounds  12.3 readings/s  1m35s left"},
		{"most, fast, hours left", sim.ProgressState{Done: 1999, Total: 2000, Percent: 99.95, Rate: 81234.5, Left: 3723 * time.Second},
			"replay 100.0% [###################-] 1999/2000 rounds  81234 readings/s  1h02m03s left"},
		{"done", sim.ProgressState{Done: 2000, Total: 2000, Percent: 100, Rate: 900, Elapsed: 7400 * time.Millisecond},
			"replay 100.0% [####################] 2000/2000 rounds  900 readings/s  done in 7s"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := sim.FormatProgress(tc.st); got != tc.want {
				t.Errorf("\n got %q\nwant %q", got, tc.want)
			}
		})
	}
}

func TestProgress(t *testing.T) {
	t.Run("terminal: one line redrawn at most every DrawEvery, ended on Finish", func(t *testing.T) {
		c := newClock()
		var out bytes.Buffer
		p := sim.NewProgress(&out, nil, sim.ProgressOptions{Terminal: true, DrawEvery: time.Second, Now: c.now})
		p.Update(0, 100, 0) // starts the clock, draws nothing yet
		for i := 1; i <= 40; i++ {
			c.advance(100 * time.Millisecond)
			p.Update(i, 100, i*10)
		}
		draws := strings.Count(out.String(), "\r")
		if draws != 4 {
			t.Errorf("%d redraws in 4 s at one per second: %q", draws, out.String())
		}
		last := out.String()[strings.LastIndex(out.String(), "\r")+1:]
		// 40 of 100 rounds in 4 s: 100 readings/s, 6 s left.
		if !strings.HasPrefix(last, "replay  40.0% ") || !strings.Contains(last, "100 readings/s") || !strings.HasSuffix(last, "6s left") {
			t.Errorf("last line %q", last)
		}
		c.advance(6 * time.Second)
		p.Finish(100, 100, 1000)
		p.Update(100, 100, 1000) // after Finish: nothing
		if !strings.HasSuffix(out.String(), "done in 10s\n") || strings.Count(out.String(), "\n") != 1 {
			t.Errorf("finish %q", out.String())
		}
	})
	t.Run("terminal: a shorter line wipes the longer one before it", func(t *testing.T) {
		c := newClock()
		var out bytes.Buffer
		p := sim.NewProgress(&out, nil, sim.ProgressOptions{Terminal: true, DrawEvery: time.Millisecond, Now: c.now})
		p.Update(0, 10, 0)
		c.advance(time.Hour)
		p.Update(1, 10, 1) // 9 h left: a long line
		c.advance(time.Millisecond)
		p.Finish(10, 10, 10)
		lines := strings.Split(strings.TrimSuffix(out.String(), "\n"), "\r")
		if len(lines) != 3 || len(lines[2]) < len(lines[1]) {
			t.Errorf("lines %q: the last must cover the one before", lines)
		}
	})
	t.Run("log: plain lines every LogEvery, with start and finish", func(t *testing.T) {
		c := newClock()
		var buf bytes.Buffer
		log := slog.New(slog.NewJSONHandler(&buf, nil))
		p := sim.NewProgress(nil, log, sim.ProgressOptions{LogEvery: 10 * time.Second, Now: c.now})
		for i := 0; i <= 300; i++ {
			p.Update(i, 300, i*2)
			c.advance(100 * time.Millisecond)
		}
		p.Finish(300, 300, 600)
		lines := jsonLines(t, &buf)
		var msgs []string
		for _, l := range lines {
			msgs = append(msgs, l["msg"].(string))
		}
		want := "replay started,replay progress,replay progress,replay progress,replay finished"
		if strings.Join(msgs, ",") != want {
			t.Fatalf("messages %v, want %s", msgs, want)
		}
		mid := lines[1]
		if mid["done"] != 100.0 || mid["total"] != 300.0 || mid["percent"] != 33.3 || mid["readings_per_s"] != 20.0 || mid["left"] != "20s" {
			t.Errorf("progress line %v", mid)
		}
		if end := lines[4]; end["done"] != 300.0 || end["percent"] != 100.0 {
			t.Errorf("finish line %v", end)
		}
		if strings.Contains(buf.String(), "\r") {
			t.Error("log lines must not carry carriage returns")
		}
	})
	t.Run("nil does nothing", func(t *testing.T) {
		var p *sim.Progress
		p.Update(1, 2, 3)
		p.Finish(2, 2, 3)
	})
}

// TestReplayReportsProgress runs atrium-sim -replay with stderr a file-like buffer
// (not a terminal): progress comes as log lines, ending with every round done.
func TestReplayReportsProgress(t *testing.T) {
	tests := []struct {
		name string
		args []string
		want int // rounds
	}{
		{"whole file", nil, 120},
		{"with -count", []string{"-count", "50"}, 50},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			addr := startBroker(t, "")
			var stdout, stderr bytes.Buffer
			args := append([]string{"-broker", addr, "-replay", filepath.Join("testdata", "uci_occupancy_detection.txt"),
				"-speed", "max", "-log-format", "json", "-drain", "2s"}, tc.args...)
			ctx, cancel := context.WithTimeout(context.Background(), 45*time.Second)
			defer cancel()
			if err := sim.Run(ctx, args, func(string) string { return "" }, &stdout, &stderr); err != nil {
				t.Fatal(err)
			}
			var started, finished map[string]any
			for _, l := range jsonLines(t, &stderr) {
				switch l["msg"] {
				case "replay started":
					started = l
				case "replay finished":
					finished = l
				}
			}
			if started == nil || started["rounds"] != float64(tc.want) {
				t.Errorf("start line %v, want %d rounds", started, tc.want)
			}
			// Two devices publish each round; the final line comes after the drain.
			if finished == nil || finished["done"] != float64(tc.want) || finished["total"] != float64(tc.want) ||
				finished["percent"] != 100.0 || finished["readings"] != float64(tc.want*2*3) {
				t.Errorf("finish line %v, want %d of %d rounds", finished, tc.want, tc.want)
			}
			if strings.Contains(stderr.String(), "\r") {
				t.Error("no status line off a terminal")
			}
		})
	}
	t.Run("-progress off", func(t *testing.T) {
		addr := startBroker(t, "")
		var stdout, stderr bytes.Buffer
		err := sim.Run(t.Context(), []string{"-broker", addr, "-replay", filepath.Join("testdata", "generic.csv"), "-speed", "max",
			"-log-format", "json", "-progress", "off"}, func(string) string { return "" }, &stdout, &stderr)
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(stderr.String(), "replay progress") || strings.Contains(stderr.String(), "replay finished") {
			t.Errorf("progress written with -progress off:\n%s", stderr.String())
		}
	})
}
