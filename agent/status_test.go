package agent_test

import (
	"io"
	"net/http"
	"testing"
)

// The status server answers HEAD wherever it answers GET: the same status and
// Content-Type, no body.
func TestStatusServerAnswersHead(t *testing.T) {
	c := startCloud(t)
	a := startAgent(t, c.url)
	for _, p := range []string{"/status", "/devices", "/metrics", "/healthz", "/readyz"} {
		t.Run(p, func(t *testing.T) {
			get, err := http.Get(a.status + p)
			if err != nil {
				t.Fatal(err)
			}
			_, _ = io.Copy(io.Discard, get.Body)
			get.Body.Close()
			head, err := http.Head(a.status + p)
			if err != nil {
				t.Fatal(err)
			}
			n, _ := io.Copy(io.Discard, head.Body)
			head.Body.Close()
			if head.StatusCode != get.StatusCode || n != 0 || head.Header.Get("Content-Type") != get.Header.Get("Content-Type") {
				t.Fatalf("HEAD %d %q with %d bytes; GET %d %q", head.StatusCode, head.Header.Get("Content-Type"), n, get.StatusCode, get.Header.Get("Content-Type"))
			}
		})
	}
}
