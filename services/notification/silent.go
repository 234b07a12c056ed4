package notification

import (
	"container/heap"
	"slices"
	"time"

	"github.com/atrium-iot/atrium/internal/events"
)

// sensorEntry is what the silence tracker knows of one sensor, from its
// sensor.status.changed events.
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

// Tracker turns the sensor service's sensor.status.changed events into
// sensor_silent alerts. The sensor service owns liveness (a sensor is offline
// once silent longer than its -offline-after); the tracker keeps, for each
// offline sensor, one deadline per applicable sensor_silent rule, at its last
// reading plus the rule's For, and raises the rule's alert when it passes (at
// once when the offline event comes later than that). Coming online resolves
// the sensor's open silent alerts. Deadlines sit in a min-heap. It is not safe
// for concurrent use; the service serialises it.
type Tracker struct {
	rules   []*Rule // enabled sensor_silent rules
	sensors map[string]*sensorEntry
	heap    deadlineHeap
}

// NewTracker makes an empty tracker.
func NewTracker() *Tracker {
	return &Tracker{sensors: map[string]*sensorEntry{}}
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
		types: make(map[string]struct{}, len(st.Types)), silent: map[string]string{}}
	for _, typ := range st.Types {
		s.types[typ] = struct{}{}
	}
	t.sensors[st.ID] = s
	t.schedule(s)
}

// restoreSilent records an open sensor_silent alert (after a restart).
func (t *Tracker) restoreSilent(a Alert) {
	if s, ok := t.sensors[a.SensorID]; ok {
		s.silent[a.RuleID] = a.ID
	}
}

// statusOrder places a status in a sensor's history: by last reading, and for
// one last reading online before offline. An event that is not after the
// sensor's current place is a redelivery or came late, and changes nothing.
func statusOrder(lastSeen time.Time, offline bool) (time.Time, int) {
	if offline {
		return lastSeen, 1
	}
	return lastSeen, 0
}

// Changes reports whether ev would change what the tracker knows.
func (t *Tracker) Changes(ev events.SensorStatus) bool {
	s, ok := t.sensors[ev.SensorID]
	if !ok {
		return true
	}
	at, rank := statusOrder(ev.LastSeen, ev.Status == events.StatusOffline)
	cur, curRank := statusOrder(s.lastSeen, s.offline)
	return at.After(cur) || (at.Equal(cur) && rank > curRank)
}

// Status applies a sensor.status.changed event (one that Changes the tracker,
// else it does nothing). When the sensor came online, it returns the resolve
// transitions of its open sensor_silent alerts.
func (t *Tracker) Status(ev events.SensorStatus) (resolves []transition) {
	if !t.Changes(ev) {
		return nil
	}
	s, ok := t.sensors[ev.SensorID]
	if !ok {
		s = &sensorEntry{id: ev.SensorID, silent: map[string]string{}}
		t.sensors[ev.SensorID] = s
	}
	if ev.RoomID != "" {
		s.room = ev.RoomID
	}
	s.types = make(map[string]struct{}, len(ev.Types))
	for _, typ := range ev.Types {
		s.types[typ] = struct{}{}
	}
	s.lastSeen, s.offline, s.dirty = ev.LastSeen, ev.Status == events.StatusOffline, true
	if !s.offline {
		resolves = t.backOnline(s, ev.Since)
	}
	t.schedule(s)
	return resolves
}

// silentApplies reports whether a sensor_silent rule covers a sensor.
func (t *Tracker) silentApplies(r *Rule, s *sensorEntry) bool {
	if r.RoomID != "" && r.RoomID != s.room {
		return false
	}
	if r.Metric != "" {
		_, ok := s.types[r.Metric]
		// The types are the ones the sensor's newest status event named.
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
	if !s.offline {
		return at, false
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

// Expire handles every deadline that has passed at now: it returns the
// sensor_silent alerts to raise. A deadline of a sensor back online is dropped.
func (t *Tracker) Expire(now time.Time) []transition {
	var raises []transition
	for len(t.heap) > 0 && !t.heap[0].at.After(now) {
		d := heap.Pop(&t.heap).(deadline)
		s := d.s
		s.queued = false
		if !s.offline {
			continue
		}
		silence := now.Sub(s.lastSeen)
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
	return raises
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
			types := make([]string, 0, len(s.types))
			for typ := range s.types {
				types = append(types, typ)
			}
			slices.Sort(types)
			out = append(out, SensorState{ID: s.id, RoomID: s.room, LastSeen: s.lastSeen, Offline: s.offline, Types: types})
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
