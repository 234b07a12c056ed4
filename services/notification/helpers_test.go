package notification_test

import (
	"context"
	"encoding/json"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/atrium-iot/atrium/internal/bus"
	"github.com/atrium-iot/atrium/internal/bus/membus"
	"github.com/atrium-iot/atrium/internal/events"
	"github.com/atrium-iot/atrium/internal/httpx/httpxtest"
	"github.com/atrium-iot/atrium/internal/logging"
	"github.com/atrium-iot/atrium/internal/reading"
	"github.com/atrium-iot/atrium/internal/servicetest"
	"github.com/atrium-iot/atrium/internal/sqlitex"
	"github.com/atrium-iot/atrium/internal/testwait"
	"github.com/atrium-iot/atrium/services/notification"
	"github.com/atrium-iot/atrium/services/notification/sqlitestore"
)

var t0 = time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)

// clock is a settable clock for the service.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time  { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) Set(t time.Time) { c.mu.Lock(); c.t = t; c.mu.Unlock() }

// env is a running notification service on a real SQLite file, the in-process bus
// and a loopback HTTP server.
type env struct {
	t     *testing.T
	svc   *notification.Service
	bus   *membus.Bus
	store *sqlitestore.Store
	run   *servicetest.Running
	url   string
	once  sync.Once
	// seen collects what the service published on the bus, by subject.
	mu   sync.Mutex
	seen map[string][]notification.Alert
}

// start runs the service over the store in dir (reopened when it exists).
func start(t *testing.T, dir string, opts notification.Options) *env {
	t.Helper()
	st, err := sqlitestore.Open(t.Context(), filepath.Join(dir, "notification.db"), sqlitestore.Options{Settings: sqlitex.Settings{Synchronous: "NORMAL"}})
	if err != nil {
		t.Fatal(err)
	}
	if opts.TickInterval == 0 {
		opts.TickInterval = 20 * time.Millisecond
	}
	b := servicetest.Bus(t)
	e := &env{t: t, bus: b, store: st, seen: map[string][]notification.Alert{}}
	if err := b.Subscribe(context.Background(), "watcher", []string{"alert.*"}, func(_ context.Context, m bus.Message) error {
		var a notification.Alert
		if err := json.Unmarshal(m.Body, &a); err != nil {
			return err
		}
		e.mu.Lock()
		e.seen[m.Subject] = append(e.seen[m.Subject], a)
		e.mu.Unlock()
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	e.svc = notification.New(st, b, logging.Discard(), opts)
	e.run = servicetest.Start(t, e.svc)
	e.url = e.run.URL
	t.Cleanup(e.stop)
	servicetest.WaitReady(t, e.url)
	return e
}

// stop ends Run, then closes the server, the bus and the store.
func (e *env) stop() {
	e.once.Do(func() {
		e.run.Stop()
		e.bus.Close()
		e.store.Close()
	})
}

func (e *env) published(subject string) []notification.Alert {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]notification.Alert(nil), e.seen[subject]...)
}

// publish sends readings as one sensor.data.received batch.
func (e *env) publish(batchID string, rs ...reading.Reading) {
	e.t.Helper()
	if err := e.bus.Publish(e.t.Context(), bus.SensorDataReceived, events.EncodeSensorData(batchID, "", rs)); err != nil {
		e.t.Fatal(err)
	}
}

// probe publishes one reading that no rule alerts on, as batch batchID, and
// waits until the service has evaluated evaluated readings in all: the events
// published before it are then handled.
func (e *env) probe(batchID string, evaluated int) {
	e.t.Helper()
	e.publish(batchID, reading.Reading{SensorID: "probe", RoomID: "room-9", Type: "noise", Value: 1, Timestamp: t0.Add(9 * time.Minute)})
	testwait.For(e.t, "the probe batch", func() bool {
		return httpxtest.Scrape(e.t, nil, e.url).Get("atrium_notification_readings_total") == float64(evaluated)
	})
}

// status publishes a sensor.status.changed event, as the sensor service does.
func (e *env) status(ev events.SensorStatus) {
	e.t.Helper()
	body, err := events.EncodeSensorStatus(ev)
	if err != nil {
		e.t.Fatal(err)
	}
	if err := e.bus.Publish(e.t.Context(), bus.SensorStatusChanged, body); err != nil {
		e.t.Fatal(err)
	}
}

// list decodes the items of a list answer.
func list[T any](t *testing.T, url, key string) []T {
	t.Helper()
	m := httpxtest.GetOK[map[string]json.RawMessage](t, url)
	var out []T
	if err := json.Unmarshal(m[key], &out); err != nil {
		t.Fatalf("GET %s: %s: %v", url, m[key], err)
	}
	return out
}
