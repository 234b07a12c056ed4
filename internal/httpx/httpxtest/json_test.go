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
