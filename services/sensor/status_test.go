package sensor_test

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/atrium-iot/atrium/internal/bus"
	"github.com/atrium-iot/atrium/internal/bus/membus"
	"github.com/atrium-iot/atrium/internal/events"
	"github.com/atrium-iot/atrium/internal/logging"
	"github.com/atrium-iot/atrium/internal/reading"
	"github.com/atrium-iot/atrium/services/sensor"
	"github.com/atrium-iot/atrium/services/sensor/sqlitestore"
)

// statusWatch collects the sensor.status.changed events of a bus.
type statusWatch struct {
	mu  sync.Mutex
	evs []events.SensorStatus
}

func watchStatus(t *testing.T, b bus.Bus) *statusWatch {
	t.Helper()
	w := &statusWatch{}
	if err := b.Subscribe(t.Context(), "watch", []string{bus.SensorStatusChanged}, func(_ context.Context, m bus.Message) error {
		ev, err := events.DecodeSensorStatus(m.Body)
		if err != nil {
			t.Errorf("status event: %v", err)
			return nil
		}
		w.mu.Lock()
		w.evs = append(w.evs, ev)
		w.mu.Unlock()
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return w
}

// take returns the events since the last take, as "sensor status/previous since".
func (w *statusWatch) take() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	var out []string
	for _, ev := range w.evs {
		out = append(out, fmt.Sprintf("%s %s/%s +%s", ev.SensorID, ev.Status, ev.Previous, ev.Since.Sub(t0)))
	}
	w.evs = nil
	return strings.Join(out, ", ")
}

var t0 = time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)

// TestStatusChanges: the sweep publishes a sensor online when first seen,
// offline once silent longer than OfflineAfter, online again when it reports;
// each change once, across restarts of the service, and a change that happened
// while the service was down is published by the next one.
func TestStatusChanges(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "sensor.db")
	st, err := sqlitestore.Open(ctx, path, sqlitestore.Options{Logger: logging.Discard()})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { st.Close() }()
	b := membus.New(logging.Discard())
	defer b.Close()
	w := watchStatus(t, b)
	now := t0
	newSvc := func() *sensor.Service {
		return sensor.New(st, b, logging.Discard(), sensor.Options{OfflineAfter: 5 * time.Minute, Now: func() time.Time { return now }})
	}
	ingest := func(id, sensorID, typ string, at time.Time) {
		t.Helper()
		r := reading.Reading{SensorID: sensorID, RoomID: "room-1", Type: typ, Value: 1, Timestamp: at}
		if _, err := st.Ingest(ctx, sensor.Batch{ID: id, Readings: []reading.Reading{r}, ReceivedAt: at}); err != nil {
			t.Fatal(err)
		}
	}
	svc := newSvc()
	sweep := func(at time.Duration, want string) {
		t.Helper()
		now = t0.Add(at)
		if err := svc.SweepStatus(ctx); err != nil {
			t.Fatal(err)
		}
		// membus delivers asynchronously.
		deadline := time.Now().Add(5 * time.Second)
		var got string
		for {
			w.mu.Lock()
			n := len(w.evs)
			w.mu.Unlock()
			if n >= strings.Count(want, ",")+1 || want == "" || time.Now().After(deadline) {
				time.Sleep(20 * time.Millisecond) // nothing more may arrive
				got = w.take()
				break
			}
			time.Sleep(5 * time.Millisecond)
		}
		if got != want {
			t.Fatalf("at +%s: events %q, want %q", at, got, want)
		}
	}
	ingest("b1", "a", "co2", t0)
	ingest("b2", "b", "temperature", t0.Add(2*time.Minute))
	sweep(2*time.Minute, "a online/ +0s, b online/ +2m0s")
	sweep(4*time.Minute, "")
	sweep(6*time.Minute, "a offline/online +5m0s")
	svc = newSvc() // a restart: nothing is published again
	sweep(6*time.Minute, "")
	ingest("b3", "a", "co2", t0.Add(8*time.Minute))
	sweep(8*time.Minute, "a online/offline +8m0s, b offline/online +7m0s")
	// a goes silent while the service is down; the next one publishes it.
	svc = newSvc()
	sweep(20*time.Minute, "a offline/online +13m0s")

	// The event carries the registry's room and types.
	ingest("b4", "c", "humidity", t0.Add(20*time.Minute))
	if err := svc.SweepStatus(ctx); err != nil {
		t.Fatal(err)
	}
	time.Sleep(50 * time.Millisecond)
	w.mu.Lock()
	last := w.evs[len(w.evs)-1]
	w.mu.Unlock()
	if last.SensorID != "c" || last.RoomID != "room-1" || strings.Join(last.Types, ",") != "humidity" || !last.LastSeen.Equal(t0.Add(20*time.Minute)) {
		t.Errorf("event %+v", last)
	}
}
