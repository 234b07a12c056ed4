// Package storetest is the contract every notification.Store adapter must pass. An
// adapter's tests call Run with a function that opens its store; the suite then
// works through the interface alone, reopening stores to check what survives.
package storetest

import (
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/atrium-iot/atrium/internal/storesuite"
	"github.com/atrium-iot/atrium/services/notification"
)

// Opener opens the store called name, failing t if it cannot. Within one Run the
// same name opens the same data again; different names are independent, empty
// stores. Run closes every store it opens.
type Opener = storesuite.Opener[notification.Store]

var t0 = time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)

// Run runs the contract against the stores open returns.
func Run(t *testing.T, open Opener) {
	storesuite.Suite[notification.Store, *harness]{
		Open:    open,
		Harness: newHarness,
		Cases: map[string]func(*testing.T, *harness){
			"SeedRulesOnce":      testSeedRules,
			"RuleCRUD":           testRuleCRUD,
			"AlertLifecycle":     testAlertLifecycle,
			"OneOpenAlertPerKey": testOneOpenAlertPerKey,
			"AlertQueries":       testAlertQueries,
			"Events":             testEvents,
			"Sensors":            testSensors,
			"Reopen":             testReopen,
			"BadCursor":          testBadCursor,
			"Closed":             testClosed,
		},
	}.Run(t)
}

// harness holds the store of one subtest and the suite's helpers over it.
type harness struct {
	*storesuite.Harness[notification.Store]
}

func newHarness(h *storesuite.Harness[notification.Store]) *harness { return &harness{h} }

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func f64(v float64) *float64 { return &v }

func rule(id string) notification.Rule {
	on := true
	return notification.Rule{ID: id, Name: "rule " + id, Kind: notification.KindThreshold, Metric: "co2", Comparison: notification.CompareGT,
		Threshold: f64(1000), ClearThreshold: f64(900), For: notification.Duration(5 * time.Minute), Severity: notification.SeverityWarning,
		WebhookURL: "http://127.0.0.1:1/hook", WebhookSecret: "s3cret", Enabled: &on, CreatedAt: t0, UpdatedAt: t0}
}

func alert(id, rule, room, sensor string, at time.Time) notification.Alert {
	return notification.Alert{ID: id, RuleID: rule, RoomID: room, SensorID: sensor, Type: "co2", Severity: notification.SeverityWarning,
		State: notification.StateActive, Value: 1200, Message: "co2 high", RaisedAt: at}
}

func event(id, typ, room string, at time.Time) notification.Event {
	return notification.Event{ID: id, Type: typ, Severity: notification.SeverityWarning, RoomID: room, Message: typ, Time: at, RecordedAt: at,
		Data: []byte(`{"k":1}`)}
}

func (h *harness) ids(es []notification.Event) []string {
	var out []string
	for _, e := range es {
		out = append(out, e.ID)
	}
	return out
}

func (h *harness) allEvents(q notification.EventQuery) []notification.Event {
	h.T.Helper()
	return storesuite.Pages(h.T, "events", q.Limit, func(cursor string) ([]notification.Event, string, error) {
		q.Cursor = cursor
		return h.S.Events(h.T.Context(), q)
	})
}

func (h *harness) allAlerts(q notification.AlertQuery) []notification.Alert {
	h.T.Helper()
	return storesuite.Pages(h.T, "alerts", q.Limit, func(cursor string) ([]notification.Alert, string, error) {
		q.Cursor = cursor
		return h.S.Alerts(h.T.Context(), q)
	})
}

func testSeedRules(t *testing.T, h *harness) {
	ctx := t.Context()
	must(t, h.S.SeedRules(ctx, []notification.Rule{rule("a"), rule("b")}))
	must(t, h.S.SeedRules(ctx, []notification.Rule{rule("c")}))
	rs, err := h.S.Rules(ctx)
	must(t, err)
	if len(rs) != 2 || rs[0].ID != "a" || rs[1].ID != "b" {
		t.Fatalf("rules after two seeds = %+v, want a, b", rs)
	}
	must(t, h.S.DeleteRule(ctx, "a"))
	must(t, h.S.DeleteRule(ctx, "b"))
	h.Reopen()
	must(t, h.S.SeedRules(ctx, []notification.Rule{rule("a")}))
	rs, err = h.S.Rules(h.T.Context())
	must(t, err)
	if len(rs) != 0 {
		t.Fatalf("seeding after deleting every rule brought back %d rules", len(rs))
	}
}

func testRuleCRUD(t *testing.T, h *harness) {
	ctx := t.Context()
	r := rule("r1")
	must(t, h.S.CreateRule(ctx, r))
	if err := h.S.CreateRule(ctx, r); !errors.Is(err, notification.ErrConflict) {
		t.Fatalf("second create: %v, want ErrConflict", err)
	}
	got, err := h.S.Rule(ctx, "r1")
	must(t, err)
	if got.WebhookSecret != "s3cret" || got.For != r.For || *got.ClearThreshold != 900 || !got.CreatedAt.Equal(t0) || got.Comparison != "gt" {
		t.Fatalf("round trip changed the rule: %+v", got)
	}
	r.Threshold = f64(1200)
	must(t, h.S.UpdateRule(ctx, r))
	got, err = h.S.Rule(ctx, "r1")
	must(t, err)
	if *got.Threshold != 1200 {
		t.Fatalf("threshold after update = %v", *got.Threshold)
	}
	tests := []struct {
		name string
		err  error
	}{
		{"update unknown", h.S.UpdateRule(ctx, rule("nope"))},
		{"delete unknown", h.S.DeleteRule(ctx, "nope")},
		{"get unknown", func() error { _, err := h.S.Rule(ctx, "nope"); return err }()},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if !errors.Is(tc.err, notification.ErrNotFound) {
				t.Fatalf("err = %v, want ErrNotFound", tc.err)
			}
		})
	}
	must(t, h.S.DeleteRule(ctx, "r1"))
	if _, err := h.S.Rule(ctx, "r1"); !errors.Is(err, notification.ErrNotFound) {
		t.Fatalf("deleted rule: %v", err)
	}
}

func testAlertLifecycle(t *testing.T, h *harness) {
	ctx := t.Context()
	a, created, err := h.S.RaiseAlert(ctx, alert("a1", "r", "room-1", "s1", t0), event("e1", notification.EventAlertRaised, "room-1", t0))
	must(t, err)
	if !created || a.ID != "a1" || a.State != notification.StateActive || !a.RaisedAt.Equal(t0) {
		t.Fatalf("raise = %+v created %v", a, created)
	}
	steps := []struct {
		name      string
		do        func() (notification.Alert, bool, error)
		state     string
		changed   bool
		err       error
		wantEvent bool
	}{
		{"ack", func() (notification.Alert, bool, error) {
			return h.S.AckAlert(ctx, "a1", t0.Add(time.Minute), event("e2", notification.EventAlertAcknowledged, "room-1", t0))
		}, notification.StateAcknowledged, true, nil, true},
		{"ack again", func() (notification.Alert, bool, error) {
			return h.S.AckAlert(ctx, "a1", t0.Add(2*time.Minute), event("e3", notification.EventAlertAcknowledged, "room-1", t0))
		}, notification.StateAcknowledged, false, nil, false},
		{"resolve", func() (notification.Alert, bool, error) {
			return h.S.ResolveAlert(ctx, "a1", t0.Add(3*time.Minute), event("e4", notification.EventAlertResolved, "room-1", t0))
		}, notification.StateResolved, true, nil, true},
		{"resolve again", func() (notification.Alert, bool, error) {
			return h.S.ResolveAlert(ctx, "a1", t0.Add(4*time.Minute), event("e5", notification.EventAlertResolved, "room-1", t0))
		}, notification.StateResolved, false, nil, false},
		{"ack resolved", func() (notification.Alert, bool, error) {
			return h.S.AckAlert(ctx, "a1", t0.Add(5*time.Minute), event("e6", notification.EventAlertAcknowledged, "room-1", t0))
		}, "", false, notification.ErrConflict, false},
		{"ack unknown", func() (notification.Alert, bool, error) {
			return h.S.AckAlert(ctx, "zz", t0, event("e7", notification.EventAlertAcknowledged, "room-1", t0))
		}, "", false, notification.ErrNotFound, false},
		{"resolve unknown", func() (notification.Alert, bool, error) {
			return h.S.ResolveAlert(ctx, "zz", t0, event("e8", notification.EventAlertResolved, "room-1", t0))
		}, "", false, notification.ErrNotFound, false},
	}
	want := []string{"e1"}
	for i, st := range steps {
		t.Run(fmt.Sprintf("%d %s", i, st.name), func(t *testing.T) {
			got, changed, err := st.do()
			if st.err != nil {
				if !errors.Is(err, st.err) {
					t.Fatalf("err = %v, want %v", err, st.err)
				}
				return
			}
			must(t, err)
			if got.State != st.state || changed != st.changed {
				t.Fatalf("state %s changed %v, want %s %v", got.State, changed, st.state, st.changed)
			}
		})
		if st.wantEvent {
			want = append([]string{fmt.Sprintf("e%d", i+2)}, want...)
		}
	}
	got, err := h.S.Alert(ctx, "a1")
	must(t, err)
	if got.AcknowledgedAt == nil || !got.AcknowledgedAt.Equal(t0.Add(time.Minute)) || got.ResolvedAt == nil || !got.ResolvedAt.Equal(t0.Add(3*time.Minute)) {
		t.Fatalf("times: ack %v resolved %v", got.AcknowledgedAt, got.ResolvedAt)
	}
	evs := h.allEvents(notification.EventQuery{})
	if fmt.Sprint(h.ids(evs)) != fmt.Sprint(want) {
		t.Fatalf("events %v, want %v (newest first, one per change)", h.ids(evs), want)
	}
	for _, e := range evs {
		if e.AlertID != "a1" {
			t.Errorf("event %s alert_id %q, want a1", e.ID, e.AlertID)
		}
	}
	if _, err := h.S.Alert(ctx, "zz"); !errors.Is(err, notification.ErrNotFound) {
		t.Fatalf("unknown alert: %v", err)
	}
}

func testOneOpenAlertPerKey(t *testing.T, h *harness) {
	ctx := t.Context()
	raise := func(id, sensor string) (notification.Alert, bool) {
		a, created, err := h.S.RaiseAlert(ctx, alert(id, "r", "room-1", sensor, t0), event("ev-"+id, notification.EventAlertRaised, "room-1", t0))
		must(t, err)
		return a, created
	}
	if _, c := raise("a1", "s1"); !c {
		t.Fatal("first raise not created")
	}
	if a, c := raise("a2", "s1"); c || a.ID != "a1" {
		t.Fatalf("second raise of the same key: created %v id %s, want the open a1", c, a.ID)
	}
	if _, c := raise("a3", "s2"); !c {
		t.Fatal("another sensor's raise not created")
	}
	_, _, err := h.S.ResolveAlert(ctx, "a1", t0, event("res", notification.EventAlertResolved, "room-1", t0))
	must(t, err)
	if a, c := raise("a4", "s1"); !c || a.ID != "a4" {
		t.Fatalf("raise after resolve: created %v id %s", c, a.ID)
	}
	open, err := h.S.OpenAlerts(ctx)
	must(t, err)
	if len(open) != 2 || open[0].ID != "a3" || open[1].ID != "a4" {
		t.Fatalf("open alerts %+v, want a3, a4", open)
	}
	if n := len(h.allEvents(notification.EventQuery{Type: notification.EventAlertRaised})); n != 3 {
		t.Fatalf("%d raise events, want 3 (no event for the duplicate)", n)
	}
}

func testAlertQueries(t *testing.T, h *harness) {
	ctx := t.Context()
	for i := range 25 {
		room := fmt.Sprintf("room-%d", i%3)
		a := alert(fmt.Sprintf("a%02d", i), "r", room, fmt.Sprintf("s%02d", i), t0.Add(time.Duration(i)*time.Minute))
		if i%5 == 0 {
			a.Severity = notification.SeverityCritical
		}
		_, _, err := h.S.RaiseAlert(ctx, a, event("e"+a.ID, notification.EventAlertRaised, room, t0))
		must(t, err)
		switch i % 4 {
		case 1:
			_, _, err = h.S.AckAlert(ctx, a.ID, t0, event("k"+a.ID, notification.EventAlertAcknowledged, room, t0))
		case 2:
			_, _, err = h.S.ResolveAlert(ctx, a.ID, t0, event("x"+a.ID, notification.EventAlertResolved, room, t0))
		}
		must(t, err)
	}
	tests := []struct {
		name string
		q    notification.AlertQuery
		want int
	}{
		{"all", notification.AlertQuery{}, 25},
		{"all paged", notification.AlertQuery{Limit: 4}, 25},
		{"active includes acknowledged", notification.AlertQuery{State: notification.StateActive, Limit: 5}, 19},
		{"acknowledged", notification.AlertQuery{State: notification.StateAcknowledged}, 6},
		{"resolved", notification.AlertQuery{State: notification.StateResolved, Limit: 2}, 6},
		{"room", notification.AlertQuery{RoomID: "room-1", Limit: 3}, 8},
		{"severity", notification.AlertQuery{Severity: notification.SeverityCritical}, 5},
		{"rule", notification.AlertQuery{RuleID: "nope"}, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			as := h.allAlerts(tc.q)
			if len(as) != tc.want {
				t.Fatalf("%d alerts, want %d", len(as), tc.want)
			}
			seen := map[string]bool{}
			for i, a := range as {
				if seen[a.ID] {
					t.Fatalf("alert %s listed twice", a.ID)
				}
				seen[a.ID] = true
				if i > 0 && as[i-1].ID < a.ID {
					t.Fatalf("not newest first: %s before %s", as[i-1].ID, a.ID)
				}
			}
		})
	}
}

func testEvents(t *testing.T, h *harness) {
	ctx := t.Context()
	types := []string{notification.EventSensorOnline, notification.EventSensorOffline, notification.EventNotificationSent}
	for i := range 30 {
		ev := event(fmt.Sprintf("e%02d", i), types[i%3], fmt.Sprintf("room-%d", i%2), t0.Add(time.Duration(i)*time.Minute))
		if i%3 == 2 {
			ev.Severity = notification.SeverityInfo
		}
		must(t, h.S.AppendEvent(ctx, ev))
	}
	tests := []struct {
		name  string
		q     notification.EventQuery
		want  int
		first string
	}{
		{"all", notification.EventQuery{}, 30, "e29"},
		{"paged", notification.EventQuery{Limit: 7}, 30, "e29"},
		{"type", notification.EventQuery{Type: notification.EventSensorOffline, Limit: 3}, 10, "e28"},
		{"severity", notification.EventQuery{Severity: notification.SeverityInfo}, 10, "e29"},
		{"room", notification.EventQuery{RoomID: "room-0", Limit: 4}, 15, "e28"},
		{"since", notification.EventQuery{Since: t0.Add(20 * time.Minute)}, 10, "e29"},
		{"combined", notification.EventQuery{Type: notification.EventSensorOnline, RoomID: "room-1", Since: t0.Add(10 * time.Minute)}, 3, "e27"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			es := h.allEvents(tc.q)
			if len(es) != tc.want || (tc.want > 0 && es[0].ID != tc.first) {
				t.Fatalf("%d events starting %v, want %d starting %s", len(es), h.ids(es)[:min(3, len(es))], tc.want, tc.first)
			}
		})
	}
	es, _, err := h.S.Events(ctx, notification.EventQuery{Limit: 1})
	must(t, err)
	if e := es[0]; string(e.Data) != `{"k":1}` || !e.Time.Equal(t0.Add(29*time.Minute)) || e.Message == "" || e.RoomID != "room-1" {
		t.Fatalf("event round trip: %+v", e)
	}
}

func testSensors(t *testing.T, h *harness) {
	ctx := t.Context()
	must(t, h.S.SaveSensors(ctx, []notification.SensorState{
		{ID: "s1", RoomID: "r1", LastSeen: t0.Add(time.Minute), Types: []string{"co2", "temperature"}},
		{ID: "s2", RoomID: "r2", LastSeen: t0, Types: []string{"humidity"}},
	}))
	must(t, h.S.SaveSensors(ctx, []notification.SensorState{
		{ID: "s1", LastSeen: t0, Offline: true},                                  // older last-seen, no room, no types: all kept
		{ID: "s2", RoomID: "r3", LastSeen: t0.Add(time.Hour), Types: []string{}}, // types replaced
	}))
	ss, err := h.S.Sensors(ctx)
	must(t, err)
	want := []notification.SensorState{
		{ID: "s1", RoomID: "r1", LastSeen: t0.Add(time.Minute), Offline: true, Types: []string{"co2", "temperature"}},
		{ID: "s2", RoomID: "r3", LastSeen: t0.Add(time.Hour), Types: []string{}},
	}
	if len(ss) != 2 {
		t.Fatalf("sensors %+v", ss)
	}
	for i := range want {
		if ss[i].ID != want[i].ID || ss[i].RoomID != want[i].RoomID || !ss[i].LastSeen.Equal(want[i].LastSeen) || ss[i].Offline != want[i].Offline ||
			!slices.Equal(ss[i].Types, want[i].Types) {
			t.Errorf("sensor %d = %+v, want %+v", i, ss[i], want[i])
		}
	}
}

func testReopen(t *testing.T, h *harness) {
	ctx := t.Context()
	must(t, h.S.CreateRule(ctx, rule("r1")))
	_, _, err := h.S.RaiseAlert(ctx, alert("a1", "r1", "room", "s", t0), event("e1", notification.EventAlertRaised, "room", t0))
	must(t, err)
	must(t, h.S.SaveSensors(ctx, []notification.SensorState{{ID: "s", RoomID: "room", LastSeen: t0}}))
	h.Reopen()
	if _, err := h.S.Rule(ctx, "r1"); err != nil {
		t.Fatalf("rule after reopen: %v", err)
	}
	open, err := h.S.OpenAlerts(ctx)
	must(t, err)
	if len(open) != 1 || open[0].ID != "a1" {
		t.Fatalf("open alerts after reopen: %+v", open)
	}
	ss, err := h.S.Sensors(ctx)
	must(t, err)
	if len(ss) != 1 || !ss[0].LastSeen.Equal(t0) {
		t.Fatalf("sensors after reopen: %+v", ss)
	}
	if es := h.allEvents(notification.EventQuery{}); len(es) != 1 {
		t.Fatalf("events after reopen: %d", len(es))
	}
	if _, c, err := h.S.RaiseAlert(ctx, alert("a2", "r1", "room", "s", t0), event("e2", notification.EventAlertRaised, "room", t0)); err != nil || c {
		t.Fatalf("raise of the open key after reopen: created %v err %v", c, err)
	}
}

func testBadCursor(t *testing.T, h *harness) {
	ctx := t.Context()
	for _, c := range []string{"!!", "bm90LWpzb24", "e30"} {
		t.Run(c, func(t *testing.T) {
			if _, _, err := h.S.Alerts(ctx, notification.AlertQuery{Cursor: c}); !errors.Is(err, notification.ErrBadCursor) {
				t.Errorf("alerts: %v, want ErrBadCursor", err)
			}
			if _, _, err := h.S.Events(ctx, notification.EventQuery{Cursor: c}); !errors.Is(err, notification.ErrBadCursor) {
				t.Errorf("events: %v, want ErrBadCursor", err)
			}
		})
	}
}

func testClosed(t *testing.T, h *harness) {
	ctx := t.Context()
	must(t, h.Close())
	if err := h.S.Ping(ctx); err == nil {
		t.Error("Ping on a closed store succeeded")
	}
	if err := h.S.AppendEvent(ctx, event("e", notification.EventSensorOnline, "", t0)); err == nil {
		t.Error("AppendEvent on a closed store succeeded")
	}
	if _, err := h.S.Rules(ctx); err == nil {
		t.Error("Rules on a closed store succeeded")
	}
}
