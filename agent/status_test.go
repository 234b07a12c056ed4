package agent_test

import (
	"net/http"
	"testing"

	"github.com/atrium-iot/atrium/internal/httpx/httpxtest"
)

// The status server answers HEAD wherever it answers GET: the same status and
// Content-Type, no body.
func TestStatusServerAnswersHead(t *testing.T) {
	c := startCloud(t)
	a := startAgent(t, c.url)
	for _, p := range []string{"/status", "/devices", "/metrics", "/healthz", "/readyz"} {
		t.Run(p, func(t *testing.T) {
			get := httpxtest.Get(t, a.status+p)
			head := httpxtest.Do(t, nil, http.MethodHead, a.status+p, nil)
			if head.Code != get.Code || len(head.Raw) != 0 || head.CType != get.CType {
				t.Fatalf("HEAD %d %q with %d bytes; GET %d %q", head.Code, head.CType, len(head.Raw), get.Code, get.CType)
			}
		})
	}
}
