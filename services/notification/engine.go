package notification

import (
	"maps"
	"slices"
	"time"

	"github.com/atrium-iot/atrium/internal/events"
	"github.com/atrium-iot/atrium/internal/reading"
)

// Transition kinds the engines produce.
const (
	transRaise   = "raise"
	transResolve = "resolve"
)

// transition is a change of an alert the engines decided on; the service applies it
// (store, bus, WebSocket, webhook).
type transition struct {
	kind    string
	rule    *Rule
	key     AlertKey
	value   float64
	at      time.Time
	alertID string // resolve: the alert to resolve
	reason  string // resolve: why, when not the readings (rule changed, sensor back)
}

// condState is the evaluation state of one (rule, room, sensor, type).
type condState struct {
	lastTS       int64 // newest reading timestamp evaluated (Unix ms); older ones are ignored
	pendingSince int64 // first timestamp of the current breaching run; 0 when none
	clearSince   int64 // first timestamp of the current clear run while active; 0 when none
	active       bool
	alertID      string
	raiseValue   float64
}

// Engine evaluates threshold rules on readings in timestamp order. It is not safe
// for concurrent use; the service serialises it.
//
// Ordering: readings of one (rule, room, sensor, type) are evaluated in timestamp
// order. A reading whose timestamp is not newer than the last one evaluated for its
// state is ignored (counted in Late): it cannot raise or resolve anything, since a
// late reading would otherwise cut a condition short or stretch it. Within a batch,
// readings are sorted by timestamp first, so an out-of-order batch is evaluated as if
// it had arrived in order.
type Engine struct {
	rules    map[string]*Rule
	byMetric map[string][]*Rule // threshold rules by metric key (metricKey)
	states   map[AlertKey]*condState
	// Late counts readings ignored because they were older than their state.
	Late int64
}

// NewEngine makes an engine over rules (only enabled threshold rules are used).
func NewEngine(rules []Rule) *Engine {
	e := &Engine{states: map[AlertKey]*condState{}}
	e.SetRules(rules)
	return e
}

// SetRules replaces the rules. States of rules that are gone are dropped; states of
// the remaining rules are kept.
func (e *Engine) SetRules(rules []Rule) {
	e.rules = map[string]*Rule{}
	e.byMetric = map[string][]*Rule{}
	for i := range rules {
		r := rules[i]
		if r.Kind != KindThreshold || !r.IsEnabled() {
			continue
		}
		r.Normalize()
		e.rules[r.ID] = &r
		k := metricKey(r.Source, r.Metric)
		e.byMetric[k] = append(e.byMetric[k], &r)
	}
	for k := range e.states {
		if _, ok := e.rules[k.RuleID]; !ok {
			delete(e.states, k)
		}
	}
}

// Forget drops the state of every key of a rule and returns the open alerts it held,
// so the caller can resolve them.
func (e *Engine) Forget(ruleID string) []transition {
	var out []transition
	for k, st := range e.states {
		if k.RuleID != ruleID {
			continue
		}
		if st.active && st.alertID != "" {
			out = append(out, transition{kind: transResolve, key: k, alertID: st.alertID, value: st.raiseValue})
		}
		delete(e.states, k)
	}
	return out
}

// Restore marks a key active with its open alert (after a restart), so the alert is
// resolved by the readings instead of raised again. Readings up to raisedAt are
// treated as evaluated.
func (e *Engine) Restore(a Alert) {
	if _, ok := e.rules[a.RuleID]; !ok {
		return
	}
	ts := a.RaisedAt.UnixMilli()
	e.states[KeyOf(a)] = &condState{lastTS: ts, pendingSince: ts, active: true, alertID: a.ID, raiseValue: a.Value}
}

// Bind records the id of the alert a raise transition created (or found open).
func (e *Engine) Bind(k AlertKey, alertID string) {
	if st, ok := e.states[k]; ok && st.active {
		st.alertID = alertID
	}
}

// Reset drops one key's state, so its readings are evaluated afresh (after the
// service failed to apply a transition and the batch will be redelivered).
func (e *Engine) Reset(k AlertKey) { delete(e.states, k) }

// SortReadings orders readings by timestamp, keeping the batch order of equal
// timestamps.
func SortReadings(rs []reading.Reading) {
	if slices.IsSortedFunc(rs, cmpTS) {
		return
	}
	slices.SortStableFunc(rs, cmpTS)
}

func cmpTS(a, b reading.Reading) int { return a.Timestamp.Compare(b.Timestamp) }

// metricKey is where byMetric keeps the rules of a source's metric: the
// readings' rules under the type itself, the room's apart.
func metricKey(source, metric string) string {
	if source == SourceRoom {
		return "room/" + metric
	}
	return metric
}

// Evaluate runs one reading through the rules of its type and appends the
// transitions it causes to out.
func (e *Engine) Evaluate(r *reading.Reading, out []transition) []transition {
	rules := e.byMetric[r.Type]
	if len(rules) == 0 {
		return out
	}
	return e.evaluate(rules, r.RoomID, r.SensorID, r.Type, r.Value, r.Timestamp, out)
}

// EvaluateRoom runs a room's metrics (room.metrics.updated) through the rules
// of SourceRoom, each metric value as of the update's time, and appends the
// transitions they cause to out. Their alerts have no sensor.
func (e *Engine) EvaluateRoom(m *events.RoomMetrics, out []transition) []transition {
	for _, typ := range slices.Sorted(maps.Keys(m.Metrics)) {
		if rules := e.byMetric[metricKey(SourceRoom, typ)]; len(rules) > 0 {
			out = e.evaluate(rules, m.RoomID, "", typ, m.Metrics[typ].Value, m.At, out)
		}
	}
	if rules := e.byMetric[metricKey(SourceRoom, RoomMetricOccupancyRatio)]; len(rules) > 0 && m.OccupancyRatio != nil {
		out = e.evaluate(rules, m.RoomID, "", RoomMetricOccupancyRatio, *m.OccupancyRatio, m.At, out)
	}
	return out
}

// evaluate runs one value of (room, sensor, type) at time at through rules.
func (e *Engine) evaluate(rules []*Rule, room, sensor, typ string, value float64, at time.Time, out []transition) []transition {
	ts := at.UnixMilli()
	for _, rule := range rules {
		if rule.RoomID != "" && rule.RoomID != room {
			continue
		}
		k := AlertKey{RuleID: rule.ID, RoomID: room, SensorID: sensor, Type: typ}
		st := e.states[k]
		if st == nil {
			st = &condState{lastTS: -1 << 62}
			e.states[k] = st
		}
		if ts <= st.lastTS {
			e.Late++
			continue
		}
		st.lastTS = ts
		if !st.active {
			if held(&st.pendingSince, rule.breaching(value), ts, time.Duration(rule.For)) {
				st.active, st.clearSince, st.alertID, st.raiseValue = true, 0, "", value
				out = append(out, transition{kind: transRaise, rule: rule, key: k, value: value, at: at})
			}
			continue
		}
		if held(&st.clearSince, rule.clear(value), ts, time.Duration(rule.ClearFor)) {
			out = append(out, transition{kind: transResolve, rule: rule, key: k, value: value, at: at, alertID: st.alertID})
			st.active, st.pendingSince, st.clearSince, st.alertID = false, 0, 0, ""
		}
	}
	return out
}

// held reports whether a condition, now ok at ts (Unix ms), has held for at
// least d: *since is when it began holding (0: it does not), kept up to date.
func held(since *int64, ok bool, ts int64, d time.Duration) bool {
	if !ok {
		*since = 0
		return false
	}
	if *since == 0 {
		*since = ts
	}
	return ts-*since >= d.Milliseconds()
}
