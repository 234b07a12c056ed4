package httpxtest_test

import (
	"io"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/atrium-iot/atrium/internal/httpx/httpxtest"
)

func TestDoJSON(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("X-Seen", r.Method+"|"+r.Header.Get("Content-Type")+"|"+r.Header.Get("X-Key"))
		w.WriteHeader(http.StatusCreated)
		_, _ = w.Write([]byte(`{"got":` + string(body) + `}`))
	}))
	defer srv.Close()

	a := httpxtest.DoJSON(t, "PUT", srv.URL, []byte(`[1,2]`), "X-Key", "k1")
	if a.Code != 201 || a.CType != "application/json" || a.Head.Get("X-Seen") != "PUT|application/json|k1" {
		t.Fatalf("answer %d %q %v", a.Code, a.CType, a.Head)
	}
	if a.String() != `{"got":[1,2]}` {
		t.Errorf("body %s", a.Raw)
	}
	if got := httpxtest.Decode[struct{ Got []int }](t, a).Got; len(got) != 2 || got[1] != 2 {
		t.Errorf("Decode: %v", got)
	}
	if a := httpxtest.DoJSON(t, "POST", srv.URL, []byte(`1`), "Content-Type", "application/senml+json"); a.Head.Get("X-Seen") != "POST|application/senml+json|" {
		t.Errorf("a Content-Type given: %q", a.Head.Get("X-Seen"))
	}
	if a := httpxtest.Get(t, srv.URL); a.Head.Get("X-Seen") != "GET||" || a.Body != nil {
		t.Errorf("Get: %q, body %v of %s", a.Head.Get("X-Seen"), a.Body, a.Raw)
	}
}

func TestGetJSON(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/missing" {
			http.Error(w, `{"n":2}`, http.StatusNotFound)
			return
		}
		_, _ = w.Write([]byte(`{"n":1}`))
	}))
	defer srv.Close()

	var v struct{ N int }
	if a := httpxtest.GetJSON(t, srv.Client(), srv.URL, &v); a.Code != 200 || v.N != 1 {
		t.Errorf("GetJSON: %d, decoded %+v", a.Code, v)
	}
	v.N = 0
	if a := httpxtest.GetJSON(t, nil, srv.URL+"/missing", &v); a.Code != 404 || v.N != 0 {
		t.Errorf("a 404: %d, decoded %+v; want nothing decoded", a.Code, v)
	}
	rec := &recorder{TB: t}
	httpxtest.GetJSON(rec, nil, srv.URL, &[]int{})
	if !rec.failed {
		t.Error("a body that is not the value's JSON did not fail")
	}
}

func TestCheckProblem(t *testing.T) {
	problem := httpxtest.Answer{Code: 400, CType: "application/problem+json",
		Raw: []byte(`{"type":"about:blank","title":"Bad Request","status":400,"errors":[{"field":"limit","reason":"too big"}]}`)}
	tests := []struct {
		name   string
		a      httpxtest.Answer
		status int
		field  string
		fails  bool
	}{
		{"the problem", problem, 400, "limit", false},
		{"no field asked", problem, 400, "", false},
		{"another field", problem, 400, "cursor", true},
		{"another status", problem, 404, "", true},
		{"plain JSON", httpxtest.Answer{Code: 400, CType: "application/json", Raw: []byte(`{"status":400,"title":"x"}`)}, 400, "", true},
		{"no title", httpxtest.Answer{Code: 400, CType: "application/problem+json", Raw: []byte(`{"status":400}`)}, 400, "", true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rec := &recorder{TB: t}
			httpxtest.CheckProblem(rec, tc.a, tc.status, tc.field)
			if rec.failed != tc.fails {
				t.Errorf("failed = %v, want %v", rec.failed, tc.fails)
			}
		})
	}
}

// recorder is a testing.TB that notes a failure instead of failing (a Fatalf
// returns).
type recorder struct {
	testing.TB
	failed bool
}

func (r *recorder) Errorf(string, ...any) { r.failed = true }
func (r *recorder) Fatalf(string, ...any) { r.failed = true }
func (r *recorder) Helper()               {}

func TestExpect(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/missing" {
			http.NotFound(w, r)
			return
		}
		_, _ = w.Write([]byte(`{"n":3}`))
	}))
	url := srv.URL
	if got := httpxtest.GetOK[struct{ N int }](t, url+"/n").N; got != 3 {
		t.Errorf("GetOK: n = %d", got)
	}
	for _, tc := range []struct {
		path   string
		status int
		fails  bool
	}{{"/n", 200, false}, {"/n", 201, true}, {"/missing", 404, true}} {
		rec := &recorder{TB: t}
		httpxtest.Expect[struct{ N int }](rec, httpxtest.Get(t, url+tc.path), tc.status)
		if rec.failed != tc.fails {
			t.Errorf("Expect %s %d: failed = %v, want %v", tc.path, tc.status, rec.failed, tc.fails)
		}
	}
	srv.Close()
	if a, err := httpxtest.Send(nil, "GET", url, nil); err == nil {
		t.Errorf("Send to a closed server: %d, no error", a.Code)
	}
}
