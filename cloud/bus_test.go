package cloud_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/atrium-iot/atrium/cloud/cloudtest"
	"github.com/atrium-iot/atrium/internal/servicetest"
	"github.com/atrium-iot/atrium/internal/testwait"
)

// TestEveryBusRow runs the four services on one bus, in-process and on
// RabbitMQ, and follows every row of the bus table: a sensor that falls silent
// is declared offline by the sensor service (sensor.status.changed) and the
// notification service raises its silent alert from that; a room's co2 over a
// rule of source "room" raises an alert from room.metrics.updated; analytics
// counts both alerts from alert.raised; the sensor reporting again resolves its
// alert and analytics counts one active alert fewer (alert.resolved).
func TestEveryBusRow(t *testing.T) {
	for _, tc := range []struct {
		name string
		bus  func(t *testing.T) string
	}{
		{"memory", func(*testing.T) string { return "memory" }},
		{"rabbitmq", func(t *testing.T) string { return roomVhost(t, amqpURL(t)) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			app := cloudtest.Start(t, "-target=sensor,room,analytics,notification", "-sensor-addr=127.0.0.1:0", "-room-addr=127.0.0.1:0",
				"-analytics-addr=127.0.0.1:0", "-notification-addr=127.0.0.1:0", "-data-dir="+t.TempDir(), "-bus="+tc.bus(t), "-offline-after=2s")
			url := func(part string) string { return "http://" + app.Addr(part) }
			servicetest.WaitReady(t, url("notification"))
			for _, rule := range []string{
				`{"id":"quiet-silent","kind":"sensor_silent","for":"1s","severity":"critical","room_id":"room-quiet"}`,
				`{"id":"busy-co2","source":"room","metric":"co2","comparison":"gt","threshold":1000,"severity":"warning","room_id":"room-busy"}`,
			} {
				if a := do(t, "POST", url("notification")+"/rules", []byte(rule)); a.Code != 201 {
					t.Fatalf("create rule: %d %s", a.Code, a.Raw)
				}
			}
			ingest := func(id, body string) {
				t.Helper()
				a := do(t, "POST", url("sensor")+"/sensors/data", []byte(`{"batch_id":"`+id+`","readings":[`+body+`]}`))
				if a.Code != 200 || num(a.Body["accepted"]) == 0 {
					t.Fatalf("ingest %s: %d %s", id, a.Code, a.Raw)
				}
			}
			now := time.Now()
			ingest("b1", fmt.Sprintf(`{"sensor_id":"quiet-1","room_id":"room-quiet","type":"humidity","value":40,"timestamp":%q},`+
				`{"sensor_id":"busy-1","room_id":"room-busy","type":"co2","value":1500,"timestamp":%q}`, ts(now), ts(now)))

			active := func() map[string]map[string]any {
				out := map[string]map[string]any{}
				a := do(t, "GET", url("notification")+"/alerts?state=active", nil)
				items, _ := a.Body["alerts"].([]any)
				for _, it := range items {
					m := it.(map[string]any)
					out[m["rule_id"].(string)] = m
				}
				return out
			}
			var alerts map[string]map[string]any
			testwait.Within(t, 30*time.Second, "the silent and the room alerts", func() bool {
				alerts = active()
				return alerts["quiet-silent"] != nil && alerts["busy-co2"] != nil
			})
			if a := alerts["quiet-silent"]; a["sensor_id"] != "quiet-1" || a["room_id"] != "room-quiet" {
				t.Errorf("silent alert %v", a)
			}
			if a := alerts["busy-co2"]; a["sensor_id"] != "" || a["room_id"] != "room-busy" || a["type"] != "co2" || a["value"] != 1500.0 {
				t.Errorf("room alert %v", a)
			}
			if a := do(t, "GET", url("notification")+"/events?type=sensor.offline&limit=1000", nil); !hasSensor(a.Body["events"], "quiet-1") {
				t.Errorf("no sensor.offline event of quiet-1: %s", a.Raw)
			}
			summary := func(key string) int { return num(do(t, "GET", url("analytics")+"/analytics/summary", nil).Body[key]) }
			testwait.Within(t, 30*time.Second, "analytics counting both alerts", func() bool {
				return summary("active_alerts") == 2 && summary("alerts_raised_last_day") == 2
			})

			// The sensor reports again: its alert resolves, analytics counts it.
			ingest("b2", fmt.Sprintf(`{"sensor_id":"quiet-1","room_id":"room-quiet","type":"humidity","value":41,"timestamp":%q}`, ts(time.Now())))
			testwait.Within(t, 30*time.Second, "the silent alert resolved", func() bool { return active()["quiet-silent"] == nil })
			testwait.Within(t, 30*time.Second, "analytics counting the resolve", func() bool {
				return summary("active_alerts") == 1 && summary("alerts_raised_last_day") == 2
			})
		})
	}
}

func hasSensor(items any, id string) bool {
	list, _ := items.([]any)
	for _, it := range list {
		if m, ok := it.(map[string]any); ok && m["sensor_id"] == id {
			return true
		}
	}
	return false
}
