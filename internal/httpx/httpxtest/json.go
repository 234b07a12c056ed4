package httpxtest

import (
	"encoding/json"
	"net/http"
	"testing"
)

// String is the answer's body as text.
func (a Answer) String() string { return string(a.Raw) }

// DoJSON is Do with http.DefaultClient and Content-Type application/json, unless
// headers name another.
func DoJSON(t testing.TB, method, url string, body []byte, headers ...string) Answer {
	t.Helper()
	return Do(t, nil, method, url, body, append([]string{"Content-Type", "application/json"}, headers...)...)
}

// Get is a GET with http.DefaultClient.
func Get(t testing.TB, url string) Answer {
	t.Helper()
	return Do(t, nil, http.MethodGet, url, nil)
}

// GetJSON is a GET with client (http.DefaultClient when nil) whose 2xx answer's
// JSON body is decoded into v (when not nil); a 2xx body that is not v's JSON
// fails t. It returns the answer, whatever its status.
func GetJSON(t testing.TB, client *http.Client, url string, v any) Answer {
	t.Helper()
	a := Do(t, client, http.MethodGet, url, nil)
	if a.Code/100 == 2 && v != nil {
		if err := json.Unmarshal(a.Raw, v); err != nil {
			t.Fatalf("GET %s: %v: %.500s", url, err, a.Raw)
		}
	}
	return a
}

// GetOK is a GET of url that must answer 200 OK with a T in JSON.
func GetOK[T any](t testing.TB, url string) T {
	t.Helper()
	return Expect[T](t, Get(t, url), http.StatusOK)
}

// Expect fails t unless a's status is status, and reads a's JSON body into a T.
func Expect[T any](t testing.TB, a Answer, status int) T {
	t.Helper()
	if a.Code != status {
		t.Fatalf("status %d, want %d: %s", a.Code, status, a.Raw)
	}
	return Decode[T](t, a)
}

// Decode reads a's JSON body into a T; a body that is not one fails t.
func Decode[T any](t testing.TB, a Answer) T {
	t.Helper()
	var v T
	if err := json.Unmarshal(a.Raw, &v); err != nil {
		t.Fatalf("decode %s: %v", a.Raw, err)
	}
	return v
}

// RunProblem runs subtest name: it sends method url with body (DoJSON) and
// checks the answer with CheckProblem. A table of bad requests calls it once a
// case.
func RunProblem(t *testing.T, name, method, url, body string, status int, field string) {
	t.Helper()
	t.Run(name, func(t *testing.T) {
		CheckProblem(t, DoJSON(t, method, url, []byte(body)), status, field)
	})
}

// CheckProblem fails t unless a is an RFC 9457 problem (application/problem+json)
// with the status code status and a title, whose errors name field when field is
// not empty.
func CheckProblem(t testing.TB, a Answer, status int, field string) {
	t.Helper()
	if a.Code != status || a.CType != "application/problem+json" {
		t.Errorf("%d %s %s, want a %d problem+json", a.Code, a.CType, a.Raw, status)
		return
	}
	var p struct {
		Status int    `json:"status"`
		Title  string `json:"title"`
		Errors []struct {
			Field string `json:"field"`
		} `json:"errors"`
	}
	if err := json.Unmarshal(a.Raw, &p); err != nil || p.Status != status || p.Title == "" {
		t.Errorf("not a problem of status %d: %s", status, a.Raw)
		return
	}
	if field == "" {
		return
	}
	for _, e := range p.Errors {
		if e.Field == field {
			return
		}
	}
	t.Errorf("the problem's errors do not name %q: %s", field, a.Raw)
}
