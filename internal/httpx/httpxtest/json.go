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

// Decode reads a's JSON body into a T; a body that is not one fails t.
func Decode[T any](t testing.TB, a Answer) T {
	t.Helper()
	var v T
	if err := json.Unmarshal(a.Raw, &v); err != nil {
		t.Fatalf("decode %s: %v", a.Raw, err)
	}
	return v
}
