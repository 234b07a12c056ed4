package notification

import (
	"container/heap"
	"time"
)

// sensorEntry is what the silence tracker knows of one sensor.
type sensorEntry struct {
	id       string
	room     string
	types    map[string]struct{}
	lastSeen time.Time
	offline  bool
	// silent holds the open sensor_silent alert per rule id ("" while the raise is
	// being applied).
	silent map[string]string
	dirty  bool // changed since the last save to the store
	queued bool // has an entry in the deadline heap
}

// statusChange is a sensor going online or offline.
type statusChange struct {
	sensor  *sensorEntry
	online  bool
	at      time.Time
	initial bool // first reading ever seen from the sensor
}

// Tracker detects silent sensors with one server-side deadline per sensor: the
// earliest of "offline after" and each applicable sensor_silent rule's For,
// counted from the sensor's newest reading timestamp. Deadlines sit in a min-heap,
// so a reading costs O(1) (the deadline only moves later) and an expiry O(log n).
// It is not safe for concurrent use; the service serialises it.
type Tracker struct {
	offlineAfter time.Duration
	rules        []*Rule // enabled sensor_silent rules
	sensors      map[string]*sensorEntry
	heap         deadlineHeap
}

// NewTracker makes a tracker; a sensor silent for offlineAfter is offline.
func NewTracker(offlineAfter time.Duration) *Tracker {
	return &Tracker{offlineAfter: offlineAfter, sensors: map[string]*sensorEntry{}}
}

// SetRules replaces the sensor_silent rules and reschedules every sensor.
func (t *Tracker) SetRules(rules []Rule) {
	t.rules = t.rules[:0]
	for i := range rules {
		r := rules[i]
		if r.Kind == KindSensorSilent && r.IsEnabled() {
			t.rules = append(t.rules, &r)
		}
	}
	t.heap = t.heap[:0]
	for _, s := range t.sensors {
		s.queued = false
		t.schedule(s)
	}
}

// Load adds a sensor remembered by the store (after a restart).
func (t *Tracker) Load(st SensorState) {
	s := &sensorEntry{id: st.ID, room: st.RoomID, lastSeen: st.LastSeen, offline: st.Offline,
		types: map[string]struct{}{}, silent: map[string]string{}}
	t.sensors[st.ID] = s
	t.schedule(s)
}

// restoreSilent records an open sensor_silent alert (after a restart).
func (t *Tracker) restoreSilent(a Alert) {
	if s, ok := t.sensors[a.SensorID]; ok {
		s.silent[a.RuleID] = a.ID
	}
}

// Seen records a reading of sensor id. It returns a status change when the sensor
// is new or was offline, and the resolve transitions of its open sensor_silent
// alerts when the reading is newer than any seen before.
func (t *Tracker) Seen(id, room, typ string, ts time.Time) (ch statusChange, changed bool, resolves []transition) {
	s, ok := t.sensors[id]
	if !ok {
		s = &sensorEntry{id: id, room: room, lastSeen: ts, types: map[string]struct{}{typ: {}}, silent: map[string]string{}, dirty: true}
		t.sensors[id] = s
		t.schedule(s)
		return statusChange{sensor: s, online: true, at: ts, initial: true}, true, nil
	}
	if _, ok := s.types[typ]; !ok {
		s.types[typ] = struct{}{}
	}
	if room != "" && room != s.room {
		s.room, s.dirty = room, true
	}
	if !ts.After(s.lastSeen) {
		return statusChange{}, false, nil // an older reading says nothing about silence now
	}
	s.lastSeen, s.dirty = ts, true
	if len(s.silent) > 0 {
		resolves = t.backOnline(s, ts)
	}
	if s.offline {
		s.offline = false
		changed, ch = true, statusChange{sensor: s, online: true, at: ts}
	}
	t.schedule(s)
	return ch, changed, resolves
}

// silentApplies reports whether a sensor_silent rule covers a sensor.
func (t *Tracker) silentApplies(r *Rule, s *sensorEntry) bool {
	if r.RoomID != "" && r.RoomID != s.room {
		return false
	}
	if r.Metric != "" {
		_, ok := s.types[r.Metric]
		// A sensor loaded from the store has no known types until it reports
		// again; a metric-scoped rule then does not apply to it.
		return ok
	}
	return true
}

// next is the sensor's next deadline, or false when nothing is pending.
func (t *Tracker) next(s *sensorEntry) (time.Time, bool) {
	var at time.Time
	set := func(d time.Duration) {
		c := s.lastSeen.Add(d)
		if at.IsZero() || c.Before(at) {
			at = c
		}
	}
	if !s.offline && t.offlineAfter > 0 {
		set(t.offlineAfter)
	}
	for _, r := range t.rules {
		if _, open := s.silent[r.ID]; !open && t.silentApplies(r, s) {
			set(time.Duration(r.For))
		}
	}
	return at, !at.IsZero()
}

func (t *Tracker) schedule(s *sensorEntry) {
	if s.queued {
		return
	}
	if at, ok := t.next(s); ok {
		heap.Push(&t.heap, deadline{at: at, s: s})
		s.queued = true
	}
}

// Expire handles every deadline that has passed at now: it returns the sensors
// that went offline and the sensor_silent alerts to raise. A deadline that moved
// later (the sensor reported meanwhile) is pushed back.
func (t *Tracker) Expire(now time.Time) ([]statusChange, []transition) {
	var changes []statusChange
	var raises []transition
	for len(t.heap) > 0 && !t.heap[0].at.After(now) {
		d := heap.Pop(&t.heap).(deadline)
		s := d.s
		s.queued = false
		silence := now.Sub(s.lastSeen)
		if !s.offline && t.offlineAfter > 0 && silence >= t.offlineAfter {
			s.offline, s.dirty = true, true
			changes = append(changes, statusChange{sensor: s, online: false, at: s.lastSeen.Add(t.offlineAfter)})
		}
		for _, r := range t.rules {
			if _, open := s.silent[r.ID]; open || !t.silentApplies(r, s) || silence < time.Duration(r.For) {
				continue
			}
			s.silent[r.ID] = ""
			raises = append(raises, transition{kind: transRaise, rule: r,
				key: AlertKey{RuleID: r.ID, RoomID: s.room, SensorID: s.id, Type: r.Metric},
				at:  s.lastSeen.Add(time.Duration(r.For))})
		}
		t.schedule(s)
	}
	return changes, raises
}

// backOnline returns the resolve transitions of a sensor's open silent alerts.
func (t *Tracker) backOnline(s *sensorEntry, at time.Time) []transition {
	var out []transition
	for ruleID, alertID := range s.silent {
		out = append(out, transition{kind: transResolve, key: AlertKey{RuleID: ruleID, RoomID: s.room, SensorID: s.id},
			alertID: alertID, at: at, reason: "sensor reported again"})
		delete(s.silent, ruleID)
	}
	if len(out) > 0 {
		t.schedule(s)
	}
	return out
}

// dirtyStates returns the sensors changed since the last call and clears their flag.
func (t *Tracker) dirtyStates() []SensorState {
	var out []SensorState
	for _, s := range t.sensors {
		if s.dirty {
			out = append(out, SensorState{ID: s.id, RoomID: s.room, LastSeen: s.lastSeen, Offline: s.offline})
			s.dirty = false
		}
	}
	return out
}

// markDirty flags sensors whose save failed, so the next flush retries them.
func (t *Tracker) markDirty(ss []SensorState) {
	for _, st := range ss {
		if s, ok := t.sensors[st.ID]; ok {
			s.dirty = true
		}
	}
}

type deadline struct {
	at time.Time
	s  *sensorEntry
}

type deadlineHeap []deadline

func (h deadlineHeap) Len() int           { return len(h) }
func (h deadlineHeap) Less(i, j int) bool { return h[i].at.Before(h[j].at) }
func (h deadlineHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *deadlineHeap) Push(x any)        { *h = append(*h, x.(deadline)) }
func (h *deadlineHeap) Pop() any {
	old := *h
	d := old[len(old)-1]
	*h = old[:len(old)-1]
	return d
}

// bindSilent records the id of a sensor_silent alert once it is stored; an empty
// alertID (the raise failed) forgets it, so the next expiry raises it again.
func (t *Tracker) bindSilent(sensorID, ruleID, alertID string) {
	s, ok := t.sensors[sensorID]
	if !ok {
		return
	}
	if alertID == "" {
		delete(s.silent, ruleID)
		t.schedule(s)
		return
	}
	s.silent[ruleID] = alertID
}

// forget drops a rule's open sensor_silent alerts and returns their resolve
// transitions (the rule was changed or deleted).
func (t *Tracker) forget(ruleID string, at time.Time) []transition {
	var out []transition
	for _, s := range t.sensors {
		if id, ok := s.silent[ruleID]; ok {
			delete(s.silent, ruleID)
			if id != "" {
				out = append(out, transition{kind: transResolve, key: AlertKey{RuleID: ruleID, RoomID: s.room, SensorID: s.id},
					alertID: id, at: at, reason: "rule changed"})
			}
		}
	}
	return out
}
