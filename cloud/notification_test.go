package cloud_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/atrium-iot/atrium/cloud/cloudtest"
	"github.com/atrium-iot/atrium/internal/servicetest"
)

// startSensorNotification runs `atrium -target=sensor,notification` on loopback
// ports and returns the two services' base URLs.
func startSensorNotification(t *testing.T) (sensorURL, notifyURL string) {
	t.Helper()
	args := []string{"-target=sensor,notification", "-sensor-addr=127.0.0.1:0", "-notification-addr=127.0.0.1:0", "-data-dir=" + t.TempDir()}
	app := cloudtest.Start(t, args...)
	notifyURL = "http://" + app.Addr("notification")
	servicetest.WaitReady(t, notifyURL)
	return "http://" + app.Addr("sensor"), notifyURL
}

func TestSensorToNotificationEndToEnd(t *testing.T) {
	sensorURL, notifyURL := startSensorNotification(t)
	ctx := t.Context()
	ws, _, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(notifyURL, "http")+"/ws/notifications?room_id=room-101&severity=warning", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ws.CloseNow()

	// CO2 at 1250 ppm every 30 s for 8 minutes, ending a minute ago.
	start := time.Now().Add(-9 * time.Minute).Truncate(time.Second)
	var rs []string
	for i := range 17 {
		rs = append(rs, fmt.Sprintf(`{"sensor_id":"co2-7","room_id":"room-101","type":"co2","value":1250,"unit":"ppm","timestamp":%q}`,
			ts(start.Add(time.Duration(i)*30*time.Second))))
	}
	a := do(t, "POST", sensorURL+"/sensors/data", []byte(`{"batch_id":"e2e-1","readings":[`+strings.Join(rs, ",")+`]}`))
	if a.Code != 200 || num(a.Body["accepted"]) != 17 {
		t.Fatalf("ingest: %d %s", a.Code, a.Raw)
	}

	rctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	_, msg, err := ws.Read(rctx)
	if err != nil {
		t.Fatalf("no alert on the WebSocket: %v", err)
	}
	var push struct {
		Kind  string `json:"kind"`
		Alert struct {
			ID, RuleID, State string
			RaisedAt          time.Time `json:"raised_at"`
		} `json:"alert"`
	}
	if err := json.Unmarshal(msg, &push); err != nil {
		t.Fatal(err)
	}
	if push.Kind != "alert.raised" || push.Alert.State != "active" || !push.Alert.RaisedAt.Equal(start.Add(5*time.Minute)) {
		t.Fatalf("push %s: want alert.raised at the reading that completed 5 minutes", msg)
	}

	checks := []struct {
		name, path, key string
		want            func(item map[string]any) bool
	}{
		{"GET /alerts", "/alerts?state=active", "alerts", func(m map[string]any) bool {
			return m["id"] == push.Alert.ID && m["rule_id"] == "default-co2-warning" && m["sensor_id"] == "co2-7" && m["room_id"] == "room-101"
		}},
		{"GET /alerts/{id}", "/alerts/" + push.Alert.ID, "", func(m map[string]any) bool { return m["severity"] == "warning" && m["value"] == 1250.0 }},
		{"GET /events", "/events?type=alert.raised&room_id=room-101", "events", func(m map[string]any) bool { return m["alert_id"] == push.Alert.ID }},
		{"sensor online event", "/events?type=sensor.online", "events", func(m map[string]any) bool { return m["sensor_id"] == "co2-7" }},
	}
	for _, c := range checks {
		t.Run(c.name, func(t *testing.T) {
			// The online event comes from the sensor service's sensor.status.changed,
			// apart from the readings: it may come a moment later.
			deadline := time.Now().Add(10 * time.Second)
			for {
				a := do(t, "GET", notifyURL+c.path, nil)
				if a.Code != 200 {
					t.Fatalf("%d %s", a.Code, a.Raw)
				}
				items := []any{a.Body}
				if c.key != "" {
					items, _ = a.Body[c.key].([]any)
				}
				if len(items) == 1 && c.want(items[0].(map[string]any)) {
					return
				}
				if time.Now().After(deadline) {
					t.Fatalf("unexpected answer: %s", a.Raw)
				}
				time.Sleep(20 * time.Millisecond)
			}
		})
	}
}
