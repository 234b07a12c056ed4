package forward

import (
	"encoding/json"
	"fmt"
	"net/http"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/atrium-iot/atrium/agent/spool"
)

// windowReading is reading n of sensor "w<n % sensors>".
func windowReading(n, sensors int) []byte {
	return fmt.Appendf(nil, `{"sensor_id":"w%d","type":"co2","value":%d,"timestamp":"2025-11-25T12:00:00.000Z"}`, n%sensors, n)
}

// TestWindow drains a real spool (with Run, or with Flush as on shutdown) with
// several batches in flight and checks: at most
// MaxInFlight requests at once, more than one when the batches' sensors are
// disjoint, exactly one when every batch shares a sensor with the one before it;
// each reading accepted once; each sensor's readings accepted in spool order; open
// batches found at start are sent first, with their ids and readings.
func TestWindow(t *testing.T) {
	tests := []struct {
		name       string
		sensors    int  // reading n belongs to sensor n % sensors; batches hold 4
		failFirst  int  // answer 503 to this many requests, from the second on
		preformed  int  // batches formed before Run, as a crash would leave them
		flush      bool // drain with Flush (shutdown) instead of Run
		wantMaxMin int  // the least peak concurrency to see
		wantMaxMax int  // the most
	}{
		{name: "disjoint sensors", sensors: 16, wantMaxMin: 2, wantMaxMax: 4},
		{name: "shared sensors", sensors: 3, wantMaxMin: 1, wantMaxMax: 1},
		{name: "failures fall back to one at a time", sensors: 16, failFirst: 3, wantMaxMin: 1, wantMaxMax: 4},
		{name: "open batches after a restart", sensors: 16, preformed: 3, wantMaxMin: 2, wantMaxMax: 4},
		{name: "flush", sensors: 16, flush: true, wantMaxMin: 2, wantMaxMax: 4},
		{name: "flush with shared sensors", sensors: 3, flush: true, wantMaxMin: 1, wantMaxMax: 1},
	}
	const total = 64
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s, err := spool.Open(filepath.Join(t.TempDir(), "spool.db"), spool.Options{})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = s.Close() })
			var rs [][]byte
			for n := range total {
				rs = append(rs, windowReading(n, tc.sensors))
			}
			if err := s.Append(t.Context(), rs); err != nil {
				t.Fatal(err)
			}
			var pre []spool.Batch
			for range tc.preformed {
				b, ok, err := s.FormBatch(4, 0)
				if err != nil || !ok {
					t.Fatalf("FormBatch: ok=%v err=%v", ok, err)
				}
				pre = append(pre, b)
			}

			var (
				inFlight, peak atomic.Int64
				mu             sync.Mutex
				requests       int
				accepted       = map[string][]int{} // sensor → values, in acceptance order
				count          = map[int]int{}      // value → times accepted
			)
			c := newCloud(t, func(_ int, r received) (int, http.Header, string) {
				now := inFlight.Add(1)
				defer inFlight.Add(-1)
				for p := peak.Load(); now > p && !peak.CompareAndSwap(p, now); p = peak.Load() {
				}
				time.Sleep(20 * time.Millisecond) // the service's commit
				mu.Lock()
				defer mu.Unlock()
				requests++
				if requests > 1 && requests <= 1+tc.failFirst {
					return http.StatusServiceUnavailable, nil, ""
				}
				for _, raw := range r.readings {
					var rd struct {
						Sensor string `json:"sensor_id"`
						Value  int    `json:"value"`
					}
					if err := json.Unmarshal(raw, &rd); err != nil {
						t.Errorf("reading %s: %v", raw, err)
					}
					accepted[rd.Sensor] = append(accepted[rd.Sensor], rd.Value)
					count[rd.Value]++
				}
				return http.StatusOK, nil, ""
			})
			cfg := testConfig(c.srv.URL)
			cfg.MaxCount = 4
			f := New(NewSpoolQueue(s), cfg)
			if tc.flush {
				if err := f.Flush(t.Context()); err != nil {
					t.Fatal(err)
				}
			} else {
				stop := startRun(t, f)
				waitFor(t, "the spool to drain", func() bool { st := s.Stats(); return st.Readings == 0 && st.OpenBatches == 0 })
				stop()
			}
			if st := s.Stats(); st.Readings != 0 || st.OpenBatches != 0 {
				t.Fatalf("spool holds %d readings in %d open batches after draining", st.Readings, st.OpenBatches)
			}

			if p := int(peak.Load()); p < tc.wantMaxMin || p > tc.wantMaxMax {
				t.Errorf("peak concurrency %d, want %d..%d", p, tc.wantMaxMin, tc.wantMaxMax)
			}
			mu.Lock()
			defer mu.Unlock()
			for n := range total {
				if count[n] != 1 {
					t.Errorf("reading %d accepted %d times, want once", n, count[n])
				}
			}
			for sensor, vs := range accepted {
				if !slices.IsSorted(vs) {
					t.Errorf("sensor %s accepted in the order %v", sensor, vs)
				}
			}
			// The preformed batches go in the first window, each as it was formed.
			got := c.received()
			first := map[string]int{}
			for _, r := range got[:min(len(got), DefaultMaxInFlight)] {
				first[r.batchID] = len(r.readings)
			}
			for _, b := range pre {
				if n, ok := first[b.ID]; !ok || n != len(b.Readings) {
					t.Errorf("preformed batch %s (%d readings) not in the first window: %v", b.ID, len(b.Readings), first)
				}
			}
			st := f.Stats()
			if st.Forwarded != total || (tc.failFirst > 0 && st.Retries < 1) {
				t.Errorf("Stats: forwarded %d retries %d, want %d and ≥1 when failing", st.Forwarded, st.Retries, total)
			}
		})
	}
}
