package agent_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/eclipse/paho.golang/paho"

	"github.com/atrium-iot/atrium/agent"
	"github.com/atrium-iot/atrium/cloud/cloudtest"
	"github.com/atrium-iot/atrium/gateway"
	"github.com/atrium-iot/atrium/internal/httpx/httpxtest"
)

// BenchmarkPublishToAlert measures how long a reading that crosses a rule's
// threshold takes from its PUBACK to the alert on a WebSocket client: agent (spool,
// forwarder) → API gateway → sensor service → bus → notification service →
// gateway → WebSocket, the cloud as `atrium` runs it by default (every part in one
// process, in-memory bus, SQLite) and the agent with its defaults but -linger.
// Each op publishes one reading above the threshold of a rule raised at once
// ("for": 0), waits for alert.raised on the WebSocket, then publishes one below it
// and waits for alert.resolved, so the next op raises again. Reported: p50 and
// p99 of PUBACK → alert.raised. Target: p99 ≤ -linger + 100 ms.
//
//	go test -run '^$' -bench BenchmarkPublishToAlert -benchtime 20x ./agent/
func BenchmarkPublishToAlert(b *testing.B) {
	for _, linger := range []time.Duration{time.Second, 200 * time.Millisecond} {
		b.Run("linger="+linger.String(), func(b *testing.B) {
			dir := b.TempDir()
			key, err := gateway.AddKey(filepath.Join(dir, "keys.json"), "bench", []gateway.Scope{gateway.ScopeRead, gateway.ScopeIngest, gateway.ScopeAdmin})
			if err != nil {
				b.Fatal(err)
			}
			gw := benchStartAll(b, dir)
			a := benchStartAgent(b, gw, func(c *agent.Config) { c.Token, c.Linger = key, linger })
			rule := `{"id":"bench-co2","metric":"co2","comparison":"gt","threshold":1000,"for":"0","severity":"critical","room_id":"bench-room"}`
			if a := httpxtest.DoJSON(b, http.MethodPost, gw+"/rules", []byte(rule), "Authorization", "Bearer "+key); a.Code != http.StatusCreated {
				b.Fatalf("create rule: %d %s", a.Code, a.Raw)
			}
			ctx := b.Context()
			ws, _, err := websocket.Dial(ctx, "ws"+gw[len("http"):]+"/ws/notifications?room_id=bench-room&access_token="+key, nil)
			if err != nil {
				b.Fatal(err)
			}
			defer ws.CloseNow()
			cl := benchConnect(b, a.MQTTAddr(), 1)[0]
			publish := func(v int) time.Time {
				p := &paho.Publish{Topic: "atrium/bench-room/bench-co2", QoS: 1,
					Payload: fmt.Appendf(nil, `{"co2":%d,"ts":%d}`, v, time.Now().UnixMilli())}
				pctx, cancel := context.WithTimeout(ctx, benchWait)
				defer cancel()
				if _, err := cl.c.Publish(pctx, p); err != nil {
					b.Fatal(err)
				}
				return time.Now()
			}
			await := func(kind string) time.Time {
				rctx, cancel := context.WithTimeout(ctx, benchWait)
				defer cancel()
				for {
					_, msg, err := ws.Read(rctx)
					if err != nil {
						b.Fatalf("waiting for %s: %v", kind, err)
					}
					var push struct {
						Kind  string `json:"kind"`
						Alert struct {
							RuleID string `json:"rule_id"`
						} `json:"alert"`
					}
					if json.Unmarshal(msg, &push) == nil && push.Kind == kind && push.Alert.RuleID == "bench-co2" {
						return time.Now()
					}
				}
			}
			lat := make([]time.Duration, 0, b.N)
			b.ResetTimer()
			for range b.N {
				acked := publish(1500)
				lat = append(lat, await("alert.raised").Sub(acked))
				publish(600)
				await("alert.resolved")
			}
			b.StopTimer()
			slices.Sort(lat)
			ms := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
			b.ReportMetric(ms(lat[len(lat)/2]), "p50-ms")
			b.ReportMetric(ms(lat[min(len(lat)-1, len(lat)*99/100)]), "p99-ms")
			b.ReportMetric(ms(linger), "linger-ms")
			b.ReportMetric(0, "ns/op")
		})
	}
}

// benchStartAll runs the whole cloud as `atrium` does by default (every part in
// one process, in-memory bus, SQLite under dir) on loopback ports, with the
// gateway's keys in dir/keys.json, and returns the gateway's base URL.
func benchStartAll(b testing.TB, dir string) string {
	b.Helper()
	app := cloudtest.Start(b, "-target=all", "-data-dir="+filepath.Join(dir, "cloud"), "-keys="+filepath.Join(dir, "keys.json"),
		"-gateway-addr=127.0.0.1:0", "-sensor-addr=127.0.0.1:0", "-room-addr=127.0.0.1:0",
		"-analytics-addr=127.0.0.1:0", "-notification-addr=127.0.0.1:0")
	return "http://" + app.Addr("gateway")
}
