//go:build unix

package gateway_test

import (
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"testing"

	"github.com/atrium-iot/atrium/gateway"
	"github.com/atrium-iot/atrium/internal/logging"
	"github.com/atrium-iot/atrium/internal/testenv"
)

// BenchmarkHandler is the gateway's own cost per proxied request: the handler chain
// (request id, access log, metrics, auth, scope, proxy) called in process, with a
// real upstream on loopback that answers a fixed small JSON body, so the round
// trip's cost is in every case alike. "json-log" writes the access log line as
// production does (JSON, to a discarding writer); "no-log" has logging off;
// "rate-limited" adds a per-key bucket (never empty here) and its headers.
// cpu-µs/op is the process's CPU per request, the upstream's share included.
//
// Run: go test -run '^$' -bench Handler -benchmem ./gateway
func BenchmarkHandler(b *testing.B) {
	body := []byte(`{"room_id":"r1","metrics":{"co2":{"value":650,"sensors":1}}}`)
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(body)
	}))
	b.Cleanup(up.Close)
	keys := filepath.Join(b.TempDir(), "keys.json")
	key, err := gateway.AddKey(keys, "bench", []gateway.Scope{gateway.ScopeRead})
	if err != nil {
		b.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		log  *slog.Logger
		rate float64
	}{
		{"json-log", slog.New(slog.NewJSONHandler(io.Discard, nil)), 0},
		{"no-log", logging.Discard(), 0},
		{"rate-limited", slog.New(slog.NewJSONHandler(io.Discard, nil)), 1e9},
	} {
		b.Run(tc.name, func(b *testing.B) {
			g, err := gateway.New(tc.log, gateway.Options{KeysFile: keys, RateLimit: tc.rate, RateBurst: 1 << 30, Upstreams: map[string]string{
				"sensor": up.URL, "room": up.URL, "analytics": up.URL, "notification": up.URL}})
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(g.Close)
			h := g.Handler()
			b.ReportAllocs()
			cpu0 := testenv.ProcessCPU(b)
			for b.Loop() {
				req := httptest.NewRequest(http.MethodGet, "/rooms/r1/metrics", nil)
				req.Header.Set("Authorization", "Bearer "+key)
				w := httptest.NewRecorder()
				h.ServeHTTP(w, req)
				if w.Code != http.StatusOK || w.Body.Len() != len(body) || (tc.rate > 0 && w.Header().Get("RateLimit-Remaining") == "") {
					b.Fatalf("%d %q", w.Code, w.Body)
				}
			}
			b.ReportMetric(float64((testenv.ProcessCPU(b)-cpu0).Microseconds())/float64(b.N), "cpu-µs/op")
		})
	}
}
