// Package servicekit is what the cloud services are built on alike: the
// metrics registry each one serves at /metrics, its HTTP API (httpx's router
// with /readyz checking its store, its bus and whatever else the service
// names, then the service's own routes), and the defaulting of its options.
// It knows no service.
package servicekit

import (
	"context"
	"log/slog"
	"net/http"

	"github.com/go-chi/chi/v5"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"

	"github.com/atrium-iot/atrium/internal/httpx"
)

// Pinger is a dependency /readyz checks: a store or the bus.
type Pinger interface {
	Ping(ctx context.Context) error
}

// Kit is a service's registry, logger and readiness checks; a service holds
// one made by New.
type Kit struct {
	log    *slog.Logger
	reg    *prometheus.Registry
	checks map[string]httpx.Check
}

// New is the kit of a service logging to log, whose /readyz checks its store
// and its bus ("store", "bus"). Its registry has the Go and process
// collectors.
func New(log *slog.Logger, store, bus Pinger) Kit {
	return Kit{log: log, reg: httpx.NewRegistry(), checks: map[string]httpx.Check{"store": store.Ping, "bus": bus.Ping}}
}

// Ready adds a check named name to /readyz, beside the store's and the bus's.
func (k *Kit) Ready(name string, check httpx.Check) { k.checks[name] = check }

// Handler is the service's HTTP API: httpx.NewRouter with the kit's registry
// and checks, and the routes that routes mounts.
func (k *Kit) Handler(routes func(chi.Router)) http.Handler {
	r := httpx.NewRouter(k.log, k.reg, k.checks)
	routes(r)
	return r
}

// Registry is the registry /metrics serves.
func (k *Kit) Registry() *prometheus.Registry { return k.reg }

// Counter registers a counter named name.
func (k *Kit) Counter(name, help string) prometheus.Counter {
	return promauto.With(k.reg).NewCounter(prometheus.CounterOpts{Name: name, Help: help})
}

// CounterVec registers a counter named name with the labels given.
func (k *Kit) CounterVec(name, help string, labels ...string) *prometheus.CounterVec {
	return promauto.With(k.reg).NewCounterVec(prometheus.CounterOpts{Name: name, Help: help}, labels)
}

// Default sets *v to d when *v is zero or negative: an option's "zero values
// take the default".
func Default[T ~int | ~int64](v *T, d T) {
	if *v <= 0 {
		*v = d
	}
}
