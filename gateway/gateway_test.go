package gateway_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/atrium-iot/atrium/internal/httpx/httpxtest"

	"github.com/coder/websocket"

	"github.com/atrium-iot/atrium/gateway"
	"github.com/atrium-iot/atrium/internal/httpx"
	"github.com/atrium-iot/atrium/internal/logging"
	"github.com/atrium-iot/atrium/internal/testenv"
	"github.com/atrium-iot/atrium/internal/testwait"
)

// waitFor bounds every poll: generous, for a busy 2-core machine.
const waitFor = 10 * time.Second

// echo is a real HTTP upstream that answers what it received, as a service would
// see it, and serves a WebSocket echo at /ws/notifications.
type echo struct {
	name string
	srv  *httptest.Server
	mu   sync.Mutex
	hits int
}

type echoed struct {
	Upstream  string `json:"upstream"`
	Method    string `json:"method"`
	Path      string `json:"path"`
	Query     string `json:"query"`
	RequestID string `json:"request_id"`
	Auth      string `json:"authorization"`
	KeyName   string `json:"key_name"`
	Forwarded string `json:"forwarded_for"`
	FwdHost   string `json:"forwarded_host"`
	FwdProto  string `json:"forwarded_proto"`
	Hop       string `json:"hop"` // hop-by-hop headers that reached the service
	BodyLen   int    `json:"body_len"`
}

func newEcho(t *testing.T, name string) *echo {
	t.Helper()
	e := &echo{name: name}
	e.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		e.mu.Lock()
		e.hits++
		e.mu.Unlock()
		if r.URL.Path == "/healthz" {
			httpx.JSON(w, 200, map[string]string{"status": "ok"})
			return
		}
		if r.URL.Path == "/ws/notifications" {
			c, err := websocket.Accept(w, r, nil)
			if err != nil {
				return
			}
			defer c.CloseNow()
			for {
				typ, b, err := c.Read(context.Background())
				if err != nil {
					return
				}
				if err := c.Write(context.Background(), typ, append([]byte(name+":"), b...)); err != nil {
					return
				}
			}
		}
		n, _ := io.Copy(io.Discard, r.Body)
		// Services echo the request id, as httpx.RequestIDs does.
		w.Header().Set(httpx.RequestIDHeader, r.Header.Get(httpx.RequestIDHeader))
		httpx.JSON(w, 200, echoed{Upstream: name, Method: r.Method, Path: r.URL.Path, Query: r.URL.RawQuery,
			RequestID: r.Header.Get(httpx.RequestIDHeader), Auth: r.Header.Get("Authorization"),
			KeyName: r.Header.Get(gateway.KeyNameHeader), Forwarded: r.Header.Get("X-Forwarded-For"),
			FwdHost: r.Header.Get("X-Forwarded-Host"), FwdProto: r.Header.Get("X-Forwarded-Proto"),
			Hop: r.Header.Get("X-Hop") + r.Header.Get("Keep-Alive") + r.Header.Get("Connection"), BodyLen: int(n)})
	}))
	t.Cleanup(e.srv.Close)
	return e
}

// keyset writes a keys file with one key per name and returns the path and the keys.
func keyset(t *testing.T, scopes map[string][]gateway.Scope) (string, map[string]string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "keys.json")
	keys := map[string]string{}
	for name, sc := range scopes {
		k, err := gateway.AddKey(path, name, sc)
		if err != nil {
			t.Fatal(err)
		}
		keys[name] = k
	}
	return path, keys
}

var allScopes = map[string][]gateway.Scope{
	"reader":   {gateway.ScopeRead},
	"ingester": {gateway.ScopeIngest},
	"admin":    {gateway.ScopeAdmin},
	"revoked":  {gateway.ScopeAdmin},
}

// gw is a running gateway on a loopback port.
type gw struct {
	g    *gateway.Gateway
	url  string
	logs *logging.Buffer
}

func startGateway(t *testing.T, opts gateway.Options) *gw {
	t.Helper()
	logs := &logging.Buffer{}
	log := slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelInfo}))
	g, err := gateway.New(log, opts)
	if err != nil {
		t.Fatal(err)
	}
	srv, err := httpx.Listen("gateway", "127.0.0.1:0", g.Handler(), logging.Discard())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = srv.Serve() }()
	go func() { _ = g.Run(ctx); close(done) }()
	t.Cleanup(func() {
		sctx, scancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer scancel()
		_ = srv.Shutdown(sctx)
		cancel()
		<-done
	})
	return &gw{g: g, url: srv.URL(), logs: logs}
}

// echoUpstreams starts one echo upstream per service.
func echoUpstreams(t *testing.T) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, n := range []string{"sensor", "room", "analytics", "notification"} {
		out[n] = newEcho(t, n).srv.URL
	}
	return out
}

type answer = httpxtest.Answer

func call(t *testing.T, method, url string, body []byte, headers ...string) answer {
	t.Helper()
	return httpxtest.Do(t, nil, method, url, body, headers...)
}

func bearer(key string) []string { return []string{"Authorization", "Bearer " + key} }

func isProblem(a answer) bool {
	return strings.HasPrefix(a.Head.Get("Content-Type"), "application/problem+json") && a.Body["status"] != nil
}

// routeCases are one request per route group, with the scope the policy demands.
var routeCases = []struct {
	method, path, upstream string
	need                   gateway.Scope
}{
	{"GET", "/sensors", "sensor", gateway.ScopeRead},
	{"GET", "/sensors/s1/data?type=co2", "sensor", gateway.ScopeRead},
	{"POST", "/sensors/data", "sensor", gateway.ScopeIngest},
	{"GET", "/rooms/r1/metrics", "room", gateway.ScopeRead},
	{"HEAD", "/rooms", "room", gateway.ScopeRead},
	{"POST", "/rooms", "room", gateway.ScopeAdmin},
	{"PUT", "/rooms/r1", "room", gateway.ScopeAdmin},
	{"PATCH", "/rooms/r1", "room", gateway.ScopeAdmin},
	{"DELETE", "/rooms/r1", "room", gateway.ScopeAdmin},
	{"PUT", "/rooms/r1/sensors/s1", "room", gateway.ScopeAdmin},
	{"GET", "/analytics/summary", "analytics", gateway.ScopeRead},
	{"POST", "/analytics/reports", "analytics", gateway.ScopeRead},
	{"GET", "/rules", "notification", gateway.ScopeRead},
	{"POST", "/rules", "notification", gateway.ScopeAdmin},
	{"DELETE", "/rules/r1", "notification", gateway.ScopeAdmin},
	{"GET", "/alerts?state=active", "notification", gateway.ScopeRead},
	{"POST", "/alerts/a1/ack", "notification", gateway.ScopeAdmin},
	{"GET", "/events", "notification", gateway.ScopeRead},
	{"POST", "/notifications/send", "notification", gateway.ScopeAdmin},
}

func holds(key string, s gateway.Scope) bool {
	switch key {
	case "admin":
		return true
	case "reader":
		return s == gateway.ScopeRead
	case "ingester":
		return s == gateway.ScopeIngest
	}
	return false
}

func TestAuthOnEveryRouteGroup(t *testing.T) {
	path, keys := keyset(t, allScopes)
	if err := gateway.RemoveKey(path, "revoked"); err != nil {
		t.Fatal(err)
	}
	g := startGateway(t, gateway.Options{Upstreams: echoUpstreams(t), KeysFile: path})
	for _, rc := range routeCases {
		for _, kc := range []struct {
			name    string
			headers []string
			code    int // 0: proxied (200 from the upstream)
		}{
			{"no key", nil, 401},
			{"wrong key", bearer("atr_not-a-key"), 401},
			{"basic auth", []string{"Authorization", "Basic YWRtaW46YWRtaW4="}, 401},
			{"revoked key", bearer(keys["revoked"]), 401},
			{"reader", bearer(keys["reader"]), 0},
			{"ingester", bearer(keys["ingester"]), 0},
			{"admin", bearer(keys["admin"]), 0},
		} {
			t.Run(rc.method+" "+rc.path+"/"+kc.name, func(t *testing.T) {
				want := kc.code
				if want == 0 {
					want = 403
					if holds(kc.name, rc.need) {
						want = 200
					}
				}
				a := call(t, rc.method, g.url+rc.path, []byte(`{}`), kc.headers...)
				if a.Code != want {
					t.Fatalf("status %d, want %d: %s", a.Code, want, a.Raw)
				}
				switch want {
				case 401:
					if !strings.HasPrefix(a.Head.Get("WWW-Authenticate"), "Bearer") {
						t.Errorf("401 without a Bearer challenge: %v", a.Head)
					}
				case 403:
					if !strings.Contains(a.Head.Get("WWW-Authenticate"), `scope="`+string(rc.need)+`"`) {
						t.Errorf("403 should name the scope %s: %v", rc.need, a.Head.Get("WWW-Authenticate"))
					}
				case 200:
					if rc.method == "HEAD" {
						return
					}
					p, _, _ := strings.Cut(rc.path, "?")
					if a.Body["upstream"] != rc.upstream || a.Body["path"] != p || a.Body["method"] != rc.method {
						t.Fatalf("reached %v %v %v, want %s %s %s", a.Body["upstream"], a.Body["method"], a.Body["path"], rc.upstream, rc.method, p)
					}
					if a.Body["authorization"] != "" || a.Body["key_name"] != kc.name {
						t.Errorf("upstream saw Authorization %q, key name %q: the key must not reach it, its name must", a.Body["authorization"], a.Body["key_name"])
					}
				}
				if want != 200 && rc.method != "HEAD" && (!isProblem(a) || a.Body["status"] != float64(want)) {
					t.Errorf("want a problem+json %d, got %q %s", want, a.Head.Get("Content-Type"), a.Raw)
				}
			})
		}
	}
	t.Run("unrouted paths are 404 without a key", func(t *testing.T) {
		for _, p := range []string{"/index.html", "/ui", "/sensorsX", "/admin", "/ws", "/analytics", "/roomsX/r1"} {
			if a := call(t, "GET", g.url+p, nil); a.Code != 404 || !isProblem(a) {
				t.Errorf("GET %s: %d %s", p, a.Code, a.Raw)
			}
		}
	})
	t.Run("a forged key name header is replaced", func(t *testing.T) {
		a := call(t, "GET", g.url+"/sensors", nil, append(bearer(keys["reader"]), gateway.KeyNameHeader, "admin")...)
		if a.Body["key_name"] != "reader" {
			t.Fatalf("upstream saw key name %v", a.Body["key_name"])
		}
	})
}

func TestKeysFileReload(t *testing.T) {
	path, keys := keyset(t, map[string][]gateway.Scope{"a": {gateway.ScopeRead}, "b": {gateway.ScopeRead}})
	g := startGateway(t, gateway.Options{Upstreams: echoUpstreams(t), KeysFile: path, ReloadInterval: 100 * time.Millisecond})
	status := func(key string) int { return call(t, "GET", g.url+"/sensors", nil, bearer(key)...).Code }
	waitStatus := func(t *testing.T, key string, want int) time.Duration {
		t.Helper()
		start := time.Now()
		for status(key) != want {
			if time.Since(start) > waitFor {
				t.Fatalf("status never became %d", want)
			}
			time.Sleep(20 * time.Millisecond)
		}
		return time.Since(start)
	}
	if status(keys["a"]) != 200 || status(keys["b"]) != 200 {
		t.Fatal("keys do not work at start")
	}
	t.Run("removing a key revokes it without a restart", func(t *testing.T) {
		if err := gateway.RemoveKey(path, "a"); err != nil {
			t.Fatal(err)
		}
		d := waitStatus(t, keys["a"], 401)
		t.Logf("revoked after %v", d)
		if d > 3*time.Second {
			t.Errorf("revocation took %v, want about a second", d)
		}
		if status(keys["b"]) != 200 {
			t.Error("the other key stopped working")
		}
	})
	t.Run("an added key works without a restart", func(t *testing.T) {
		k, err := gateway.AddKey(path, "c", []gateway.Scope{gateway.ScopeRead})
		if err != nil {
			t.Fatal(err)
		}
		waitStatus(t, k, 200)
	})
	t.Run("a broken file keeps the last good keys", func(t *testing.T) {
		if err := os.WriteFile(path, []byte(`[{"name":`), 0o600); err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(time.Second)
		for time.Now().Before(deadline) {
			if status(keys["b"]) != 200 {
				t.Fatal("a broken keys file revoked the keys in force")
			}
			time.Sleep(50 * time.Millisecond)
		}
		if !strings.Contains(g.logs.String(), "keys file not reloaded") {
			t.Error("a broken keys file is not reported")
		}
	})
	t.Run("a deleted file revokes every key", func(t *testing.T) {
		if err := os.Remove(path); err != nil {
			t.Fatal(err)
		}
		waitStatus(t, keys["b"], 401)
	})
}

func TestRateLimitPerKey(t *testing.T) {
	path, keys := keyset(t, map[string][]gateway.Scope{"a": {gateway.ScopeRead}, "b": {gateway.ScopeRead}})
	g := startGateway(t, gateway.Options{Upstreams: echoUpstreams(t), KeysFile: path, RateLimit: 0.5, RateBurst: 3})
	for i := range 3 {
		a := call(t, "GET", g.url+"/sensors", nil, bearer(keys["a"])...)
		if a.Code != 200 {
			t.Fatalf("request %d within the burst: %d", i, a.Code)
		}
		if a.Head.Get("RateLimit-Limit") != "3" || a.Head.Get("RateLimit-Remaining") != strconv.Itoa(2-i) {
			t.Errorf("request %d: RateLimit-Limit %q Remaining %q", i, a.Head.Get("RateLimit-Limit"), a.Head.Get("RateLimit-Remaining"))
		}
	}
	a := call(t, "GET", g.url+"/sensors", nil, bearer(keys["a"])...)
	if a.Code != 429 || !isProblem(a) {
		t.Fatalf("past the burst: %d %s", a.Code, a.Raw)
	}
	ra, err := strconv.Atoi(a.Head.Get("Retry-After"))
	if err != nil || ra < 1 || ra > 2 {
		t.Errorf("Retry-After %q, want 1-2 s at 0.5 requests/s", a.Head.Get("Retry-After"))
	}
	if a.Head.Get("RateLimit-Remaining") != "0" || a.Head.Get("RateLimit-Reset") == "" {
		t.Errorf("429 RateLimit headers: %v", a.Head)
	}
	if a := call(t, "GET", g.url+"/sensors", nil, bearer(keys["b"])...); a.Code != 200 {
		t.Errorf("another key is limited too: %d", a.Code)
	}
	if a := call(t, "GET", g.url+"/healthz", nil); a.Code != 200 {
		t.Errorf("/healthz is limited: %d", a.Code)
	}
	// The bucket refills: after Retry-After the key works again.
	deadline := time.Now().Add(waitFor)
	for call(t, "GET", g.url+"/sensors", nil, bearer(keys["a"])...).Code != 200 {
		if time.Now().After(deadline) {
			t.Fatal("the bucket never refilled")
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func TestCORS(t *testing.T) {
	path, keys := keyset(t, map[string][]gateway.Scope{"a": {gateway.ScopeRead}})
	ups := echoUpstreams(t)
	g := startGateway(t, gateway.Options{Upstreams: ups, KeysFile: path, CORSOrigins: []string{"https://dash.example.com", " https://ops.example.com/ "}})
	preflight := func(origin, method string) answer {
		return call(t, "OPTIONS", g.url+"/rooms/r1", nil, "Origin", origin,
			"Access-Control-Request-Method", method, "Access-Control-Request-Headers", "authorization, content-type")
	}
	for _, tc := range []struct {
		name, origin, method string
		allowed              bool
	}{
		{"allowed origin", "https://dash.example.com", "GET", true},
		{"allowed origin, trailing slash in the list", "https://ops.example.com", "DELETE", true},
		{"other origin", "https://evil.example.com", "GET", false},
		{"allowed origin, unknown method", "https://dash.example.com", "TRACE", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := preflight(tc.origin, tc.method)
			got := a.Head.Get("Access-Control-Allow-Origin")
			if tc.allowed {
				if a.Code/100 != 2 || got != tc.origin || a.Head.Get("Access-Control-Allow-Methods") != tc.method ||
					!strings.Contains(strings.ToLower(a.Head.Get("Access-Control-Allow-Headers")), "authorization") {
					t.Fatalf("preflight %d, headers %v", a.Code, a.Head)
				}
			} else if got != "" {
				t.Fatalf("refused origin got Access-Control-Allow-Origin %q", got)
			}
		})
	}
	t.Run("actual request exposes the request id", func(t *testing.T) {
		a := call(t, "GET", g.url+"/rooms", nil, append(bearer(keys["a"]), "Origin", "https://dash.example.com")...)
		if a.Code != 200 || a.Head.Get("Access-Control-Allow-Origin") != "https://dash.example.com" ||
			!strings.Contains(a.Head.Get("Access-Control-Expose-Headers"), "X-Request-Id") {
			t.Fatalf("%d %v", a.Code, a.Head)
		}
	})
	t.Run("no allow-list: no CORS at all", func(t *testing.T) {
		g2 := startGateway(t, gateway.Options{Upstreams: ups, KeysFile: path})
		a := call(t, "OPTIONS", g2.url+"/rooms", nil, "Origin", "https://dash.example.com", "Access-Control-Request-Method", "GET")
		if a.Head.Get("Access-Control-Allow-Origin") != "" {
			t.Fatalf("CORS allowed with an empty allow-list: %v", a.Head)
		}
	})
}

func TestWebSocketThroughTheGateway(t *testing.T) {
	path, keys := keyset(t, map[string][]gateway.Scope{"a": {gateway.ScopeRead}, "i": {gateway.ScopeIngest}})
	g := startGateway(t, gateway.Options{Upstreams: echoUpstreams(t), KeysFile: path})
	ws := "ws" + strings.TrimPrefix(g.url, "http") + "/ws/notifications?room_id=r1"
	dial := func(url string, h http.Header) (*websocket.Conn, *http.Response, error) {
		ctx, cancel := context.WithTimeout(context.Background(), waitFor)
		defer cancel()
		return websocket.Dial(ctx, url, &websocket.DialOptions{HTTPHeader: h})
	}
	roundTrip := func(t *testing.T, c *websocket.Conn) {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), waitFor)
		defer cancel()
		if err := c.Write(ctx, websocket.MessageText, []byte("ping")); err != nil {
			t.Fatal(err)
		}
		_, b, err := c.Read(ctx)
		if err != nil || string(b) != "notification:ping" {
			t.Fatalf("read %q %v", b, err)
		}
	}
	for _, tc := range []struct {
		name   string
		url    string
		header http.Header
		code   int
	}{
		{"key in header", ws, http.Header{"Authorization": {"Bearer " + keys["a"]}}, 101},
		{"key as access_token", ws + "&access_token=" + keys["a"], nil, 101},
		{"no key", ws, nil, 401},
		{"wrong access_token", ws + "&access_token=nope", nil, 401},
		{"ingest-only key", ws + "&access_token=" + keys["i"], nil, 403},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, resp, err := dial(tc.url, tc.header)
			if tc.code == 101 {
				if err != nil {
					t.Fatalf("dial: %v", err)
				}
				defer c.CloseNow()
				roundTrip(t, c)
				return
			}
			if err == nil {
				c.CloseNow()
				t.Fatal("upgrade accepted")
			}
			if resp == nil || resp.StatusCode != tc.code {
				t.Fatalf("want %d, got %v %v", tc.code, resp, err)
			}
		})
	}
	t.Run("access_token is refused outside an upgrade", func(t *testing.T) {
		if a := call(t, "GET", g.url+"/sensors?access_token="+keys["a"], nil); a.Code != 401 {
			t.Fatalf("plain GET with access_token: %d", a.Code)
		}
	})
	t.Run("closing the gateway ends proxied sockets", func(t *testing.T) {
		c, _, err := dial(ws+"&access_token="+keys["a"], nil)
		if err != nil {
			t.Fatal(err)
		}
		defer c.CloseNow()
		roundTrip(t, c)
		g.g.Close()
		ctx, cancel := context.WithTimeout(context.Background(), waitFor)
		defer cancel()
		if _, _, err := c.Read(ctx); err == nil || errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("socket still open after Close: %v", err)
		}
	})
}

// TestLocalUpstreams holds the in-process path (a service in the gateway's own
// process, Options.Local) to what the reverse proxy gives a service over the
// network: the same request as the service sees it, the same answer; and a
// WebSocket upgrade still goes over the network.
func TestLocalUpstreams(t *testing.T) {
	path, keys := keyset(t, allScopes)
	echoes := map[string]*echo{}
	network, closed, local := map[string]string{}, map[string]string{}, map[string]http.Handler{}
	for _, n := range []string{"sensor", "room", "analytics", "notification"} {
		e := newEcho(t, n)
		echoes[n], network[n], closed[n], local[n] = e, e.srv.URL, closedURL(t), e.srv.Config.Handler
	}
	// A WebSocket upgrade goes to the notification service's URL, in both shapes.
	closed["notification"] = network["notification"]
	shapes := map[string]*gw{
		"network":    startGateway(t, gateway.Options{Upstreams: network, KeysFile: path}),
		"in-process": startGateway(t, gateway.Options{Upstreams: closed, Local: local, KeysFile: path}),
	}
	seen := map[string]map[string]echoed{}
	for name, g := range shapes {
		seen[name] = map[string]echoed{}
		for _, rc := range routeCases {
			a := call(t, rc.method, g.url+rc.path, []byte(`{"x":1}`), "Authorization", "Bearer "+keys["admin"],
				"X-Forwarded-For", "10.9.9.9", "Connection", "X-Hop", "X-Hop", "1", "Keep-Alive", "timeout=5", "X-Request-ID", "req-"+rc.method+"-1")
			if a.Code != 200 {
				t.Fatalf("%s: %s %s: %d %s", name, rc.method, rc.path, a.Code, a.Raw)
			}
			if got := a.Head.Values(httpx.RequestIDHeader); len(got) != 1 || got[0] != "req-"+rc.method+"-1" {
				t.Fatalf("%s: %s %s: response request ids %q", name, rc.method, rc.path, got)
			}
			if rc.method == "HEAD" {
				continue
			}
			var e echoed
			if err := json.Unmarshal(a.Raw, &e); err != nil {
				t.Fatalf("%s: %s %s: %v %s", name, rc.method, rc.path, err, a.Raw)
			}
			if e.Upstream != rc.upstream || e.Auth != "" || e.KeyName != "admin" || e.Forwarded != "127.0.0.1" ||
				e.FwdProto != "http" || e.FwdHost == "" || e.Hop != "" || e.RequestID != "req-"+rc.method+"-1" {
				t.Fatalf("%s: %s %s: the service saw %+v", name, rc.method, rc.path, e)
			}
			e.FwdHost = "" // the gateways listen on different ports
			seen[name][rc.method+" "+rc.path] = e
		}
	}
	for k, e := range seen["network"] {
		if seen["in-process"][k] != e {
			t.Errorf("%s: over the network the service saw %+v, in-process %+v", k, e, seen["in-process"][k])
		}
	}
	t.Run("HTTP/1.0 keep-alive is kept", func(t *testing.T) {
		// The service must not see the hop-by-hop Connection header, and the
		// gateway's server must still see it when it answers.
		c, err := net.Dial("tcp", strings.TrimPrefix(shapes["in-process"].url, "http://"))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		br := bufio.NewReader(c)
		for i := range 2 {
			fmt.Fprintf(c, "GET /rooms/r1 HTTP/1.0\r\nHost: gw\r\nConnection: keep-alive\r\nAuthorization: Bearer %s\r\n\r\n", keys["reader"])
			_ = c.SetReadDeadline(time.Now().Add(waitFor))
			resp, err := http.ReadResponse(br, nil)
			if err != nil {
				t.Fatalf("request %d: %v", i, err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			var e echoed
			if err := json.Unmarshal(body, &e); err != nil || resp.StatusCode != 200 || e.Hop != "" {
				t.Fatalf("request %d: %d %s (%v)", i, resp.StatusCode, body, err)
			}
			if resp.Close {
				t.Fatalf("request %d: the gateway closed an HTTP/1.0 keep-alive connection", i)
			}
		}
	})
	t.Run("WebSocket upgrade over the network", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), waitFor)
		defer cancel()
		ws := "ws" + strings.TrimPrefix(shapes["in-process"].url, "http") + "/ws/notifications?access_token=" + keys["reader"]
		c, _, err := websocket.Dial(ctx, ws, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer c.CloseNow()
		if err := c.Write(ctx, websocket.MessageText, []byte("ping")); err != nil {
			t.Fatal(err)
		}
		if _, b, err := c.Read(ctx); err != nil || string(b) != "notification:ping" {
			t.Fatalf("read %q %v", b, err)
		}
	})
}

// closedURL is a loopback URL nothing listens on.
func closedURL(t *testing.T) string {
	t.Helper()
	return "http://" + testenv.FreeAddr(t)
}

func TestUpstreamFailures(t *testing.T) {
	path, keys := keyset(t, map[string][]gateway.Scope{"a": {gateway.ScopeAdmin}})
	ups := echoUpstreams(t)
	ups["room"] = closedURL(t)
	hang := make(chan struct{})
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-hang:
		case <-r.Context().Done():
		}
	}))
	t.Cleanup(slow.Close)
	t.Cleanup(func() { close(hang) })
	ups["analytics"] = slow.URL
	g := startGateway(t, gateway.Options{Upstreams: ups, KeysFile: path, ResponseHeaderTimeout: 500 * time.Millisecond, MaxBody: 1 << 10})
	for _, tc := range []struct {
		name, method, path string
		body               []byte
		code               int
	}{
		{"service down", "GET", "/rooms/r1/metrics", nil, 503},
		{"service hangs", "GET", "/analytics/summary", nil, 504},
		{"body over the limit, length known", "POST", "/sensors/data", bytes.Repeat([]byte("x"), 2<<10), 413},
	} {
		t.Run(tc.name, func(t *testing.T) {
			start := time.Now()
			a := call(t, tc.method, g.url+tc.path, tc.body, bearer(keys["a"])...)
			if a.Code != tc.code || !isProblem(a) {
				t.Fatalf("%d %s, want %d problem", a.Code, a.Raw, tc.code)
			}
			if d := time.Since(start); d > 5*time.Second {
				t.Errorf("answered after %v: must not hang", d)
			}
			if tc.code == 503 && a.Head.Get("Retry-After") == "" {
				t.Error("503 without Retry-After")
			}
			if strings.Contains(string(a.Raw), "127.0.0.1") {
				t.Errorf("the problem leaks the upstream address: %s", a.Raw)
			}
		})
	}
	t.Run("body over the limit, streamed", func(t *testing.T) {
		pr, pw := io.Pipe()
		go func() {
			_, _ = pw.Write(bytes.Repeat([]byte("x"), 4<<10))
			pw.Close()
		}()
		req, _ := http.NewRequest("POST", g.url+"/sensors/data", pr)
		req.Header.Set("Authorization", "Bearer "+keys["a"])
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 413 {
			t.Fatalf("chunked body over the limit: %d", resp.StatusCode)
		}
	})
	t.Run("readyz names the upstream that is down", func(t *testing.T) {
		a := call(t, "GET", g.url+"/readyz", nil)
		checks, _ := a.Body["checks"].(map[string]any)
		state := func(n string) any { m, _ := checks[n].(map[string]any); return m["status"] }
		if a.Code != 503 || state("room") != "down" || state("sensor") != "up" || state("notification") != "up" {
			t.Fatalf("readyz %d %s", a.Code, a.Raw)
		}
	})
}

func TestRequestIDAndAccessLog(t *testing.T) {
	path, keys := keyset(t, map[string][]gateway.Scope{"dashboard": {gateway.ScopeRead}})
	g := startGateway(t, gateway.Options{Upstreams: echoUpstreams(t), KeysFile: path})
	t.Run("passed through", func(t *testing.T) {
		a := call(t, "GET", g.url+"/sensors/s1", nil, append(bearer(keys["dashboard"]), "X-Request-ID", "trace-123")...)
		if a.Body["request_id"] != "trace-123" || len(a.Head.Values("X-Request-Id")) != 1 || a.Head.Get("X-Request-Id") != "trace-123" {
			t.Fatalf("upstream saw %v, client got %v", a.Body["request_id"], a.Head.Values("X-Request-Id"))
		}
	})
	t.Run("generated", func(t *testing.T) {
		seen := map[string]bool{}
		for _, bad := range []string{"", "has space", strings.Repeat("x", 129)} {
			h := bearer(keys["dashboard"])
			if bad != "" {
				h = append(h, "X-Request-ID", bad)
			}
			a := call(t, "GET", g.url+"/sensors/s1", nil, h...)
			id := a.Head.Get("X-Request-Id")
			if len(id) != 32 || strings.Trim(id, "0123456789abcdef") != "" || seen[id] {
				t.Fatalf("id %q: want 32 hex digits, new each time (had %v)", id, seen)
			}
			seen[id] = true
			if a.Body["request_id"] != id || len(a.Head.Values("X-Request-Id")) != 1 {
				t.Fatalf("upstream saw %v, client got %v", a.Body["request_id"], a.Head.Values("X-Request-Id"))
			}
		}
	})
	t.Run("on refusals too", func(t *testing.T) {
		a := call(t, "GET", g.url+"/sensors", nil, "X-Request-ID", "refused-1")
		if a.Code != 401 || a.Head.Get("X-Request-Id") != "refused-1" {
			t.Fatalf("%d %v", a.Code, a.Head)
		}
	})
	t.Run("access log line", func(t *testing.T) {
		line := accessLine(t, g, "trace-123")
		if line["key"] != "dashboard" || line["route"] != "/sensors/*" || line["upstream"] != "sensor" ||
			line["status"] != float64(200) || line["bytes"].(float64) <= 0 || line["duration_ms"] == nil {
			t.Fatalf("access log line %v in\n%s", line, g.logs.String())
		}
		if strings.Contains(g.logs.String(), keys["dashboard"]) {
			t.Fatal("the key itself is in the log")
		}
	})
	t.Run("routes of the open endpoints", func(t *testing.T) {
		for _, tc := range []struct{ path, id, route string }{
			{"/openapi.json", "open-1", "/openapi.json"},
			{"/nowhere", "open-2", "unmatched"},
			{"/analytics", "open-3", "unmatched"},
		} {
			_ = call(t, "GET", g.url+tc.path, nil, "X-Request-ID", tc.id)
			line := accessLine(t, g, tc.id)
			if line["route"] != tc.route || line["key"] != "" || line["upstream"] != "" {
				t.Errorf("GET %s: log line %v, want route %s", tc.path, line, tc.route)
			}
		}
	})
}

// accessLine waits for the access log line of the request with id and returns
// it decoded: the gateway writes it after the answer, so the client may have the
// answer first.
func accessLine(t *testing.T, g *gw, id string) map[string]any {
	t.Helper()
	var line map[string]any
	testwait.Within(t, 5*time.Second, "the access log line of "+id, func() bool {
		for _, l := range strings.Split(g.logs.String(), "\n") {
			if strings.Contains(l, `"request_id":"`+id+`"`) {
				return json.Unmarshal([]byte(l), &line) == nil
			}
		}
		return false
	})
	return line
}

func TestOpenEndpoints(t *testing.T) {
	path, _ := keyset(t, map[string][]gateway.Scope{"a": {gateway.ScopeRead}})
	g := startGateway(t, gateway.Options{Upstreams: echoUpstreams(t), KeysFile: path})
	for _, tc := range []struct {
		path, want string
	}{
		{"/healthz", `"ok"`},
		{"/readyz", `"ready"`},
		{"/metrics", "atrium_gateway_denied_total"},
		{"/openapi.json", `"openapi": "3.0.3"`},
	} {
		t.Run(tc.path, func(t *testing.T) {
			_ = call(t, "GET", g.url+"/sensors", nil) // one refusal, counted
			a := call(t, "GET", g.url+tc.path, nil)
			if a.Code != 200 || !strings.Contains(string(a.Raw), tc.want) {
				t.Fatalf("%d %.300s", a.Code, a.Raw)
			}
		})
	}
}

func TestNewRefusesBadConfig(t *testing.T) {
	path, _ := keyset(t, map[string][]gateway.Scope{"a": {gateway.ScopeRead}})
	bad := filepath.Join(t.TempDir(), "bad.json")
	if err := os.WriteFile(bad, []byte(`[{"name":"x","sha256":"abc","scopes":["read"]}]`), 0o600); err != nil {
		t.Fatal(err)
	}
	ups := echoUpstreams(t)
	for _, tc := range []struct {
		name string
		opts gateway.Options
	}{
		{"missing keys file", gateway.Options{Upstreams: ups, KeysFile: filepath.Join(t.TempDir(), "none.json")}},
		{"bad hash", gateway.Options{Upstreams: ups, KeysFile: bad}},
		{"missing upstream", gateway.Options{Upstreams: map[string]string{"sensor": ups["sensor"]}, KeysFile: path}},
		{"bad upstream URL", gateway.Options{Upstreams: map[string]string{"sensor": "ftp://x", "room": ups["room"], "analytics": ups["analytics"], "notification": ups["notification"]}, KeysFile: path}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := gateway.New(logging.Discard(), tc.opts); err == nil {
				t.Fatal("accepted")
			}
		})
	}
}

func TestUpstreamOfPath(t *testing.T) {
	for path, want := range map[string]string{
		"/sensors": "sensor", "/sensors/data": "sensor", "/rooms/r1/metrics": "room", "/analytics/reports/1": "analytics",
		"/analytics": "", "/ws/notifications": "notification", "/ws": "", "/alerts/a/ack": "notification",
		"/events": "notification", "/rules/x": "notification", "/notifications/send": "notification", "/sensorsX": "", "/": "",
	} {
		if got := gateway.Upstream(path); got != want {
			t.Errorf("Upstream(%q) = %q, want %q", path, got, want)
		}
	}
}

func ExampleRequiredScope() {
	for _, r := range [][2]string{{"GET", "/rooms"}, {"POST", "/sensors/data"}, {"POST", "/rules"}, {"POST", "/notifications/send"}} {
		fmt.Println(r[0], r[1], gateway.RequiredScope(r[0], r[1]))
	}
	// Output:
	// GET /rooms read
	// POST /sensors/data ingest
	// POST /rules admin
	// POST /notifications/send admin
}
