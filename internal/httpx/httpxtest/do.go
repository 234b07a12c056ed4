package httpxtest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"testing"
)

// Answer is what a server answered to Do.
type Answer struct {
	Code  int
	CType string // the Content-Type header
	Head  http.Header
	Raw   []byte
	Body  map[string]any // Raw decoded, when it is a JSON object
}

// Do sends one request with client (http.DefaultClient when nil), with exactly the
// headers given as name, value pairs (a later pair overrides an earlier one of the
// same name) and no body when body is empty, and reads the whole answer.
func Do(t testing.TB, client *http.Client, method, url string, body []byte, headers ...string) Answer {
	t.Helper()
	a, err := Send(client, method, url, body, headers...)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// Send is Do that returns the error of a request that got no whole answer
// instead of failing the test: for polling a server that may be down.
func Send(client *http.Client, method, url string, body []byte, headers ...string) (Answer, error) {
	var rd io.Reader
	if len(body) > 0 {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequest(method, url, rd)
	if err != nil {
		return Answer{}, err
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	if client == nil {
		client = http.DefaultClient
	}
	resp, err := client.Do(req)
	if err != nil {
		return Answer{}, err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		return Answer{}, fmt.Errorf("%s %s: read the answer: %w", method, url, err)
	}
	a := Answer{Code: resp.StatusCode, CType: resp.Header.Get("Content-Type"), Head: resp.Header, Raw: raw}
	_ = json.Unmarshal(raw, &a.Body)
	return a, nil
}
