package gateway_test

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/atrium-iot/atrium/gateway"
	"github.com/atrium-iot/atrium/internal/httpx"
	"github.com/atrium-iot/atrium/internal/httpx/httpxtest"
	"github.com/atrium-iot/atrium/internal/logging"
)

// serviceLike is an upstream built as the services are (httpx.NewRouter): a GET
// route that says which method and headers it saw, and a POST route that reads
// its body as a service does.
func serviceLike() http.Handler {
	r := httpx.NewRouter(logging.Discard(), prometheus.NewRegistry(), nil)
	seen := func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Seen-Method", r.Method)
		w.Header().Set("X-Seen-Upgrade", r.Header.Get("Upgrade")+"|"+r.Header.Get("Connection"))
		httpx.JSON(w, http.StatusOK, map[string]string{"path": r.URL.Path, "pad": strings.Repeat("x", 3000)})
	}
	for _, p := range []string{"/sensors", "/sensors/{id}", "/rooms", "/rooms/{id}/metrics", "/analytics/summary", "/rules", "/events"} {
		r.Get(p, seen)
	}
	r.Post("/sensors/data", func(w http.ResponseWriter, r *http.Request) {
		b, err := httpx.ReadBody(w, r, 0)
		if err != nil {
			httpx.Error(w, r, logging.Discard(), err)
			return
		}
		httpx.JSON(w, http.StatusOK, map[string]int{"read": len(b)})
	})
	return r
}

// gatewayShapes starts two gateways in front of serviceLike upstreams: one reaching
// them over the network, one serving them in-process (Options.Local). The gateway's
// server has the given read timeout; each upstream served over the network has
// the default.
func gatewayShapes(t *testing.T, keys string, readTimeout time.Duration) map[string]string {
	t.Helper()
	network, local, closed := map[string]string{}, map[string]http.Handler{}, map[string]string{}
	for _, n := range []string{"sensor", "room", "analytics", "notification"} {
		h := serviceLike()
		srv, err := httpx.Listen(n, "127.0.0.1:0", h, logging.Discard())
		if err != nil {
			t.Fatal(err)
		}
		go func() { _ = srv.Serve() }()
		t.Cleanup(func() { _ = srv.Shutdown(context.Background()) })
		network[n], local[n], closed[n] = srv.URL(), h, closedURL(t)
	}
	out := map[string]string{}
	for name, opts := range map[string]gateway.Options{
		"network":    {Upstreams: network, KeysFile: keys},
		"in-process": {Upstreams: closed, Local: local, KeysFile: keys},
	} {
		g, err := gateway.New(logging.Discard(), opts)
		if err != nil {
			t.Fatal(err)
		}
		srv, err := httpx.Listen("gateway", "127.0.0.1:0", g.Handler(), logging.Discard(), httpx.WithReadTimeout(readTimeout))
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		go func() { _ = srv.Serve() }()
		go func() { _ = g.Run(ctx) }()
		t.Cleanup(func() {
			_ = srv.Shutdown(context.Background())
			cancel()
		})
		out[name] = srv.URL()
	}
	return out
}

func TestHeadThroughTheGateway(t *testing.T) {
	path, keys := keyset(t, map[string][]gateway.Scope{"r": {gateway.ScopeRead}})
	for shape, url := range gatewayShapes(t, path, httpx.DefaultReadTimeout) {
		for _, p := range []string{"/healthz", "/readyz", "/openapi.json", "/", "/favicon.ico", "/ui/app.js",
			"/sensors", "/sensors/s1", "/rooms", "/rooms/r1/metrics", "/analytics/summary", "/rules", "/events"} {
			t.Run(shape+p, func(t *testing.T) {
				get := call(t, "GET", url+p, nil, bearer(keys["r"])...)
				head := call(t, "HEAD", url+p, nil, bearer(keys["r"])...)
				// (/readyz is 503 in-process: the services' URLs are closed there.)
				if head.Code != get.Code || get.Code != 200 && p != "/readyz" || len(head.Raw) != 0 {
					t.Fatalf("GET %d, HEAD %d with %d bytes of body", get.Code, head.Code, len(head.Raw))
				}
				for _, h := range []string{"Content-Type", "Content-Length", "Cache-Control", "ETag"} {
					if head.Head.Get(h) != get.Head.Get(h) {
						t.Errorf("%s: HEAD %q, GET %q", h, head.Head.Get(h), get.Head.Get(h))
					}
				}
				if head.Head.Get("Content-Length") == "" && p != "/readyz" {
					t.Errorf("HEAD without Content-Length")
				}
				if m := head.Head.Get("X-Seen-Method"); gateway.Upstream(p) != "" && m != "HEAD" {
					t.Errorf("the service saw %q, want HEAD", m)
				}
			})
		}
	}
}

// An Upgrade header does not make a plain route a WebSocket: ?access_token= is
// taken on /ws/notifications only, and elsewhere the header is dropped.
func TestUpgradeHeaderOnAPlainRoute(t *testing.T) {
	path, keys := keyset(t, map[string][]gateway.Scope{"r": {gateway.ScopeRead}})
	upgrade := []string{"Upgrade", "websocket", "Connection", "Upgrade", "Sec-WebSocket-Version", "13", "Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="}
	for shape, url := range gatewayShapes(t, path, httpx.DefaultReadTimeout) {
		t.Run(shape, func(t *testing.T) {
			for _, p := range []string{"/sensors", "/rooms", "/ws/other", "/events"} {
				a := call(t, "GET", url+p+"?access_token="+keys["r"], nil, upgrade...)
				if a.Code != 401 || !isProblem(a) {
					t.Errorf("GET %s with access_token and Upgrade: %d %s", p, a.Code, a.Raw)
				}
			}
			a := call(t, "GET", url+"/sensors", nil, append(bearer(keys["r"]), upgrade...)...)
			if a.Code != 200 || a.Head.Get("X-Seen-Upgrade") != "|" {
				t.Fatalf("GET /sensors with a key and Upgrade: %d, the service saw Upgrade|Connection %q", a.Code, a.Head.Get("X-Seen-Upgrade"))
			}
		})
	}
}

// A body trickling in is cut at the gateway's read timeout with a 408, whether
// the service runs over the network or in-process.
func TestSlowBodyThroughTheGateway(t *testing.T) {
	const timeout = 400 * time.Millisecond
	path, keys := keyset(t, map[string][]gateway.Scope{"i": {gateway.ScopeIngest}})
	for shape, url := range gatewayShapes(t, path, timeout) {
		t.Run(shape, func(t *testing.T) {
			head := fmt.Sprintf("POST /sensors/data HTTP/1.1\r\nHost: gw\r\nAuthorization: Bearer %s\r\nContent-Type: application/json\r\n", keys["i"])
			resp, body, took := httpxtest.Trickle(t, strings.TrimPrefix(url, "http://"), head, 1000, 50*time.Millisecond)
			if resp.StatusCode != http.StatusRequestTimeout || !strings.Contains(string(body), `"status":408`) {
				t.Fatalf("got %d %s", resp.StatusCode, body)
			}
			if took < timeout || took > timeout+5*time.Second {
				t.Fatalf("answered after %s, read timeout %s", took, timeout)
			}
			a := call(t, "POST", url+"/sensors/data", []byte(`{"a":1}`), append(bearer(keys["i"]), "Content-Type", "application/json")...)
			if a.Code != 200 {
				t.Fatalf("a body in time: %d %s", a.Code, a.Raw)
			}
		})
	}
}
