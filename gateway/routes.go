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
// Handler), the OpenAPI document and the dashboard (open: the page asks for a key
// and calls the API with it; not part of the API) on the chi router r; and every
// service route behind a key, in the returned proxyRouter in front of r.
func (g *Gateway) routes(r chi.Router) *proxyRouter {
	r.Get("/openapi.json", handleOpenAPI())
	for _, p := range dashboard.Paths {
		r.Get(p, g.dashboard.ServeHTTP)
	}
	pr := &proxyRouter{open: r}
	for _, rt := range upstreamRoutes {
		up := g.upstreams[rt.upstream]
		route := proxyRoute{prefix: rt.prefix, sub: g.handleUpstream(up, rt.prefix+"/*")}
		if !rt.subOnly {
			route.exact = g.handleUpstream(up, rt.prefix)
		}
		pr.routes = append(pr.routes, route)
	}
	return pr
}

// proxyRouter sends a request under an upstream's prefix to its proxy and every
// other to the router of the open endpoints. Matching a prefix is a string
// compare per route: the proxied requests, nearly all of the traffic, pay no
// route context, request copy or path values.
type proxyRouter struct {
	routes []proxyRoute
	open   http.Handler
}

type proxyRoute struct {
	prefix string
	exact  http.Handler // the prefix itself; nil when only paths under it are routed
	sub    http.Handler // paths under the prefix
}

func (pr *proxyRouter) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if h := pr.match(r); h != nil {
		h.ServeHTTP(w, r)
		return
	}
	pr.open.ServeHTTP(w, r)
}

// match is the handler of the upstream route for r's path, or nil. It reads the
// path as chi does: the escaped form when the URL has one.
func (pr *proxyRouter) match(r *http.Request) http.Handler {
	path := r.URL.RawPath
	if path == "" {
		path = r.URL.Path
	}
	for i := range pr.routes {
		rt := &pr.routes[i]
		rest, ok := strings.CutPrefix(path, rt.prefix)
		switch {
		case !ok:
		case rest == "":
			return rt.exact // nil for a sub-only prefix: the open router answers 404
		case rest[0] == '/':
			return rt.sub
		}
	}
	return nil
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
