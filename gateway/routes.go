package gateway

import (
	"net/http"
	"strings"

	"github.com/go-chi/chi/v5"

	"github.com/atrium-iot/atrium/gateway/dashboard"
)

// upstreamRoutes is the gateway's whole routing table: a path prefix (the prefix
// itself and everything under it) and the service it goes to.
var upstreamRoutes = []struct {
	prefix   string
	upstream string
	subOnly  bool // only paths under the prefix, not the prefix itself
}{
	{"/sensors", "sensor", false},
	{"/rooms", "room", false},
	{"/analytics", "analytics", true},
	{"/notifications", "notification", false},
	{"/events", "notification", false},
	{"/rules", "notification", false},
	{"/alerts", "notification", false},
	{"/ws", "notification", true},
}

// routes lists the gateway's API: /healthz, /readyz and /metrics (mounted by
// Handler), the OpenAPI document, the dashboard (open: the page asks for a key and
// calls the API with it; not part of the API), and every service route behind a key.
func (g *Gateway) routes(r chi.Router) {
	r.Get("/openapi.json", handleOpenAPI())
	for _, p := range dashboard.Paths {
		r.Get(p, g.dashboard.ServeHTTP)
	}
	for _, rt := range upstreamRoutes {
		up := g.upstreams[rt.upstream]
		if !rt.subOnly {
			r.Handle(rt.prefix, g.handleUpstream(up, rt.prefix))
		}
		r.Handle(rt.prefix+"/*", g.handleUpstream(up, rt.prefix+"/*"))
	}
}

// RequiredScope is the route policy: the scope a request needs.
//
//	GET, HEAD (and WebSocket upgrades, which are GETs)  read
//	POST /sensors/data                                  ingest
//	POST /analytics/reports                             read (a report only reads data)
//	any other method (changes to rooms, rules, alerts,
//	  POST /notifications/send, …)                      admin
//
// An admin key also holds read and ingest.
func RequiredScope(method, path string) Scope {
	switch {
	case method == http.MethodGet || method == http.MethodHead:
		return ScopeRead
	case method == http.MethodPost && path == "/sensors/data":
		return ScopeIngest
	case method == http.MethodPost && path == "/analytics/reports":
		return ScopeRead
	default:
		return ScopeAdmin
	}
}

// Upstream is the service a request path goes to ("sensor", "room", "analytics",
// "notification"), or "" when the gateway does not route it.
func Upstream(path string) string {
	for _, rt := range upstreamRoutes {
		if rest, ok := strings.CutPrefix(path, rt.prefix); ok && (rest == "" && !rt.subOnly || strings.HasPrefix(rest, "/")) {
			return rt.upstream
		}
	}
	return ""
}
