package httpx

import (
	"context"
	"log/slog"
	"net/http"
	"sort"
	"sync"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Check reports whether one dependency (a store, the bus, an upstream) is reachable.
type Check func(ctx context.Context) error

// NewRouter is what every Atrium HTTP server starts from: a chi router with request
// ids, panic recovery, access logs and per-route metrics, problem+json answers for
// unknown routes and methods, HEAD answered wherever GET is, request bodies
// required to be application/json (415 otherwise), and /healthz, /readyz and
// /metrics mounted.
func NewRouter(log *slog.Logger, reg *prometheus.Registry, checks map[string]Check) chi.Router {
	r := chi.NewRouter()
	r.Use(RequestIDs, AccessLog(log, NewMetrics(reg)), Recoverer(log), GetHead, RequireContentType(JSONType))
	r.NotFound(func(w http.ResponseWriter, r *http.Request) {
		WriteProblem(w, r, NewProblem(http.StatusNotFound, "no such endpoint: "+r.Method+" "+r.URL.Path))
	})
	r.MethodNotAllowed(func(w http.ResponseWriter, r *http.Request) {
		WriteProblem(w, r, NewProblem(http.StatusMethodNotAllowed, "method "+r.Method+" is not allowed on "+r.URL.Path))
	})
	Health(r, reg, checks)
	return r
}

// NewRegistry makes a Prometheus registry with the Go and process collectors.
func NewRegistry() *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return reg
}

// Health mounts /healthz (alive), /readyz (every check passes) and /metrics on r.
func Health(r chi.Router, reg prometheus.Gatherer, checks map[string]Check) {
	r.Get("/healthz", func(w http.ResponseWriter, _ *http.Request) {
		JSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})
	r.Get("/readyz", HandleReady(checks))
	r.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
}

// HandleReady runs every check in parallel with a short deadline and answers 200 when
// all pass, 503 otherwise, naming each check's state.
func HandleReady(checks map[string]Check) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
		defer cancel()
		type result struct {
			Status string `json:"status"`
			Error  string `json:"error,omitempty"`
		}
		out := make(map[string]result, len(checks))
		var mu sync.Mutex
		var wg sync.WaitGroup
		names := make([]string, 0, len(checks))
		for n := range checks {
			names = append(names, n)
		}
		sort.Strings(names)
		ok := true
		for _, n := range names {
			wg.Add(1)
			go func() {
				defer wg.Done()
				err := checks[n](ctx)
				mu.Lock()
				defer mu.Unlock()
				if err != nil {
					ok = false
					out[n] = result{"down", err.Error()}
					return
				}
				out[n] = result{Status: "up"}
			}()
		}
		wg.Wait()
		status, code := "ready", http.StatusOK
		if !ok {
			status, code = "not ready", http.StatusServiceUnavailable
		}
		JSON(w, code, map[string]any{"status": status, "checks": out})
	}
}
