package sensor_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/atrium-iot/atrium/internal/bus"
	"github.com/atrium-iot/atrium/internal/bus/membus"
	"github.com/atrium-iot/atrium/internal/logging"
	"github.com/atrium-iot/atrium/internal/servicetest"
	"github.com/atrium-iot/atrium/internal/testwait"
	"github.com/atrium-iot/atrium/services/sensor"
)

// switchBus is the in-process bus behind a switch, so a test can make the bus
// unreachable and reachable again.
type switchBus struct {
	*membus.Bus
	mu   sync.Mutex
	down bool
}

func (b *switchBus) set(down bool) { b.mu.Lock(); b.down = down; b.mu.Unlock() }

func (b *switchBus) Publish(ctx context.Context, subject string, body []byte) error {
	b.mu.Lock()
	down := b.down
	b.mu.Unlock()
	if down {
		return membus.ErrClosed
	}
	return b.Bus.Publish(ctx, subject, body)
}

func TestUnavailableAnswers503AndRetryIsSafe(t *testing.T) {
	ctx := context.Background()
	st := openStore(t, t.TempDir(), "")
	b := &switchBus{Bus: servicetest.Bus(t)}
	var mu sync.Mutex
	got := 0
	if err := b.Subscribe(ctx, "t", []string{bus.SensorDataReceived}, func(context.Context, bus.Message) error {
		mu.Lock()
		got++
		mu.Unlock()
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	svc := sensor.New(st, b, logging.Discard(), sensor.Options{RelayInterval: time.Hour})
	url := servicetest.Serve(t, svc.Handler())
	body := `{"batch_id":"b-503","readings":[{"sensor_id":"x","type":"co2","value":500}]}`

	b.set(true)
	resp := send(t, url, []byte(body))
	if resp.Code != 503 || resp.Head.Get("Retry-After") == "" {
		t.Fatalf("bus down: status %d Retry-After %q, want 503 with Retry-After", resp.Code, resp.Head.Get("Retry-After"))
	}
	b.set(false)
	if resp = send(t, url, []byte(body)); resp.Code != 200 {
		t.Fatalf("retry after the bus is back: %d", resp.Code)
	}
	if resp = send(t, url, []byte(body)); resp.Code != 200 {
		t.Fatalf("second retry: %d", resp.Code)
	}
	published := func() int { mu.Lock(); defer mu.Unlock(); return got }
	testwait.Within(t, 5*time.Second, "the event published", func() bool { return published() > 0 })
	if n := published(); n != 1 {
		t.Fatalf("events published: %d, want exactly 1", n)
	}
	rs, _, err := st.Readings(ctx, sensor.ReadingQuery{SensorID: "x", Limit: 10})
	if err != nil || len(rs) != 1 {
		t.Fatalf("stored %d readings (%v), want 1", len(rs), err)
	}

	_ = st.Close()
	resp = send(t, url, []byte(`{"batch_id":"b-closed","readings":[{"sensor_id":"x","type":"co2","value":501}]}`))
	if resp.Code != 503 || resp.Head.Get("Retry-After") == "" {
		t.Fatalf("store closed: status %d, want 503 with Retry-After", resp.Code)
	}
}
