// Package gateway is Atrium's API gateway (:8000): it routes the public API to the
// four services, authenticates API keys and checks their scopes, limits each key's
// request rate, answers CORS and writes one access log line per request. The keys
// file holds only hashes of the keys and is reloaded when it changes.
package gateway

import (
	"context"
	"crypto/tls"
	"fmt"
	"log/slog"
	"net/http"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/go-chi/cors"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/atrium-iot/atrium/gateway/dashboard"
	"github.com/atrium-iot/atrium/internal/httpx"
)

// KeyNameHeader tells an upstream which API key made the request: for audit, and
// the sensor service scopes batch ids to it (sensor.PrincipalHeader). The gateway
// overwrites whatever a client sends in it, and keeps it when a client's
// Connection header names it as hop-by-hop.
const KeyNameHeader = "X-Atrium-Key-Name"

// Options configure a Gateway; zero values take the defaults.
type Options struct {
	// Upstreams are the base URLs of the services by name: sensor, room, analytics,
	// notification. Every one must be given.
	Upstreams map[string]string
	// Local are the handlers of the services that run in the same process as the
	// gateway, by upstream name: requests to them, but for WebSocket upgrades, are
	// served in-process rather than over a loopback connection to their URL (which
	// /readyz and upgrades still use).
	Local map[string]http.Handler
	// KeysFile is the JSON keys file (see Key). It must exist.
	KeysFile string
	// RateLimit is the requests per second allowed per key (≤0: unlimited), and
	// RateBurst the bucket size (default 100).
	RateLimit float64
	RateBurst int
	// CORSOrigins are the origins browsers may call the API from; empty: none.
	CORSOrigins []string
	// MaxBody bounds a request body on the wire (default 8 MiB).
	MaxBody int64
	// ReloadInterval is how often the keys file is checked for changes (default 500ms).
	ReloadInterval time.Duration
	// DialTimeout bounds connecting to an upstream (default 2s) and
	// ResponseHeaderTimeout waiting for its answer (default 30s).
	DialTimeout           time.Duration
	ResponseHeaderTimeout time.Duration
	// UpstreamTLS is the TLS configuration towards https:// upstreams (nil: the
	// system's CAs).
	UpstreamTLS *tls.Config
	// Now is the gateway's clock (default time.Now).
	Now func() time.Time
}

// Gateway is the API gateway.
type Gateway struct {
	log       *slog.Logger
	opts      Options
	keys      *keyFile
	limiter   *limiter
	upstreams map[string]*upstream
	transport *http.Transport
	cors      *cors.Cors
	reg       *prometheus.Registry
	metrics   *metrics
	ids       *requestIDs
	dashboard *dashboard.Handler

	// stopping ends proxied WebSocket connections when Run returns: the HTTP
	// server's shutdown does not see hijacked connections.
	stopping context.Context
	stop     context.CancelFunc
	stopOnce sync.Once
}

type metrics struct {
	http           *httpx.Metrics
	denied         *prometheus.CounterVec
	upstreamErrors *prometheus.CounterVec
}

// New loads the keys file and builds the proxies to the upstreams.
func New(log *slog.Logger, opts Options) (*Gateway, error) {
	if opts.RateBurst <= 0 {
		opts.RateBurst = 100
	}
	if opts.MaxBody <= 0 {
		opts.MaxBody = httpx.DefaultMaxBody
	}
	if opts.ReloadInterval <= 0 {
		opts.ReloadInterval = 500 * time.Millisecond
	}
	if opts.DialTimeout <= 0 {
		opts.DialTimeout = 2 * time.Second
	}
	if opts.ResponseHeaderTimeout <= 0 {
		opts.ResponseHeaderTimeout = 30 * time.Second
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	g := &Gateway{log: log, opts: opts, reg: httpx.NewRegistry(), upstreams: map[string]*upstream{}, ids: newRequestIDs()}
	g.stopping, g.stop = context.WithCancel(context.Background())
	g.metrics = &metrics{
		http: httpx.NewMetrics(g.reg),
		denied: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "atrium_gateway_denied_total", Help: "Requests refused by the gateway, by reason (no_key, bad_key, unmapped_cert, scope, rate_limit, too_large, read_timeout).",
		}, []string{"reason"}),
		upstreamErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "atrium_gateway_upstream_errors_total", Help: "Requests the gateway could not complete upstream, by upstream and answered status.",
		}, []string{"upstream", "status"}),
	}
	g.reg.MustRegister(g.metrics.denied, g.metrics.upstreamErrors)
	g.limiter = newLimiter(opts.RateLimit, opts.RateBurst)
	kf, err := openKeyFile(opts.KeysFile, log)
	if err != nil {
		return nil, fmt.Errorf("gateway: %w", err)
	}
	kf.onReload = g.limiter.retain
	if g.dashboard, err = dashboard.New(); err != nil {
		return nil, fmt.Errorf("gateway: %w", err)
	}
	g.keys = kf
	dialer := newDialer(opts)
	g.transport = newTransport(opts, dialer)
	for _, name := range upstreamNames() {
		raw, ok := opts.Upstreams[name]
		if !ok {
			return nil, fmt.Errorf("gateway: no URL for upstream %s", name)
		}
		up, err := newUpstream(name, raw, g.transport, dialer, opts, log, g.metrics)
		if err != nil {
			return nil, fmt.Errorf("gateway: %w", err)
		}
		up.local = opts.Local[name]
		g.upstreams[name] = up
	}
	if origins := cleanOrigins(opts.CORSOrigins); len(origins) > 0 {
		g.cors = cors.New(cors.Options{
			AllowedOrigins: origins,
			AllowedMethods: []string{http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete},
			AllowedHeaders: []string{"Authorization", "Content-Type", "Content-Encoding", "Idempotency-Key", httpx.RequestIDHeader},
			ExposedHeaders: []string{httpx.RequestIDHeader, "Retry-After", "RateLimit-Limit", "RateLimit-Remaining", "RateLimit-Reset", "Location"},
			MaxAge:         600,
		})
	}
	return g, nil
}

func cleanOrigins(in []string) []string {
	var out []string
	for _, o := range in {
		if o = strings.TrimRight(strings.TrimSpace(o), "/"); o != "" {
			out = append(out, o)
		}
	}
	return out
}

// Handler is the gateway's HTTP API: the open endpoints (/healthz, /readyz,
// /metrics, /openapi.json, the dashboard at /) and the authenticated routes to the
// services. Every request gets a request id and an access log line, then panics
// are recovered and CORS answered before it is routed.
func (g *Gateway) Handler() http.Handler {
	r := chi.NewRouter()
	r.Use(recordRoute, httpx.GetHead)
	r.NotFound(func(w http.ResponseWriter, r *http.Request) {
		httpx.WriteProblem(w, r, httpx.NewProblem(http.StatusNotFound, "no such endpoint: "+r.Method+" "+r.URL.Path))
	})
	r.MethodNotAllowed(func(w http.ResponseWriter, r *http.Request) {
		httpx.WriteProblem(w, r, httpx.NewProblem(http.StatusMethodNotAllowed, "method "+r.Method+" is not allowed on "+r.URL.Path))
	})
	checks := map[string]httpx.Check{}
	for name, up := range g.upstreams {
		checks[name] = up.healthy
	}
	httpx.Health(r, g.reg, checks)
	var h http.Handler = g.routes(r)
	if g.cors != nil {
		h = g.cors.Handler(h)
	}
	return g.accessLog(httpx.Recoverer(g.log)(h))
}

// Run reloads the keys file when it changes and closes upstream connections idle
// for too long, until ctx ends; then it closes the proxied WebSocket connections
// and the idle upstream connections.
func (g *Gateway) Run(ctx context.Context) error {
	defer g.Close()
	reload := time.NewTicker(g.opts.ReloadInterval)
	defer reload.Stop()
	reap := time.NewTicker(idleConnTimeout / 6)
	defer reap.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-reload.C:
			g.keys.check()
		case <-reap.C:
			cutoff := time.Now().Add(-idleConnTimeout)
			for _, up := range g.upstreams {
				if up.direct != nil {
					up.direct.closeIdle(cutoff)
				}
			}
		}
	}
}

// Close ends proxied WebSocket connections and drops idle upstream connections.
func (g *Gateway) Close() {
	g.stopOnce.Do(func() {
		g.stop()
		for _, up := range g.upstreams {
			if up.direct != nil {
				up.direct.close()
			}
		}
		g.transport.CloseIdleConnections()
	})
}

// logWriter is the access log's view of a response: its status and size, and
// what the handlers learn on the way (the key's name, the upstream, the route).
// Handlers find it by unwrapping their ResponseWriter (see infoFrom), which costs
// no context value and no copy of the request. The single-valued headers the
// gateway sets on a request and its response point into vals, so they cost no
// allocation of their own.
type logWriter struct {
	httpx.StatusWriter
	requestID string
	key       string
	upstream  string
	route     string
	vals      [6]string // header values, one slot each: see the slot constants
}

// The slots of logWriter.vals.
const (
	slotRequestIDIn = iota
	slotRequestIDOut
	slotKeyName
	slotRateLimit
	slotRateRemaining
	slotRateReset
)

// Unwrap lets http.ResponseController reach the underlying writer (flush, hijack).
func (l *logWriter) Unwrap() http.ResponseWriter { return l.ResponseWriter }

// setHeader sets h[key] (key in canonical form) to the one value v, held in slot
// i of l.vals: no allocation, and the slice's capacity of one keeps an append
// from reaching the next slot. On a nil l (a handler used without the access log)
// it allocates the value.
func (l *logWriter) setHeader(h http.Header, key string, i int, v string) {
	if l == nil {
		h[key] = []string{v}
		return
	}
	l.vals[i] = v
	h[key] = l.vals[i : i+1 : i+1]
}

// infoFrom finds the access log's writer under w, or nil.
func infoFrom(w http.ResponseWriter) *logWriter {
	for {
		switch v := w.(type) {
		case *logWriter:
			return v
		case interface{ Unwrap() http.ResponseWriter }:
			w = v.Unwrap()
		default:
			return nil
		}
	}
}

// recordRoute tells the access log the chi route pattern of an open endpoint.
func recordRoute(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		next.ServeHTTP(w, r)
		if info, rc := infoFrom(w), chi.RouteContext(r.Context()); info != nil && rc != nil {
			info.route = rc.RoutePattern()
		}
	})
}

// accessLog gives every request its id (a well-formed incoming X-Request-ID, or a
// new one) on the request the upstream gets and on the response, then writes one
// structured line per request: who (key name), what (route, upstream), the
// outcome (status, bytes) and how long it took; and it records the request's
// metrics. Requests to the open endpoints /healthz, /readyz and /metrics log at
// debug, every other at info.
func (g *Gateway) accessLog(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		lw := &logWriter{StatusWriter: httpx.StatusWriter{ResponseWriter: w}}
		if ids := r.Header[requestIDHeader]; len(ids) > 0 && httpx.ValidRequestID(ids[0]) {
			lw.requestID = ids[0]
		} else {
			lw.requestID = g.ids.next()
			lw.setHeader(r.Header, requestIDHeader, slotRequestIDIn, lw.requestID)
		}
		lw.setHeader(w.Header(), requestIDHeader, slotRequestIDOut, lw.requestID)
		next.ServeHTTP(lw, r)
		d := time.Since(start)
		if lw.Status == 0 {
			lw.Status = http.StatusOK
		}
		route := lw.route
		if route == "" {
			route = "unmatched"
		}
		g.metrics.http.Observe(route, r.Method, lw.Status, d)
		level := slog.LevelInfo
		switch r.URL.Path {
		case "/healthz", "/readyz", "/metrics":
			level = slog.LevelDebug
		}
		ctx := r.Context()
		h := g.log.Handler()
		if !h.Enabled(ctx, level) {
			return
		}
		// Straight to the handler, as Logger.LogAttrs would after it walked the
		// stack for a source position nobody asked for.
		rec := slog.NewRecord(start.Add(d), level, "http request", 0)
		rec.AddAttrs(slog.String("method", r.Method), slog.String("path", r.URL.Path), slog.String("route", route),
			slog.String("upstream", lw.upstream), slog.String("key", lw.key),
			slog.Int("status", lw.Status), slog.Int64("bytes", lw.Bytes),
			slog.Float64("duration_ms", float64(d.Microseconds())/1000),
			slog.String("remote", r.RemoteAddr), slog.String("request_id", lw.requestID))
		_ = h.Handle(ctx, rec)
	})
}

// upstreamNames are the services the gateway routes to, sorted.
func upstreamNames() []string {
	seen := map[string]bool{}
	var out []string
	for _, rt := range upstreamRoutes {
		if !seen[rt.upstream] {
			seen[rt.upstream] = true
			out = append(out, rt.upstream)
		}
	}
	sort.Strings(out)
	return out
}
