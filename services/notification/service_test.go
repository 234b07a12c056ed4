package notification_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/atrium-iot/atrium/internal/bus"
	"github.com/atrium-iot/atrium/internal/events"
	"github.com/atrium-iot/atrium/internal/httpx/httpxtest"
	"github.com/atrium-iot/atrium/internal/reading"
	"github.com/atrium-iot/atrium/internal/testwait"
	"github.com/atrium-iot/atrium/services/notification"
)

func countEvents(t *testing.T, e *env, query string) int {
	t.Helper()
	return len(list[notification.Event](t, e.url+"/events?limit=1000&"+query, "events"))
}

func TestCO2AlertLifecycle(t *testing.T) {
	c := &clock{t: t0.Add(9 * time.Minute)}
	e := start(t, t.TempDir(), notification.Options{Now: c.Now})
	// CO2 above 1000 ppm for 8 minutes, then below, every 30 s.
	high := notification.Series("co2-1", "room-101", "co2", t0, 30*time.Second, notification.Repeat(1200, 17)...)
	low := notification.Series("co2-1", "room-101", "co2", t0.Add(8*time.Minute+30*time.Second), 30*time.Second, 900, 900)
	e.publish("b1", high...)
	e.publish("b2", low...)
	testwait.For(t, "the alert resolved", func() bool { return countEvents(t, e, "type=alert.resolved") == 1 })
	// Redeliveries and a replay under a new batch id change nothing.
	e.publish("b1", high...)
	e.publish("b3", append(high, low...)...)
	// 17 + 2 + 19 + 1 readings evaluated: the redelivery of b1 is skipped.
	e.probe("b4", 39)

	alerts := list[notification.Alert](t, e.url+"/alerts", "alerts")
	if len(alerts) != 1 {
		t.Fatalf("%d alerts, want exactly one: %+v", len(alerts), alerts)
	}
	a := alerts[0]
	if a.RuleID != "default-co2-warning" || a.Severity != "warning" || a.State != "resolved" || a.RoomID != "room-101" ||
		a.SensorID != "co2-1" || a.Type != "co2" || a.Value != 1200 {
		t.Errorf("alert %+v", a)
	}
	if !a.RaisedAt.Equal(t0.Add(5*time.Minute)) || a.ResolvedAt == nil || !a.ResolvedAt.Equal(t0.Add(8*time.Minute+30*time.Second)) {
		t.Errorf("raised %v resolved %v: want the reading timestamps +5m and +8m30s", a.RaisedAt, a.ResolvedAt)
	}
	for _, tc := range []struct {
		query string
		want  int
	}{
		{"type=alert.raised", 1}, {"type=alert.resolved", 1}, {"type=alert.raised&severity=warning&room_id=room-101", 1},
		{"type=alert.raised&severity=critical", 0}, {"room_id=room-404", 0},
	} {
		t.Run("events "+tc.query, func(t *testing.T) {
			if n := countEvents(t, e, tc.query); n != tc.want {
				t.Fatalf("%d events, want %d", n, tc.want)
			}
		})
	}
	testwait.For(t, "bus events", func() bool { return len(e.published("alert.resolved")) == 1 })
	if n := len(e.published("alert.raised")); n != 1 {
		t.Errorf("alert.raised published %d times, want 1", n)
	}
	if got := list[notification.Alert](t, e.url+"/alerts?state=active", "alerts"); len(got) != 0 {
		t.Errorf("active alerts after resolve: %+v", got)
	}
}

func TestAckAndRuleChanges(t *testing.T) {
	c := &clock{t: t0.Add(6 * time.Minute)}
	e := start(t, t.TempDir(), notification.Options{Now: c.Now})
	e.publish("b1", notification.Series("s1", "room-1", "co2", t0, time.Minute, notification.Repeat(1300, 6)...)...)
	testwait.For(t, "the raise", func() bool { return len(list[notification.Alert](t, e.url+"/alerts?state=active", "alerts")) == 1 })
	id := list[notification.Alert](t, e.url+"/alerts", "alerts")[0].ID

	steps := []struct {
		name, method, path string
		code               int
		state              string
	}{
		{"ack", "POST", "/alerts/" + id + "/ack", 200, "acknowledged"},
		{"ack again is a no-op", "POST", "/alerts/" + id + "/ack", 200, "acknowledged"},
		{"get", "GET", "/alerts/" + id, 200, "acknowledged"},
		{"deleting the rule resolves its alert", "DELETE", "/rules/default-co2-warning", 204, ""},
		{"resolved", "GET", "/alerts/" + id, 200, "resolved"},
		{"ack of a resolved alert", "POST", "/alerts/" + id + "/ack", 409, ""},
	}
	for _, st := range steps {
		t.Run(st.name, func(t *testing.T) {
			a := httpxtest.DoJSON(t, st.method, e.url+st.path, nil)
			if a.Code != st.code {
				t.Fatalf("%s %s: %d %s", st.method, st.path, a.Code, a.Raw)
			}
			if st.state != "" && a.Body["state"] != st.state {
				t.Fatalf("state %v, want %s", a.Body["state"], st.state)
			}
		})
	}
	if n := countEvents(t, e, "type=alert.acknowledged"); n != 1 {
		t.Errorf("%d acknowledged events, want 1", n)
	}
	// Active includes acknowledged: a new alert, acknowledged, is listed as active.
	e.publish("b2", notification.Series("s2", "room-2", "temperature", t0, time.Minute, notification.Repeat(30, 11)...)...)
	testwait.For(t, "the temperature alert", func() bool { return len(list[notification.Alert](t, e.url+"/alerts?state=active", "alerts")) == 1 })
	id2 := list[notification.Alert](t, e.url+"/alerts?state=active", "alerts")[0].ID
	if a := httpxtest.DoJSON(t, "POST", e.url+"/alerts/"+id2+"/ack", nil); a.Code != 200 {
		t.Fatalf("ack: %d %s", a.Code, a.Raw)
	}
	if got := list[notification.Alert](t, e.url+"/alerts?state=active", "alerts"); len(got) != 1 || got[0].State != "acknowledged" {
		t.Errorf("active alerts %+v, want the acknowledged one", got)
	}
}

func TestRuleCRUD(t *testing.T) {
	dir := t.TempDir()
	e := start(t, dir, notification.Options{})
	rules := list[notification.Rule](t, e.url+"/rules", "rules")
	if len(rules) != 4 {
		t.Fatalf("%d default rules, want 4", len(rules))
	}
	body := `{"id":"noise","name":"Loud","metric":"noise","comparison":"gt","threshold":80,"clear_threshold":70,"for":"2m","severity":"info","room_id":"room-1","webhook_url":"http://127.0.0.1:9/x","webhook_secret":"k"}`
	steps := []struct {
		name, method, path, body string
		code                     int
		check                    func(a httpxtest.Answer) string
	}{
		{"create", "POST", "/rules", body, 201, func(a httpxtest.Answer) string {
			if a.Body["webhook_secret"] != "********" || a.Body["for"] != "2m0s" || a.Body["kind"] != "threshold" {
				return "secret not masked or fields not normalized"
			}
			return ""
		}},
		{"create again", "POST", "/rules", body, 409, nil},
		{"get", "GET", "/rules/noise", "", 200, func(a httpxtest.Answer) string {
			if a.Body["threshold"] != 80.0 {
				return "threshold lost"
			}
			return ""
		}},
		{"replace", "PUT", "/rules/noise", strings.Replace(body, `"threshold":80`, `"threshold":85`, 1), 200, func(a httpxtest.Answer) string {
			if a.Body["threshold"] != 85.0 {
				return "threshold not replaced"
			}
			return ""
		}},
		{"list", "GET", "/rules?limit=2", "", 200, func(a httpxtest.Answer) string {
			if a.Body["next_cursor"] == nil || len(a.Body["rules"].([]any)) != 2 {
				return "no page of 2 with a cursor"
			}
			return ""
		}},
		{"generated id", "POST", "/rules", `{"kind":"sensor_silent","for":"1h","severity":"critical"}`, 201, func(a httpxtest.Answer) string {
			if a.Body["id"] == "" {
				return "no id"
			}
			return ""
		}},
		{"delete", "DELETE", "/rules/noise", "", 204, nil},
		{"gone", "GET", "/rules/noise", "", 404, nil},
	}
	for _, st := range steps {
		t.Run(st.name, func(t *testing.T) {
			a := httpxtest.DoJSON(t, st.method, e.url+st.path, []byte(st.body))
			if a.Code != st.code {
				t.Fatalf("%d %s, want %d", a.Code, a.Raw, st.code)
			}
			if st.check != nil {
				if msg := st.check(a); msg != "" {
					t.Fatalf("%s: %s", msg, a.Raw)
				}
			}
		})
	}
	// The rules survive a restart; deleted defaults do not come back.
	if a := httpxtest.DoJSON(t, "DELETE", e.url+"/rules/default-sensor-silent", nil); a.Code != 204 {
		t.Fatal(a.Code)
	}
	e.stop()
	e = start(t, dir, notification.Options{})
	var ids []string
	for _, r := range list[notification.Rule](t, e.url+"/rules", "rules") {
		ids = append(ids, r.ID)
	}
	if len(ids) != 4 || strings.Contains(strings.Join(ids, ","), "default-sensor-silent") || strings.Contains(strings.Join(ids, ","), "noise") {
		t.Fatalf("rules after restart %v: want 3 defaults and the generated one", ids)
	}
}

func TestBadInput(t *testing.T) {
	e := start(t, t.TempDir(), notification.Options{})
	tests := []struct {
		name, method, path, body string
		code                     int
		field                    string
	}{
		{"malformed rule JSON", "POST", "/rules", `{"metric":`, 400, ""},
		{"rule with wrong types", "POST", "/rules", `{"threshold":"high"}`, 400, ""},
		{"rule missing fields", "POST", "/rules", `{"metric":"co2","comparison":"gt"}`, 400, "threshold"},
		{"rule with bad duration", "POST", "/rules", `{"metric":"co2","comparison":"gt","threshold":1,"severity":"info","for":"soon"}`, 400, ""},
		{"rule with bad comparison", "POST", "/rules", `{"metric":"co2","comparison":"approx","threshold":1,"severity":"info"}`, 400, "comparison"},
		{"rule id mismatch", "PUT", "/rules/default-co2-warning", `{"id":"other","metric":"co2","comparison":"gt","threshold":1,"severity":"info"}`, 400, ""},
		{"unknown rule", "GET", "/rules/nope", "", 404, ""},
		{"replace unknown rule", "PUT", "/rules/nope", `{"metric":"co2","comparison":"gt","threshold":1,"severity":"info"}`, 404, ""},
		{"delete unknown rule", "DELETE", "/rules/nope", "", 404, ""},
		{"unknown alert", "GET", "/alerts/nope", "", 404, ""},
		{"ack unknown alert", "POST", "/alerts/nope/ack", "", 404, ""},
		{"bad alert state", "GET", "/alerts?state=open", "", 400, "state"},
		{"bad alert cursor", "GET", "/alerts?cursor=xyz", "", 400, ""},
		{"bad event type", "GET", "/events?type=alarm", "", 400, "type"},
		{"bad event since", "GET", "/events?since=yesterday", "", 400, "since"},
		{"bad event limit", "GET", "/events?limit=0", "", 400, "limit"},
		{"bad event severity", "GET", "/events?severity=loud", "", 400, "severity"},
		{"bad event room", "GET", "/events?room_id=a%20b", "", 400, "room_id"},
		{"bad event cursor", "GET", "/events?cursor=%21%21", "", 400, ""},
		{"empty notification", "POST", "/notifications/send", `{}`, 400, "severity"},
		{"unknown channel", "POST", "/notifications/send", `{"severity":"info","title":"t","channels":["sms"]}`, 400, "channels"},
		{"webhook without url", "POST", "/notifications/send", `{"severity":"info","title":"t","channels":["webhook"]}`, 400, "webhook_url"},
		{"notification not JSON", "POST", "/notifications/send", `hello`, 400, ""},
		{"bad websocket filter", "GET", "/ws/notifications?severity=loud", "", 400, "severity"},
		{"unknown endpoint", "GET", "/nope", "", 404, ""},
		{"wrong method", "PATCH", "/rules", "", 405, ""},
	}
	for _, tc := range tests {
		httpxtest.RunProblem(t, tc.name, tc.method, e.url+tc.path, tc.body, tc.code, tc.field)
	}
}

// TestSilentSensor: the silent-sensor alert comes from the sensor service's
// sensor.status.changed: raised by the offline event (at the last reading plus
// the rule's For), resolved by the online one, once each across restarts and
// redeliveries; a rule whose For is longer than the offline delay raises at its
// own deadline, also when that passes while the service is down.
func TestSilentSensor(t *testing.T) {
	tests := []struct {
		name    string
		restart bool
	}{
		{"without a restart", false},
		{"across restarts", true},
	}
	online := events.SensorStatus{SensorID: "lonely", RoomID: "room-7", Types: []string{"humidity"}, Status: events.StatusOnline, LastSeen: t0, Since: t0}
	offline := online
	offline.Status, offline.Previous, offline.Since = events.StatusOffline, events.StatusOnline, t0.Add(5*time.Minute)
	back := online
	back.Previous, back.LastSeen, back.Since = events.StatusOffline, t0.Add(30*time.Minute), t0.Add(30*time.Minute)
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			c := &clock{t: t0}
			e := start(t, dir, notification.Options{Now: c.Now})
			restart := func(at time.Duration) {
				c.Set(t0.Add(at))
				if tc.restart {
					e.stop()
					e = start(t, dir, notification.Options{Now: c.Now})
				}
			}
			if a := httpxtest.DoJSON(t, "POST", e.url+"/rules", []byte(`{"id":"silent-humidity-20m","kind":"sensor_silent","metric":"humidity","for":"20m","severity":"critical"}`)); a.Code != 201 {
				t.Fatalf("create rule: %d %s", a.Code, a.Raw)
			}
			e.status(online)
			testwait.For(t, "the sensor online", func() bool { return countEvents(t, e, "type=sensor.online") == 1 })
			c.Set(t0.Add(10 * time.Minute))
			time.Sleep(100 * time.Millisecond) // several ticks: an online sensor is never silent
			if n := len(list[notification.Alert](t, e.url+"/alerts", "alerts")); n != 0 {
				t.Fatalf("%d alerts for an online sensor", n)
			}
			restart(10 * time.Minute)
			e.status(offline)
			testwait.For(t, "the silent alert", func() bool {
				return len(list[notification.Alert](t, e.url+"/alerts?state=active", "alerts")) == 1 && countEvents(t, e, "type=sensor.offline") == 1
			})
			a := list[notification.Alert](t, e.url+"/alerts", "alerts")[0]
			if a.RuleID != "default-sensor-silent" || a.SensorID != "lonely" || a.RoomID != "room-7" || !a.RaisedAt.Equal(t0.Add(5*time.Minute)) {
				t.Fatalf("silent alert %+v", a)
			}
			off := list[notification.Event](t, e.url+"/events?type=sensor.offline", "events")[0]
			if !off.Time.Equal(t0.Add(5*time.Minute)) || off.SensorID != "lonely" {
				t.Errorf("offline event %+v", off)
			}
			// The 20-minute rule raises at its own deadline, even when it passes
			// while the service is down; a redelivered offline changes nothing.
			restart(25 * time.Minute)
			e.status(offline)
			testwait.For(t, "the 20-minute alert", func() bool {
				return len(list[notification.Alert](t, e.url+"/alerts?state=active", "alerts")) == 2
			})
			for _, a := range list[notification.Alert](t, e.url+"/alerts?rule_id=silent-humidity-20m", "alerts") {
				if !a.RaisedAt.Equal(t0.Add(20 * time.Minute)) {
					t.Errorf("20-minute alert %+v", a)
				}
			}
			restart(30 * time.Minute)
			// The sensor comes back: both alerts resolve, the sensor is online again.
			e.status(back)
			testwait.For(t, "the resolves", func() bool { return countEvents(t, e, "type=alert.resolved") == 2 })
			if n := countEvents(t, e, "type=sensor.online"); n != 2 {
				t.Errorf("%d online events, want 2 (first seen, back)", n)
			}
			if n := countEvents(t, e, "type=sensor.offline"); n != 1 {
				t.Errorf("%d offline events, want 1", n)
			}
			if n := countEvents(t, e, "type=alert.raised"); n != 2 {
				t.Errorf("%d raise events, want 2", n)
			}
		})
	}
}

func TestWebhooks(t *testing.T) {
	const secret = "hook-secret"
	type delivery struct {
		event, id string
		verr      error
		body      []byte
	}
	var mu sync.Mutex
	var got []delivery
	fails := map[string]int{} // per delivery: answer 500 this many times first
	recv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		verr := notification.VerifySignature(secret, r.Header, body, time.Now(), 5*time.Minute)
		mu.Lock()
		defer mu.Unlock()
		id := r.Header.Get(notification.HeaderDelivery)
		got = append(got, delivery{r.Header.Get(notification.HeaderEvent), id, verr, body})
		if fails[id] < 2 {
			fails[id]++
			w.WriteHeader(http.StatusInternalServerError)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	}))
	defer recv.Close()
	e := start(t, t.TempDir(), notification.Options{WebhookBackoff: 10 * time.Millisecond})

	rule := fmt.Sprintf(`{"id":"loud","metric":"noise","comparison":"gt","threshold":80,"severity":"critical","webhook_url":%q,"webhook_secret":%q}`, recv.URL, secret)
	if a := httpxtest.DoJSON(t, "POST", e.url+"/rules", []byte(rule)); a.Code != 201 {
		t.Fatalf("create rule: %d %s", a.Code, a.Raw)
	}
	e.publish("b1", reading.Reading{SensorID: "mic", RoomID: "hall", Type: "noise", Value: 95, Timestamp: time.Now().UTC()})
	send := fmt.Sprintf(`{"severity":"info","title":"Fire drill","message":"at 3pm","channels":["webhook"],"webhook_url":%q,"webhook_secret":%q}`, recv.URL, secret)
	if a := httpxtest.DoJSON(t, "POST", e.url+"/notifications/send", []byte(send)); a.Code != 202 || a.Body["id"] == "" {
		t.Fatalf("send: %d %s", a.Code, a.Raw)
	}
	testwait.For(t, "3 attempts of both deliveries", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(got) == 6
	})
	testwait.For(t, "the attempt events", func() bool { return countEvents(t, e, "type=webhook.attempt") == 6 })
	mu.Lock()
	per := map[string][]delivery{}
	for _, d := range got {
		per[d.event] = append(per[d.event], d)
		if d.verr != nil {
			t.Errorf("%s: signature did not verify: %v", d.event, d.verr)
		}
	}
	mu.Unlock()
	for _, ev := range []string{"alert.raised", "notification"} {
		ds := per[ev]
		if len(ds) != 3 || ds[0].id != ds[2].id {
			t.Fatalf("%s: %d attempts (want 3 with one delivery id)", ev, len(ds))
		}
		var p notification.Push
		if err := json.Unmarshal(ds[0].body, &p); err != nil || p.Kind != ev {
			t.Fatalf("%s body %s: %v", ev, ds[0].body, err)
		}
	}
	var oks []bool
	for _, ev := range list[notification.Event](t, e.url+"/events?type=webhook.attempt", "events") {
		var a struct{ OK, Final bool }
		_ = json.Unmarshal(ev.Data, &a)
		oks = append(oks, a.OK)
	}
	nOK := 0
	for _, ok := range oks {
		if ok {
			nOK++
		}
	}
	if nOK != 2 || len(oks) != 6 {
		t.Errorf("%d successful attempts of %d recorded, want 2 of 6: %v", nOK, len(oks), oks)
	}
}

func TestVerifySignature(t *testing.T) {
	body := []byte(`{"kind":"notification"}`)
	now := time.Unix(1_800_000_000, 0)
	ts := fmt.Sprint(now.Unix())
	h := func(ts, sig string) http.Header {
		x := http.Header{}
		x.Set(notification.HeaderTimestamp, ts)
		x.Set(notification.HeaderSignature, sig)
		return x
	}
	tests := []struct {
		name   string
		header http.Header
		body   []byte
		ok     bool
	}{
		{"valid", h(ts, notification.Sign("k", ts, body)), body, true},
		{"tampered body", h(ts, notification.Sign("k", ts, body)), []byte(`{"kind":"x"}`), false},
		{"wrong secret", h(ts, notification.Sign("other", ts, body)), body, false},
		{"timestamp swapped", h(fmt.Sprint(now.Unix()+1), notification.Sign("k", ts, body)), body, false},
		{"too old", h("1000", notification.Sign("k", "1000", body)), body, false},
		{"no timestamp", h("", notification.Sign("k", "", body)), body, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := notification.VerifySignature("k", tc.header, tc.body, now, 5*time.Minute)
			if (err == nil) != tc.ok {
				t.Fatalf("err = %v, want ok %v", err, tc.ok)
			}
		})
	}
}

// TestRoomMetricRule: a rule of source "room" raises and resolves its alert
// from room.metrics.updated; the alert names the room and no sensor.
func TestRoomMetricRule(t *testing.T) {
	e := start(t, t.TempDir(), notification.Options{Now: (&clock{t: t0}).Now})
	if a := httpxtest.DoJSON(t, "POST", e.url+"/rules", []byte(`{"id":"crowded","source":"room","metric":"occupancy_ratio","comparison":"gt","threshold":1,"for":"1m","severity":"critical"}`)); a.Code != 201 {
		t.Fatalf("create rule: %d %s", a.Code, a.Raw)
	}
	update := func(at time.Duration, ratio float64) {
		t.Helper()
		m := events.RoomMetrics{RoomID: "room-101", At: t0.Add(at), OccupancyRatio: &ratio, Metrics: map[string]events.RoomTypeMetrics{}}
		body, err := events.EncodeRoomMetrics(m)
		if err != nil {
			t.Fatal(err)
		}
		if err := e.bus.Publish(t.Context(), bus.RoomMetricsUpdated, body); err != nil {
			t.Fatal(err)
		}
	}
	update(0, 1.1)
	update(time.Minute, 1.3)
	update(time.Minute, 1.3) // a redelivery
	testwait.For(t, "the alert", func() bool { return countEvents(t, e, "type=alert.raised") == 1 })
	a := list[notification.Alert](t, e.url+"/alerts", "alerts")[0]
	if a.RuleID != "crowded" || a.RoomID != "room-101" || a.SensorID != "" || a.Type != "occupancy_ratio" || a.Value != 1.3 ||
		!a.RaisedAt.Equal(t0.Add(time.Minute)) || a.Severity != "critical" {
		t.Fatalf("alert %+v", a)
	}
	update(2*time.Minute, 0.5)
	testwait.For(t, "the resolve", func() bool { return countEvents(t, e, "type=alert.resolved") == 1 })
	if p := e.published(bus.AlertRaised); len(p) != 1 || p[0].ID != a.ID {
		t.Errorf("alert.raised published %+v", p)
	}
}
