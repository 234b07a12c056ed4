package servicekit_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/go-chi/chi/v5"

	"github.com/atrium-iot/atrium/internal/httpx/httpxtest"
	"github.com/atrium-iot/atrium/internal/logging"
	"github.com/atrium-iot/atrium/internal/servicekit"
)

// pinger answers Ping with err.
type pinger struct{ err error }

func (p pinger) Ping(context.Context) error { return p.err }

func TestHandler(t *testing.T) {
	down := errors.New("down")
	tests := []struct {
		name       string
		store, bus error
		extra      error
		wantReadyz int
	}{
		{"all up", nil, nil, nil, 200},
		{"store down", down, nil, nil, 503},
		{"bus down", nil, down, nil, 503},
		{"extra check failing", nil, nil, down, 503},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			k := servicekit.New(logging.Discard(), pinger{tc.store}, pinger{tc.bus})
			k.Ready("extra", func(context.Context) error { return tc.extra })
			hits := k.Counter("test_hits_total", "Hits.")
			byCode := k.CounterVec("test_codes_total", "Hits by code.", "code")
			srv := httptest.NewServer(k.Handler(func(r chi.Router) {
				r.Get("/hello", func(w http.ResponseWriter, _ *http.Request) {
					hits.Inc()
					byCode.WithLabelValues("200").Inc()
					w.WriteHeader(http.StatusNoContent)
				})
			}))
			defer srv.Close()

			if a := httpxtest.Get(t, srv.URL+"/hello"); a.Code != http.StatusNoContent {
				t.Errorf("GET /hello: %d %s", a.Code, a.Raw)
			}
			a := httpxtest.Get(t, srv.URL+"/readyz")
			if a.Code != tc.wantReadyz {
				t.Errorf("GET /readyz: %d %s, want %d", a.Code, a.Raw, tc.wantReadyz)
			}
			checks, _ := a.Body["checks"].(map[string]any)
			for _, name := range []string{"store", "bus", "extra"} {
				if _, ok := checks[name]; !ok {
					t.Errorf("/readyz does not name %q: %s", name, a.Raw)
				}
			}
			m := httpxtest.Scrape(t, nil, srv.URL)
			if v := m.Get("test_hits_total"); v != 1 {
				t.Errorf("test_hits_total = %v, want 1", v)
			}
			if v := m.Get(`test_codes_total{code="200"}`); v != 1 {
				t.Errorf("test_codes_total = %v, want 1", v)
			}
			if k.Registry() == nil {
				t.Error("Registry is nil")
			}
		})
	}
}

func TestDefault(t *testing.T) {
	tests := []struct {
		name     string
		in, want time.Duration
	}{
		{"zero takes the default", 0, time.Second},
		{"negative takes the default", -time.Minute, time.Second},
		{"positive is kept", 3 * time.Millisecond, 3 * time.Millisecond},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			v := tc.in
			servicekit.Default(&v, time.Second)
			if v != tc.want {
				t.Errorf("Default(%v, 1s) = %v, want %v", tc.in, v, tc.want)
			}
		})
	}
	n := int64(-1)
	servicekit.Default(&n, 1<<20)
	if n != 1<<20 {
		t.Errorf("Default(-1, 1 MiB) = %d", n)
	}
}
