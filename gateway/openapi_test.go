package gateway_test

import (
	"context"
	"encoding/json"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/go-chi/chi/v5"

	"github.com/atrium-iot/atrium/gateway"
	"github.com/atrium-iot/atrium/internal/bus/membus"
	"github.com/atrium-iot/atrium/internal/logging"
	"github.com/atrium-iot/atrium/internal/sqlitex"
	"github.com/atrium-iot/atrium/services/sensor"
	"github.com/atrium-iot/atrium/services/sensor/sqlitestore"
)

var paramRE = regexp.MustCompile(`\{[^}]*\}`)

// op is one operation as "METHOD /path/{}" with path parameters unnamed.
func op(method, path string) string {
	if len(path) > 1 {
		path = strings.TrimSuffix(path, "/")
	}
	return strings.ToUpper(method) + " " + paramRE.ReplaceAllString(path, "{}")
}

// documented is every operation of the OpenAPI document.
func documented(t *testing.T) map[string]bool {
	t.Helper()
	var doc struct {
		OpenAPI string                    `json:"openapi"`
		Paths   map[string]map[string]any `json:"paths"`
	}
	if err := json.Unmarshal(gateway.OpenAPI, &doc); err != nil {
		t.Fatalf("openapi.json: %v", err)
	}
	if !strings.HasPrefix(doc.OpenAPI, "3.") {
		t.Fatalf("openapi version %q", doc.OpenAPI)
	}
	out := map[string]bool{}
	for p, item := range doc.Paths {
		for m := range item {
			switch m {
			case "get", "put", "post", "delete", "patch", "head", "options":
				out[op(m, p)] = true
			}
		}
	}
	return out
}

var healthPaths = []string{"/healthz", "/readyz", "/metrics"}

// walked lists a chi router's API routes (health endpoints aside).
func walked(t *testing.T, r chi.Routes) []string {
	t.Helper()
	var out []string
	err := chi.Walk(r, func(method, route string, _ http.Handler, _ ...func(http.Handler) http.Handler) error {
		if !slices.Contains(healthPaths, route) {
			out = append(out, op(method, route))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(out)
	return out
}

// declared reads the API a service lists in its routes.go, the one file that lists
// the whole API: every r.Get/Post/Put/Patch/Delete/Head/Method call, through
// r.Route and r.Group blocks. Routes it cannot read are reported, so the file stays
// readable by people and by this test.
func declared(t *testing.T, file string) []string {
	t.Helper()
	f, err := parser.ParseFile(token.NewFileSet(), file, nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	lit := func(e ast.Expr) (string, bool) {
		switch v := e.(type) {
		case *ast.BasicLit:
			s, err := strconv.Unquote(v.Value)
			return s, err == nil
		case *ast.SelectorExpr: // http.MethodGet
			if x, ok := v.X.(*ast.Ident); ok && x.Name == "http" && strings.HasPrefix(v.Sel.Name, "Method") {
				return strings.ToUpper(strings.TrimPrefix(v.Sel.Name, "Method")), true
			}
		}
		return "", false
	}
	var walk func(stmts []ast.Stmt, prefix string)
	visit := func(call *ast.CallExpr, prefix string) {
		sel, ok := call.Fun.(*ast.SelectorExpr)
		if !ok {
			return
		}
		name := sel.Sel.Name
		switch name {
		case "Get", "Post", "Put", "Patch", "Delete", "Head", "Options":
			p, ok := lit(call.Args[0])
			if !ok {
				t.Errorf("%s: %s with a non-literal pattern", file, name)
				return
			}
			out = append(out, op(name, prefix+p))
		case "Method", "MethodFunc":
			m, ok1 := lit(call.Args[0])
			p, ok2 := lit(call.Args[1])
			if !ok1 || !ok2 {
				t.Errorf("%s: %s with a non-literal method or pattern", file, name)
				return
			}
			out = append(out, op(m, prefix+p))
		case "Route", "Group":
			var fn *ast.FuncLit
			p := ""
			if name == "Route" {
				p, _ = lit(call.Args[0])
				fn, _ = call.Args[1].(*ast.FuncLit)
			} else {
				fn, _ = call.Args[0].(*ast.FuncLit)
			}
			if fn == nil {
				t.Errorf("%s: %s without an inline func", file, name)
				return
			}
			walk(fn.Body.List, prefix+p)
		case "Handle", "HandleFunc", "Mount":
			t.Errorf("%s: %s registers every method; name the methods (r.Get, r.Post…) so the API is explicit", file, name)
		}
	}
	walk = func(stmts []ast.Stmt, prefix string) {
		for _, s := range stmts {
			if es, ok := s.(*ast.ExprStmt); ok {
				if call, ok := es.X.(*ast.CallExpr); ok {
					visit(call, prefix)
				}
			}
		}
	}
	for _, d := range f.Decls {
		if fd, ok := d.(*ast.FuncDecl); ok && fd.Body != nil {
			walk(fd.Body.List, "")
		}
	}
	sort.Strings(out)
	return out
}

// TestOpenAPIMatchesTheServices holds the OpenAPI document to the routes the services
// really register: every route of every service must be documented, and every
// documented route of a service that exists must be registered. A service's
// package joins the check as soon as its routes.go exists.
func TestOpenAPIMatchesTheServices(t *testing.T) {
	doc := documented(t)
	for _, p := range append(healthPaths, "/openapi.json") {
		if !doc[op("GET", p)] {
			t.Errorf("the document lacks GET %s", p)
		}
	}
	for o := range doc {
		p := strings.SplitN(o, " ", 2)[1]
		if gateway.Upstream(p) == "" && !slices.Contains(append(healthPaths, "/openapi.json"), p) {
			t.Errorf("documented %s is not routed by the gateway", o)
		}
	}

	t.Run("sensor router", func(t *testing.T) {
		st, err := sqlitestore.Open(context.Background(), filepath.Join(t.TempDir(), "s.db"), sqlitestore.Options{Settings: sqlitex.Settings{Logger: logging.Discard()}})
		if err != nil {
			t.Fatal(err)
		}
		defer st.Close()
		h := sensor.New(st, membus.New(logging.Discard()), logging.Discard(), sensor.Options{}).Handler()
		routes, ok := h.(chi.Routes)
		if !ok {
			t.Fatalf("sensor Handler is a %T, not a chi router", h)
		}
		got := walked(t, routes)
		compare(t, "sensor", got, doc)
		// The walk and the reading of routes.go agree, so the reading can be
		// trusted for the services the test cannot build.
		if parsed := declared(t, filepath.Join("..", "services", "sensor", "routes.go")); fmt.Sprint(parsed) != fmt.Sprint(got) {
			t.Errorf("routes.go reads as %v, the router walks as %v", parsed, got)
		}
	})

	dirs, err := os.ReadDir(filepath.Join("..", "services"))
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range dirs {
		file := filepath.Join("..", "services", d.Name(), "routes.go")
		if _, err := os.Stat(file); err != nil {
			t.Logf("services/%s has no routes.go yet: its documented routes are not checked", d.Name())
			continue
		}
		t.Run(d.Name()+" routes.go", func(t *testing.T) {
			compare(t, d.Name(), declared(t, file), doc)
		})
	}
}

func compare(t *testing.T, service string, registered []string, doc map[string]bool) {
	t.Helper()
	if len(registered) == 0 {
		t.Fatalf("no routes found for %s", service)
	}
	for _, o := range registered {
		if !doc[o] {
			t.Errorf("%s registers %s, which the OpenAPI document lacks", service, o)
		}
		if up := gateway.Upstream(strings.SplitN(o, " ", 2)[1]); up != service {
			t.Errorf("%s registers %s, which the gateway routes to %q", service, o, up)
		}
	}
	for o := range doc {
		if gateway.Upstream(strings.SplitN(o, " ", 2)[1]) == service && !slices.Contains(registered, o) {
			t.Errorf("the OpenAPI document has %s, which %s does not register", o, service)
		}
	}
}
