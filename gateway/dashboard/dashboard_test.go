package dashboard_test

import (
	"io"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/atrium-iot/atrium/gateway"
	"github.com/atrium-iot/atrium/gateway/dashboard"
	"github.com/atrium-iot/atrium/internal/logging"
	"github.com/atrium-iot/atrium/internal/testenv"
)

// closedURL is a loopback URL nothing listens on.
func closedURL(t *testing.T) string {
	t.Helper()
	return "http://" + testenv.FreeAddr(t)
}

// startGateway runs a real gateway whose upstreams are closed ports: the dashboard
// must not need them.
func startGateway(t *testing.T) *httptest.Server {
	t.Helper()
	keys := filepath.Join(t.TempDir(), "keys.json")
	if _, err := gateway.AddKey(keys, "reader", []gateway.Scope{gateway.ScopeRead}); err != nil {
		t.Fatal(err)
	}
	ups := map[string]string{}
	for _, n := range []string{"sensor", "room", "analytics", "notification"} {
		ups[n] = closedURL(t)
	}
	g, err := gateway.New(logging.Discard(), gateway.Options{Upstreams: ups, KeysFile: keys})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(g.Close)
	srv := httptest.NewServer(g.Handler())
	t.Cleanup(srv.Close)
	return srv
}

type answer struct {
	code int
	head http.Header
	body string
}

func get(t *testing.T, method, url string, header ...string) answer {
	t.Helper()
	req, err := http.NewRequest(method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return answer{resp.StatusCode, resp.Header, string(b)}
}

func TestDashboardIsServedOpenByTheGateway(t *testing.T) {
	srv := startGateway(t)
	tests := []struct {
		name, method, path string
		code               int
		ctype, contains    string
	}{
		{"the page", "GET", "/", 200, "text/html", `<script type="module" src="/ui/app.js">`},
		{"the app module", "GET", "/ui/app.js", 200, "text/javascript", "LiveFeed"},
		{"a helper module", "GET", "/ui/chart.js", 200, "text/javascript", "export function drawChart"},
		{"the styles", "GET", "/ui/app.css", 200, "text/css", ".tile"},
		{"the icon", "GET", "/ui/favicon.svg", 200, "image/svg+xml", "<svg"},
		{"favicon.ico", "GET", "/favicon.ico", 200, "image/svg+xml", "<svg"},
		{"an unknown asset", "GET", "/ui/nothing.js", 404, "application/problem+json", "no such file"},
		{"the page under its file name", "GET", "/ui/index.html", 404, "application/problem+json", ""},
		{"a write to the page", "POST", "/", 405, "application/problem+json", ""},
		{"the API still needs a key", "GET", "/rooms", 401, "application/problem+json", "API key"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			a := get(t, tc.method, srv.URL+tc.path)
			if a.code != tc.code {
				t.Fatalf("%s %s: %d, want %d: %s", tc.method, tc.path, a.code, tc.code, a.body)
			}
			if !strings.HasPrefix(a.head.Get("Content-Type"), tc.ctype) {
				t.Errorf("Content-Type %q, want %s", a.head.Get("Content-Type"), tc.ctype)
			}
			if !strings.Contains(a.body, tc.contains) {
				t.Errorf("body lacks %q:\n%.300s", tc.contains, a.body)
			}
			if tc.code == 200 {
				csp := a.head.Get("Content-Security-Policy")
				if !strings.Contains(csp, "default-src 'none'") || !strings.Contains(csp, "connect-src 'self'") {
					t.Errorf("Content-Security-Policy %q", csp)
				}
				if a.head.Get("X-Content-Type-Options") != "nosniff" || a.head.Get("ETag") == "" {
					t.Errorf("headers %v", a.head)
				}
			}
		})
	}
	t.Run("an unchanged file is revalidated with 304", func(t *testing.T) {
		first := get(t, "GET", srv.URL+"/ui/app.js")
		again := get(t, "GET", srv.URL+"/ui/app.js", "If-None-Match", first.head.Get("ETag"))
		if again.code != http.StatusNotModified || again.body != "" {
			t.Fatalf("%d %q, want 304 and no body", again.code, again.body)
		}
		if other := get(t, "GET", srv.URL+"/ui/app.css", "If-None-Match", first.head.Get("ETag")); other.code != 200 {
			t.Fatalf("another file's ETag gave %d", other.code)
		}
	})
}

var (
	assetRef  = regexp.MustCompile(`(?:src|href)="(/[^"]*)"`)
	importRef = regexp.MustCompile(`(?m)^import .* from '(\./[^']+)';`)
	anyURL    = regexp.MustCompile(`\b(?:https?|wss?)://[^\s"'` + "`" + `)]+`)
)

// TestAssetsAreSelfContained reads the page and its modules as a browser would:
// every file they name is served, and none names another host (the building's
// network may be closed: no CDN, no web font).
func TestAssetsAreSelfContained(t *testing.T) {
	h, err := dashboard.New()
	if err != nil {
		t.Fatal(err)
	}
	files := h.Files()
	serve := func(path string) answer {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest("GET", path, nil))
		return answer{rec.Code, rec.Header(), rec.Body.String()}
	}
	page := serve("/")
	var refs []string
	for _, m := range assetRef.FindAllStringSubmatch(page.body, -1) {
		refs = append(refs, m[1])
	}
	for _, p := range files {
		if strings.HasSuffix(p, ".js") {
			for _, m := range importRef.FindAllStringSubmatch(serve(p).body, -1) {
				refs = append(refs, dashboard.AssetPrefix+strings.TrimPrefix(m[1], "./"))
			}
		}
	}
	if len(refs) < 8 {
		t.Fatalf("found only %d references: %v", len(refs), refs)
	}
	for _, ref := range refs {
		t.Run("reference "+ref, func(t *testing.T) {
			if ref == "/openapi.json" || strings.HasPrefix(ref, "/#") {
				return // served by the gateway itself
			}
			if !slices.Contains(files, ref) {
				t.Errorf("%s is referenced but not served (files: %v)", ref, files)
			}
		})
	}
	t.Run("every file of static/ is embedded", func(t *testing.T) {
		onDisk, err := fs.Glob(os.DirFS("static"), "*")
		if err != nil || len(onDisk) < 6 {
			t.Fatalf("static/: %v %v", onDisk, err)
		}
		for _, f := range onDisk {
			if !slices.Contains(files, dashboard.AssetPrefix+f) {
				t.Errorf("static/%s is not served", f)
			}
		}
	})
	allowed := []string{"http://www.w3.org/2000/svg"} // an XML namespace, never fetched
	for _, p := range files {
		for _, u := range anyURL.FindAllString(serve(p).body, -1) {
			if !slices.Contains(allowed, u) {
				t.Errorf("%s names an outside URL %s", p, u)
			}
		}
	}
}
