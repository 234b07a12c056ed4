package sensor_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/atrium-iot/atrium/internal/bus"
	"github.com/atrium-iot/atrium/internal/events"
	"github.com/atrium-iot/atrium/internal/logging"
	"github.com/atrium-iot/atrium/internal/reading"
	"github.com/atrium-iot/atrium/internal/servicetest"
	"github.com/atrium-iot/atrium/internal/testwait"
	"github.com/atrium-iot/atrium/services/sensor"
)

// statusWatch collects the sensor.status.changed events of a bus.
type statusWatch struct {
	mu      sync.Mutex
	evs     []events.SensorStatus
	markers int
}

// marker is the sensor id of the events drain publishes after the others.
const marker = "zz-marker"

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
		defer w.mu.Unlock()
		if ev.SensorID == marker {
			w.markers++
			return nil
		}
		w.evs = append(w.evs, ev)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return w
}

// drain returns the events published so far and forgets them: it publishes a
// marker behind them (the queue delivers in order) and waits for it.
func (w *statusWatch) drain(t *testing.T, b bus.Bus) []events.SensorStatus {
	t.Helper()
	w.mu.Lock()
	want := w.markers + 1
	w.mu.Unlock()
	ev := events.SensorStatus{SensorID: marker, Status: events.StatusOnline, LastSeen: t0}
	body, err := events.EncodeSensorStatus(ev)
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Publish(t.Context(), bus.SensorStatusChanged, body); err != nil {
		t.Fatal(err)
	}
	testwait.Within(t, 5*time.Second, "the marker event", func() bool {
		w.mu.Lock()
		defer w.mu.Unlock()
		return w.markers >= want
	})
	w.mu.Lock()
	defer w.mu.Unlock()
	evs := w.evs
	w.evs = nil
	return evs
}

// brief is events as "sensor status/previous +since".
func brief(evs []events.SensorStatus) string {
	var out []string
	for _, ev := range evs {
		out = append(out, fmt.Sprintf("%s %s/%s +%s", ev.SensorID, ev.Status, ev.Previous, ev.Since.Sub(t0)))
	}
	return strings.Join(out, ", ")
}

var t0 = time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)

// TestStatusChanges: the sweep publishes a sensor online when first seen,
// offline once silent longer than OfflineAfter, online again when it reports;
// each change once, across restarts of the service, and a change that happened
// while the service was down is published by the next one.
func TestStatusChanges(t *testing.T) {
	ctx := context.Background()
	st := openStore(t, t.TempDir(), "")
	b := servicetest.Bus(t)
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
		if got := brief(w.drain(t, b)); got != want {
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
	evs := w.drain(t, b)
	if len(evs) != 1 || evs[0].SensorID != "c" || evs[0].RoomID != "room-1" || strings.Join(evs[0].Types, ",") != "humidity" ||
		!evs[0].LastSeen.Equal(t0.Add(20*time.Minute)) {
		t.Errorf("events %+v", evs)
	}

	// With the bus down nothing is marked: the next sweep publishes it.
	sb := &switchBus{Bus: b}
	svc = sensor.New(st, sb, logging.Discard(), sensor.Options{OfflineAfter: 5 * time.Minute, Now: func() time.Time { return now }})
	now = t0.Add(30 * time.Minute)
	sb.set(true)
	if err := svc.SweepStatus(ctx); !errors.Is(err, sensor.ErrUnavailable) {
		t.Fatalf("sweep with the bus down: %v, want ErrUnavailable", err)
	}
	sb.set(false)
	if err := svc.SweepStatus(ctx); err != nil {
		t.Fatal(err)
	}
	if got := brief(w.drain(t, b)); got != "c offline/online +25m0s" {
		t.Errorf("after the bus is back: %q", got)
	}
}

// BenchmarkSweepStatus sweeps a SQLite registry of 10,000 sensors in which
// nothing changed: the steady cost of watching liveness, paid every
// StatusInterval (-offline-after/10, from 1s to 30s).
func BenchmarkSweepStatus(b *testing.B) {
	ctx := context.Background()
	st := openStore(b, b.TempDir(), "NORMAL")
	mb := servicetest.Bus(b)
	const sensors, perBatch = 10000, 500
	for i := 0; i < sensors; i += perBatch {
		rs := make([]reading.Reading, perBatch)
		for k := range rs {
			rs[k] = reading.Reading{SensorID: fmt.Sprintf("s%05d", i+k), RoomID: fmt.Sprintf("room-%d", (i+k)/20), Type: "co2", Value: 500, Timestamp: t0}
		}
		if _, err := st.Ingest(ctx, sensor.Batch{ID: fmt.Sprintf("b%d", i), Readings: rs, ReceivedAt: t0}); err != nil {
			b.Fatal(err)
		}
	}
	svc := sensor.New(st, mb, logging.Discard(), sensor.Options{Now: func() time.Time { return t0.Add(time.Minute) }})
	if err := svc.SweepStatus(ctx); err != nil { // publishes 10,000 online
		b.Fatal(err)
	}
	b.ResetTimer()
	for b.Loop() {
		if err := svc.SweepStatus(ctx); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(sensors)*float64(b.N)/b.Elapsed().Seconds(), "sensors/s")
}
