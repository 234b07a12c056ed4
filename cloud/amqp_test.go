package cloud_test

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/atrium-iot/atrium/internal/bus"
	"github.com/atrium-iot/atrium/internal/testenv"
	"github.com/atrium-iot/atrium/services/sensor"
)

// amqpURL is the RabbitMQ of the integration tests; without it they skip, unless
// ATRIUM_REQUIRE_INTEGRATION=1 makes the skip a failure.
func amqpURL(t *testing.T) string {
	return testenv.URL(t, "ATRIUM_TEST_AMQP_URL")
}

func TestSensorServiceOnRabbitMQ(t *testing.T) {
	s := start(t, t.TempDir(), "-bus="+amqpURL(t))
	got := make(chan bus.Message, 10)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	queue := "test-sensor-" + time.Now().Format("150405.000000")
	if err := s.app.Bus().Subscribe(ctx, queue, []string{bus.SensorDataReceived}, func(_ context.Context, m bus.Message) error {
		got <- m
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	a := do(t, "POST", s.url+"/sensors/data", []byte(`{"batch_id":"amqp-`+queue+`","readings":[{"sensor_id":"q1","type":"co2","value":700}]}`))
	if a.Code != 200 || num(a.Body["accepted"]) != 1 {
		t.Fatalf("ingest: %d %s", a.Code, a.Raw)
	}
	if a := do(t, "GET", s.url+"/readyz", nil); a.Code != 200 {
		t.Fatalf("readyz with RabbitMQ: %d %s", a.Code, a.Raw)
	}
	select {
	case m := <-got:
		var ev struct {
			BatchID  string           `json:"batch_id"`
			Readings []map[string]any `json:"readings"`
		}
		if err := json.Unmarshal(m.Body, &ev); err != nil || ev.BatchID != sensor.BatchKey(sensor.DirectPrincipal, "amqp-"+queue) || len(ev.Readings) != 1 || ev.Readings[0]["value"] != 700.0 {
			t.Fatalf("event %s: %v", m.Body, err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("no sensor.data.received from RabbitMQ")
	}
}
