package cloud_test

import (
	"context"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/atrium-iot/atrium/cloud/cloudtest"
	"github.com/atrium-iot/atrium/services/analytics/clickhousestore"
)

// startAnalytics runs `atrium -target=sensor,analytics` on loopback ports and
// returns the base URLs of the two services.
func startAnalytics(t *testing.T, extra ...string) (sensorURL, analyticsURL string) {
	t.Helper()
	args := append([]string{"-target=sensor,analytics", "-sensor-addr=127.0.0.1:0", "-analytics-addr=127.0.0.1:0", "-data-dir=" + t.TempDir()}, extra...)
	app := cloudtest.Start(t, args...)
	return "http://" + app.Addr("sensor"), "http://" + app.Addr("analytics")
}

// TestAnalyticsEndToEnd: readings posted to the sensor service reach the
// analytics service over the bus, and its summary and trends show them.
func TestAnalyticsEndToEnd(t *testing.T) {
	stores := []struct {
		name  string
		extra []string
	}{{"sqlite", nil}}
	if u := os.Getenv("ATRIUM_TEST_CLICKHOUSE_URL"); u != "" {
		stores = append(stores, struct {
			name  string
			extra []string
		}{"clickhouse", []string{"-analytics-store=" + strings.TrimSuffix(u, "/") + fmt.Sprintf("_cloud_%d", time.Now().UnixNano()%1e9)}})
	}
	for _, st := range stores {
		t.Run(st.name, func(t *testing.T) {
			if st.name == "clickhouse" {
				u := strings.TrimPrefix(st.extra[0], "-analytics-store=")
				t.Cleanup(func() { // after the app has stopped: drop the run's database
					if d, err := clickhousestore.Open(context.Background(), u, clickhousestore.Options{}); err == nil {
						_ = d.DropDatabase(context.Background())
						d.Close()
					}
				})
			}
			sensorURL, analyticsURL := startAnalytics(t, st.extra...)
			now := time.Now().UTC().Add(-2 * time.Minute).Truncate(time.Second)
			var rs []string
			for i := range 10 {
				v := 600 // room-0 is fine, room-1's latest (sensor 9) is 1350 ppm
				if i%2 == 1 {
					v = 900 + 50*i
				}
				rs = append(rs, fmt.Sprintf(`{"sensor_id":"co2-%d","room_id":"room-%d","type":"co2","value":%d,"timestamp":%q}`, i, i%2, v, ts(now.Add(time.Duration(i)*time.Second))))
			}
			body := `{"batch_id":"e2e-1","readings":[` + strings.Join(rs, ",") + `]}`
			for range 2 { // the second is a replay: stores nothing
				if a := do(t, "POST", sensorURL+"/sensors/data", []byte(body)); a.Code != 200 {
					t.Fatalf("ingest: %d %s", a.Code, a.Raw)
				}
			}
			deadline := time.Now().Add(30 * time.Second)
			var a answer
			for {
				a = do(t, "GET", analyticsURL+"/analytics/summary", nil)
				r, _ := a.Body["readings"].(map[string]any)
				if a.Code == 200 && r != nil && num(r["last_hour"]) == 10 {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("summary never showed the 10 readings: %d %s", a.Code, a.Raw)
				}
				time.Sleep(50 * time.Millisecond)
			}
			sens := a.Body["sensors"].(map[string]any)
			if num(sens["total"]) != 10 || num(sens["online"]) != 10 || sens["stale"] != false {
				t.Errorf("sensors %v, want 10 online", sens)
			}
			att, _ := a.Body["attention"].([]any)
			if num(a.Body["rooms"]) != 2 || len(att) != 1 || att[0].(map[string]any)["room_id"] != "room-1" {
				t.Errorf("rooms %v attention %v, want 2 rooms, room-1 needing attention", a.Body["rooms"], att)
			}
			a = do(t, "GET", analyticsURL+"/analytics/trends?type=co2&bucket=1m&from="+ts(now.Add(-time.Hour))+"&to="+ts(now.Add(time.Hour)), nil)
			if a.Code != 200 || num(a.Body["count"]) != 10 {
				t.Errorf("trends: %d %s", a.Code, a.Raw)
			}
			if a := do(t, "GET", analyticsURL+"/readyz", nil); a.Code != 200 {
				t.Errorf("readyz: %d %s", a.Code, a.Raw)
			}
		})
	}
}
