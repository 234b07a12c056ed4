package cloud_test

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/atrium-iot/atrium/gateway"
	"github.com/atrium-iot/atrium/internal/httpx/httpxtest"
)

// doorsReadTimeout is the -read-timeout of the system these tests run.
const doorsReadTimeout = 500 * time.Millisecond

// doors is `atrium -target=all` with an admin key, no rate limit and a short read
// timeout, and the base URL of each part: the gateway and each service's own port.
type doors struct {
	sys   *gwSystem
	admin string
	parts map[string]string // part → base URL
}

func startDoors(t *testing.T) *doors {
	t.Helper()
	keysFile := filepath.Join(t.TempDir(), "keys.json")
	admin := addKey(t, keysFile, "admin", gateway.ScopeAdmin)
	s := startGW(t, "all", t.TempDir(), nil, "-keys="+keysFile, "-rate-limit=0", "-read-timeout="+doorsReadTimeout.String())
	d := &doors{sys: s, admin: admin, parts: map[string]string{"gateway": s.url}}
	for _, p := range []string{"sensor", "room", "analytics", "notification"} {
		d.parts[p] = "http://" + s.app.Addr(p)
	}
	return d
}

// raw sends one request with exactly the headers given (no default Content-Type).
func raw(t *testing.T, method, url, body string, headers ...string) answer {
	t.Helper()
	return httpxtest.Do(t, nil, method, url, []byte(body), headers...)
}

// seed stores a reading of sensor s-d1 in room r-d1 and waits until the room
// service has the room and the analytics service a report; it returns the report id.
func (d *doors) seed(t *testing.T) string {
	t.Helper()
	now := time.Now().UTC().Add(-time.Minute).Format(time.RFC3339)
	if a := do(t, "POST", d.parts["sensor"]+"/sensors/data", []byte(`{"sensor_id":"s-d1","room_id":"r-d1","type":"co2","value":600,"timestamp":"`+now+`"}`)); a.Code != 200 {
		t.Fatalf("seed: %d %s", a.Code, a.Raw)
	}
	deadline := time.Now().Add(10 * time.Second)
	for do(t, "GET", d.parts["room"]+"/rooms/r-d1", nil).Code != 200 {
		if time.Now().After(deadline) {
			t.Fatal("room r-d1 never appeared")
		}
		time.Sleep(20 * time.Millisecond)
	}
	a := do(t, "POST", d.parts["analytics"]+"/analytics/reports", []byte(`{"kind":"daily"}`))
	id, _ := a.Body["id"].(string)
	if a.Code != 202 || id == "" {
		t.Fatalf("report: %d %s", a.Code, a.Raw)
	}
	return id
}

// HEAD answers wherever GET does, on every part's own port and through the
// gateway: the same status and headers, no body.
func TestHeadAnswersWhereverGetDoes(t *testing.T) {
	d := startDoors(t)
	report := d.seed(t)
	rules := do(t, "GET", d.parts["notification"]+"/rules", nil)
	list, _ := rules.Body["rules"].([]any)
	if len(list) == 0 {
		t.Fatalf("no rules: %s", rules.Raw)
	}
	rule, _ := list[0].(map[string]any)["id"].(string)
	paths := map[string][]string{
		"sensor":       {"/healthz", "/readyz", "/metrics", "/sensors", "/sensors/s-d1", "/sensors/s-d1/data"},
		"room":         {"/healthz", "/rooms", "/rooms/r-d1", "/rooms/r-d1/metrics", "/rooms/r-d1/history?type=co2"},
		"analytics":    {"/healthz", "/analytics/summary", "/analytics/trends?type=co2", "/analytics/reports", "/analytics/reports/" + report},
		"notification": {"/healthz", "/rules", "/rules/" + rule, "/alerts", "/events"},
		"gateway":      {"/healthz", "/readyz", "/metrics", "/openapi.json", "/", "/favicon.ico"},
	}
	for part, ps := range paths {
		if part == "gateway" {
			continue
		}
		for _, p := range ps {
			if p != "/healthz" && p != "/readyz" && p != "/metrics" {
				paths["gateway"] = append(paths["gateway"], p)
			}
		}
	}
	for part, ps := range paths {
		for _, p := range ps {
			t.Run(part+p, func(t *testing.T) {
				url := d.parts[part] + p
				key := []string{"Authorization", "Bearer " + d.admin}
				// An answer may change from one call to the next (/metrics, a
				// history ending now): HEAD's headers must be those of the GET just
				// before or just after it, in one of a few tries.
				var diff []string
				for range 5 {
					get := raw(t, "GET", url, "", key...)
					head := raw(t, "HEAD", url, "", key...)
					again := raw(t, "GET", url, "", key...)
					if get.Code != 200 || head.Code != 200 || len(head.Raw) != 0 {
						t.Fatalf("GET %d, HEAD %d with %d bytes of body: %s", get.Code, head.Code, len(head.Raw), get.Raw)
					}
					if head.Head.Get("Content-Length") == "" && get.Head.Get("Content-Length") != "" {
						t.Fatalf("HEAD without the Content-Length of GET (%s)", get.Head.Get("Content-Length"))
					}
					diff = nil
					for _, h := range []string{"Content-Type", "Content-Length", "Cache-Control", "ETag"} {
						if v := head.Head.Get(h); v != get.Head.Get(h) && v != again.Head.Get(h) {
							diff = append(diff, fmt.Sprintf("%s: HEAD %q, GET %q then %q", h, v, get.Head.Get(h), again.Head.Get(h)))
						}
					}
					if len(diff) == 0 {
						return
					}
				}
				t.Errorf("%s", strings.Join(diff, "; "))
			})
		}
	}
}

// bodyRoutes are the routes that take a request body, with one the service
// accepts, or "" for a route that takes none.
var bodyRoutes = []struct{ method, path, body string }{
	{"POST", "/sensors/data", `{"sensor_id":"s-ct","type":"co2","value":500}`},
	{"POST", "/rooms", `{"id":"r-ct","name":"CT"}`},
	{"PUT", "/rooms/r-ct", `{"name":"CT","capacity":4}`},
	{"PATCH", "/rooms/r-ct", `{"capacity":5}`},
	{"PUT", "/rooms/r-ct/sensors/s-ct", ``},
	{"POST", "/analytics/reports", `{"kind":"daily"}`},
	{"POST", "/rules", `{"id":"ct-rule","type":"co2","op":">","threshold":900,"for":"1m","severity":"warning"}`},
	{"PUT", "/rules/ct-rule", `{"type":"co2","op":">","threshold":950,"for":"1m","severity":"warning"}`},
	{"POST", "/alerts/no-such-alert/ack", ``},
	{"POST", "/notifications/send", `{"severity":"info","title":"ct","message":"content type","channels":["websocket"]}`},
}

// A body that is not declared application/json is refused with 415 on every route
// that takes one, on each service's port and through the gateway; a request
// without a body needs no Content-Type.
func TestRequestBodiesMustBeJSON(t *testing.T) {
	d := startDoors(t)
	for _, base := range []string{"service", "gateway"} {
		for _, rc := range bodyRoutes {
			url := d.parts[gateway.Upstream(rc.path)] + rc.path
			if base == "gateway" {
				url = d.parts["gateway"] + rc.path
			}
			key := []string{"Authorization", "Bearer " + d.admin}
			t.Run(base+" "+rc.method+" "+rc.path, func(t *testing.T) {
				if rc.body == "" {
					for _, ct := range []string{"", "application/x-www-form-urlencoded"} {
						h := key
						if ct != "" {
							h = append(h, "Content-Type", ct)
						}
						if a := raw(t, rc.method, url, "", h...); a.Code == 415 || a.Code >= 500 {
							t.Errorf("no body, Content-Type %q: %d %s", ct, a.Code, a.Raw)
						}
					}
					return
				}
				for _, ct := range []string{"", "application/x-www-form-urlencoded", "text/plain", "multipart/form-data; boundary=x", "application/senml+json"} {
					h := key
					if ct != "" {
						h = append(h, "Content-Type", ct)
					}
					a := raw(t, rc.method, url, rc.body, h...)
					if a.Code != 415 || a.CType != "application/problem+json" || !strings.Contains(string(a.Raw), "application/json") {
						t.Errorf("Content-Type %q: %d %q %s", ct, a.Code, a.CType, a.Raw)
					}
				}
				a := raw(t, rc.method, url, rc.body, append(key, "Content-Type", "application/json; charset=utf-8")...)
				if a.Code == 415 || a.Code >= 500 {
					t.Errorf("application/json; charset=utf-8: %d %s", a.Code, a.Raw)
				}
			})
		}
	}
}

// A body trickling in is answered 408 at -read-timeout, on a service's own port
// and through the gateway (which serves the services of its process in-process).
func TestSlowBodyIsCutAtTheReadTimeout(t *testing.T) {
	d := startDoors(t)
	for _, tc := range []struct{ part, path string }{
		{"sensor", "/sensors/data"}, {"room", "/rooms"}, {"notification", "/rules"}, {"gateway", "/sensors/data"}, {"gateway", "/notifications/send"},
	} {
		t.Run(tc.part+tc.path, func(t *testing.T) {
			addr := strings.TrimPrefix(d.parts[tc.part], "http://")
			head := fmt.Sprintf("POST %s HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\nContent-Type: application/json\r\n", tc.path, d.admin)
			// One byte every 50 ms: the body would take 50 s.
			resp, body, took := httpxtest.Trickle(t, addr, head, 1000, 50*time.Millisecond)
			if resp.StatusCode != 408 || resp.Header.Get("Content-Type") != "application/problem+json" || !strings.Contains(string(body), `"status":408`) {
				t.Fatalf("got %d %s", resp.StatusCode, body)
			}
			if took < doorsReadTimeout || took > doorsReadTimeout+5*time.Second {
				t.Fatalf("answered after %s with -read-timeout=%s", took, doorsReadTimeout)
			}
		})
	}
}

// A WebSocket through the gateway is not cut by the read timeout: quiet for
// several times -read-timeout, it still gets the next notification.
func TestWebSocketOutlivesTheReadTimeout(t *testing.T) {
	d := startDoors(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	ws := "ws" + strings.TrimPrefix(d.parts["gateway"], "http") + "/ws/notifications?access_token=" + d.admin
	c, _, err := websocket.Dial(ctx, ws, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseNow()
	got := make(chan string, 16)
	go func() {
		for {
			_, b, err := c.Read(ctx)
			if err != nil {
				close(got)
				return
			}
			got <- string(b)
		}
	}()
	// The connection's quiet spell is what is under test.
	time.Sleep(4 * doorsReadTimeout)
	if a := do(t, "POST", d.parts["gateway"]+"/notifications/send", []byte(`{"severity":"critical","title":"after the quiet","message":"m","channels":["websocket"]}`), auth(d.admin)...); a.Code != 202 {
		t.Fatalf("send: %d %s", a.Code, a.Raw)
	}
	for m := range got {
		if strings.Contains(m, "after the quiet") {
			return
		}
	}
	t.Fatal("the WebSocket closed before the notification came")
}

// Error details speak JSON and the API, never Go types or the store's package.
func TestErrorDetailsHideGoNames(t *testing.T) {
	d := startDoors(t)
	d.seed(t)
	for _, tc := range []struct{ method, path, body string }{
		{"POST", "/sensors/data", `{"batch_id":"x","readings":{"a":1}}`},
		{"POST", "/sensors/data", `{"batch_id":"x","readings":[1]}`},
		{"POST", "/sensors/data", `[{"sensor_id":"s","type":"co2","value":1},"x"]`},
		{"POST", "/sensors/data", `{"readings":[{"sensor_id":"s"`},
		{"POST", "/rooms", `{"id":"r","capacity":"x"}`},
		{"POST", "/rooms", `[1]`},
		{"POST", "/analytics/reports", `{"kind":1}`},
		{"POST", "/analytics/reports", `{"kind":"custom","from":"noon","to":"later"}`},
		{"POST", "/analytics/reports", `{"kind":"custom","from":5}`},
		{"POST", "/analytics/reports", `{"rooms":"r1"}`},
		{"POST", "/rules", `{"threshold":"x"}`},
		{"POST", "/rules", `{"for":"soon"}`},
		{"POST", "/rules", `[1]`},
		{"POST", "/notifications/send", `{"severity":1}`},
		{"POST", "/notifications/send", `{"channels":"websocket"}`},
		{"GET", "/sensors?cursor=zzz", ``},
		{"GET", "/sensors/s-d1/data?cursor=zzz", ``},
		{"GET", "/events?cursor=zzz", ``},
		{"GET", "/alerts?cursor=zzz", ``},
		{"GET", "/analytics/reports?cursor=zzz", ``},
	} {
		for _, base := range []string{d.parts[gateway.Upstream(strings.Split(tc.path, "?")[0])], d.parts["gateway"]} {
			t.Run(base+" "+tc.method+" "+tc.path+" "+tc.body, func(t *testing.T) {
				a := raw(t, tc.method, base+tc.path, tc.body, "Authorization", "Bearer "+d.admin, "Content-Type", "application/json")
				if a.Code != 400 || a.CType != "application/problem+json" {
					t.Fatalf("%d %s", a.Code, a.Raw)
				}
				for _, leak := range []string{"Go ", "go struct", "float64", "int64", "sqlitestore", "mongostore", "clickhousestore",
					"reading.", "notification.", "analytics.", "room.", "sensor.", "[]", "json:", "2006-01-02", "time."} {
					if strings.Contains(string(a.Raw), leak) {
						t.Errorf("%q in %s", leak, a.Raw)
					}
				}
			})
		}
	}
}

// A reading from before 2000 is rejected with that reason, and 2000-01-01 itself
// is accepted, on the sensor service and through the gateway.
func TestTimestampsBefore2000AreRejected(t *testing.T) {
	d := startDoors(t)
	for i, base := range []string{d.parts["sensor"], d.parts["gateway"]} {
		body := fmt.Sprintf(`[{"sensor_id":"old-%d","type":"co2","value":500,"timestamp":"0001-01-01T00:00:00Z"},
			{"sensor_id":"old-%d","type":"co2","value":500,"timestamp":"1999-12-31T23:59:59Z"},
			{"sensor_id":"old-%d","type":"co2","value":500,"timestamp":"2000-01-01T00:00:00Z"}]`, i, i, i)
		a := do(t, "POST", base+"/sensors/data", []byte(body), auth(d.admin)...)
		rej, _ := a.Body["rejected"].([]any)
		if a.Code != 200 || num(a.Body["accepted"]) != 1 || len(rej) != 2 {
			t.Fatalf("%s: %d %s", base, a.Code, a.Raw)
		}
		for j, want := range []string{"timestamp: 0001-01-01T00:00:00.000Z is before 2000-01-01", "timestamp: 1999-12-31T23:59:59.000Z is before 2000-01-01"} {
			r, _ := rej[j].(map[string]any)
			if num(r["index"]) != j || r["reason"] != want {
				t.Errorf("%s: rejection %d: %v, want %q", base, j, r, want)
			}
		}
	}
}

// ?access_token= is a key only on the WebSocket route: on any other, with or
// without an Upgrade header, it is no key at all.
func TestAccessTokenOnlyOnTheWebSocketRoute(t *testing.T) {
	d := startDoors(t)
	upgrade := []string{"Upgrade", "websocket", "Connection", "Upgrade", "Sec-WebSocket-Version", "13", "Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="}
	for _, p := range []string{"/sensors", "/rooms", "/analytics/summary", "/events", "/alerts"} {
		for _, h := range [][]string{nil, upgrade} {
			if a := raw(t, "GET", d.parts["gateway"]+p+"?access_token="+d.admin, "", h...); a.Code != 401 {
				t.Errorf("GET %s?access_token= (upgrade headers %v): %d %s", p, h != nil, a.Code, a.Raw)
			}
		}
	}
	if a := raw(t, "GET", d.parts["gateway"]+"/sensors", "", append(upgrade, "Authorization", "Bearer "+d.admin)...); a.Code != 200 {
		t.Errorf("GET /sensors with a key and an Upgrade header: %d %s", a.Code, a.Raw)
	}
}
