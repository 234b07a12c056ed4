// Package storetest is the contract every room.Store adapter must pass. An
// adapter's tests call Run with a function that opens its store; the suite then
// applies batches, redelivers and reorders them, manages rooms and reads history
// through the interface alone. RunRetention, with a function that opens a store
// with a retention and a clock, checks -retention and -rollup-retention (a store
// with them has a Prune method).
package storetest

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"reflect"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/atrium-iot/atrium/internal/reading"
	"github.com/atrium-iot/atrium/internal/storesuite"
	"github.com/atrium-iot/atrium/services/room"
)

// Opener opens the store called name, failing t if it cannot. Within one Run the
// same name opens the same data again, and different names are independent,
// empty stores. Run closes every store it opens.
type Opener = storesuite.Opener[room.Store]

// t0 is the suite's reference instant, on a whole hour.
var t0 = time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)

func at(d time.Duration) time.Time { return t0.Add(d) }

func rd(sensor, roomID, typ string, v float64, ts time.Time) reading.Reading {
	return reading.Reading{SensorID: sensor, RoomID: roomID, Type: typ, Value: v, Timestamp: ts}
}

// Run runs the contract against the stores open returns.
func Run(t *testing.T, open Opener) {
	storesuite.Suite[room.Store, *harness]{
		Open:    open,
		Harness: newHarness,
		Cases: map[string]func(*testing.T, *harness){
			"ApplyAndSnapshot":    testApplyAndSnapshot,
			"Redelivery":          testRedelivery,
			"OrderIndependent":    testOrderIndependent,
			"ConcurrentSameBatch": testConcurrentSameBatch,
			"Placement":           testPlacement,
			"History":             testHistory,
			"Rooms":               testRooms,
			"Forget":              testForget,
			"Reopen":              testReopen,
			"Series":              testSeries,
			"HugeValues":          testHugeValues,
		},
	}.Run(t)
}

// harness holds the store of one subtest and the suite's helpers over it.
type harness struct {
	*storesuite.Harness[room.Store]
}

func newHarness(h *storesuite.Harness[room.Store]) *harness { return &harness{h} }

// harnessFor is a harness over s, a store the caller opened and closes.
func harnessFor(t *testing.T, s room.Store) *harness {
	return &harness{&storesuite.Harness[room.Store]{T: t, S: s}}
}

func (h *harness) apply(id string, rs ...reading.Reading) room.Applied {
	h.T.Helper()
	out, err := h.S.Apply(h.T.Context(), room.Batch{ID: id, Readings: rs, At: t0})
	if err != nil {
		h.T.Fatalf("Apply(%s): %v", id, err)
	}
	return out
}

func (h *harness) snapshot(id string, from, to time.Time) room.Snapshot {
	h.T.Helper()
	s, err := h.S.Snapshot(h.T.Context(), id, from, to)
	if err != nil {
		h.T.Fatalf("Snapshot(%s): %v", id, err)
	}
	sort.Slice(s.Latest, func(i, j int) bool {
		a, b := s.Latest[i], s.Latest[j]
		return a.Type < b.Type || a.Type == b.Type && a.SensorID < b.SensorID
	})
	sort.Slice(s.Window, func(i, j int) bool { return s.Window[i].Type < s.Window[j].Type })
	return s
}

func (h *harness) history(q room.HistoryQuery) []room.Stat {
	h.T.Helper()
	st, err := h.S.History(h.T.Context(), q)
	if err != nil {
		h.T.Fatalf("History(%+v): %v", q, err)
	}
	return st
}

func sv(sensor, typ string, v float64, ts time.Time) room.SensorValue {
	return room.SensorValue{SensorID: sensor, Type: typ, Value: v, Timestamp: ts}
}

func stat(typ string, start time.Time, n int64, sum, lo, hi float64) room.Stat {
	return room.Stat{Type: typ, Start: start, Count: n, Sum: sum, Min: lo, Max: hi}
}

func checkLatest(t *testing.T, got []room.SensorValue, want ...room.SensorValue) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("latest = %+v, want %+v", got, want)
	}
	for i := range got {
		g, w := got[i], want[i]
		if g.SensorID != w.SensorID || g.Type != w.Type || g.Value != w.Value || !g.Timestamp.Equal(w.Timestamp) {
			t.Errorf("latest[%d] = %+v, want %+v", i, g, w)
		}
	}
}

func checkStats(t *testing.T, what string, got []room.Stat, want ...room.Stat) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s = %+v, want %+v", what, got, want)
	}
	for i := range got {
		g, w := got[i], want[i]
		if g.Type != w.Type || !g.Start.Equal(w.Start) || g.Count != w.Count || g.Sum != w.Sum || g.Min != w.Min || g.Max != w.Max {
			t.Errorf("%s[%d] = %+v, want %+v", what, i, g, w)
		}
	}
}

func testApplyAndSnapshot(t *testing.T, h *harness) {
	out := h.apply("b1",
		rd("s1", "r1", "temperature", 21, at(0)),
		rd("s1", "r1", "temperature", 22, at(30*time.Second)),
		rd("s2", "r1", "temperature", 23.5, at(10*time.Second)),
		rd("s2", "r1", "co2", 700, at(90*time.Second)),
		rd("s3", "r2", "co2", 1200, at(0)),
	)
	if out.Duplicate || out.Readings != 5 || out.Unroomed != 0 || !reflect.DeepEqual(out.Rooms, []string{"r1", "r2"}) {
		t.Fatalf("Apply = %+v", out)
	}
	snap := h.snapshot("r1", at(0), at(2*time.Minute))
	checkLatest(t, snap.Latest,
		sv("s2", "co2", 700, at(90*time.Second)),
		sv("s1", "temperature", 22, at(30*time.Second)),
		sv("s2", "temperature", 23.5, at(10*time.Second)))
	checkStats(t, "window", snap.Window,
		stat("co2", time.Time{}, 1, 700, 700, 700),
		stat("temperature", time.Time{}, 3, 66.5, 21, 23.5))
	if snap.Room.ID != "r1" || snap.Room.Name != "r1" || snap.Room.SensorCount != 2 {
		t.Errorf("room created by readings = %+v, want id and name r1, 2 sensors", snap.Room)
	}
	// The window bounds are minute starts, both inclusive.
	snap = h.snapshot("r1", at(time.Minute), at(time.Minute))
	checkStats(t, "window of the second minute", snap.Window, stat("co2", time.Time{}, 1, 700, 700, 700))
	if _, err := h.S.Snapshot(t.Context(), "nope", at(0), at(time.Minute)); !errors.Is(err, room.ErrNotFound) {
		t.Errorf("Snapshot of an unknown room: err = %v, want ErrNotFound", err)
	}
}

func testRedelivery(t *testing.T, h *harness) {
	rs := []reading.Reading{rd("s1", "r1", "co2", 500, at(0)), rd("s1", "r1", "co2", 600, at(time.Second))}
	first := h.apply("b1", rs...)
	for range 3 {
		again := h.apply("b1", rs...)
		if !again.Duplicate || !reflect.DeepEqual(again.Rooms, first.Rooms) {
			t.Fatalf("redelivery = %+v, want a duplicate with rooms %v", again, first.Rooms)
		}
	}
	checkStats(t, "history", h.history(room.HistoryQuery{RoomID: "r1", Type: "co2", From: at(0), To: at(time.Hour), Bucket: time.Minute, Limit: 10}),
		stat("co2", at(0), 2, 1100, 500, 600))
}

func testOrderIndependent(t *testing.T, h *harness) {
	// The same readings, in batches applied in different orders to two rooms
	// named apart, give the same state.
	var batches [][]reading.Reading
	for b := range 6 {
		var rs []reading.Reading
		for i := range 5 {
			ts := at(time.Duration(b*7+i*3) * 17 * time.Second)
			rs = append(rs, rd(fmt.Sprintf("s%d", i%2), "", "temperature", float64(18+(b*5+i)%9), ts))
		}
		batches = append(batches, rs)
	}
	orders := [][]int{{0, 1, 2, 3, 4, 5}, {5, 4, 3, 2, 1, 0}, {3, 0, 5, 1, 4, 2}}
	var firstSnap room.Snapshot
	var firstHist []room.Stat
	for o, order := range orders {
		roomID := fmt.Sprintf("order%d", o)
		for _, b := range order {
			rs := append([]reading.Reading(nil), batches[b]...)
			for i := range rs {
				rs[i].RoomID = roomID
				rs[i].SensorID = roomID + "-" + rs[i].SensorID
			}
			h.apply(fmt.Sprintf("%s-%d", roomID, b), rs...)
		}
		snap := h.snapshot(roomID, at(0), at(time.Hour))
		for i := range snap.Latest {
			snap.Latest[i].SensorID = strings.TrimPrefix(snap.Latest[i].SensorID, roomID+"-")
		}
		hist := h.history(room.HistoryQuery{RoomID: roomID, Type: "temperature", From: at(0), To: at(time.Hour), Bucket: time.Minute, Limit: 100})
		if o == 0 {
			firstSnap, firstHist = snap, hist
			continue
		}
		checkLatest(t, snap.Latest, firstSnap.Latest...)
		checkStats(t, "window", snap.Window, firstSnap.Window...)
		checkStats(t, "history", hist, firstHist...)
	}
	// The newest readings win whatever the order: s0's newest is batch 5, i=4.
	want := batches[5][4]
	if got := firstSnap.Latest[0]; got.SensorID != "s0" || got.Value != want.Value || !got.Timestamp.Equal(want.Timestamp) {
		t.Errorf("latest of s0 = %+v, want %v at %s", got, want.Value, want.Timestamp)
	}
	// A late reading lands in its minute and leaves the latest alone.
	h.apply("late", rd("order0-s0", "order0", "temperature", 30, at(time.Second)))
	snap := h.snapshot("order0", at(0), at(time.Hour))
	for i := range snap.Latest {
		snap.Latest[i].SensorID = strings.TrimPrefix(snap.Latest[i].SensorID, "order0-")
	}
	checkLatest(t, snap.Latest, firstSnap.Latest...)
	hist := h.history(room.HistoryQuery{RoomID: "order0", Type: "temperature", From: at(0), To: at(time.Minute), Bucket: time.Minute, Limit: 1})
	f := firstHist[0]
	checkStats(t, "first minute after a late reading", hist, stat("temperature", at(0), f.Count+1, f.Sum+30, f.Min, 30))
}

func testConcurrentSameBatch(t *testing.T, h *harness) {
	rs := []reading.Reading{rd("s1", "r1", "occupancy", 3, at(0)), rd("s1", "r1", "occupancy", 5, at(time.Second))}
	const n = 8
	var wg sync.WaitGroup
	outs := make([]room.Applied, n)
	errs := make([]error, n)
	for i := range n {
		wg.Go(func() { outs[i], errs[i] = h.S.Apply(t.Context(), room.Batch{ID: "same", Readings: rs, At: t0}) })
	}
	wg.Wait()
	applied := 0
	for i := range n {
		if errs[i] != nil {
			t.Fatalf("Apply %d: %v", i, errs[i])
		}
		if !outs[i].Duplicate {
			applied++
		}
	}
	if applied != 1 {
		t.Errorf("%d of %d concurrent Apply calls of one batch applied it, want 1", applied, n)
	}
	checkStats(t, "history", h.history(room.HistoryQuery{RoomID: "r1", Type: "occupancy", From: at(0), To: at(time.Hour), Bucket: time.Hour, Limit: 10}),
		stat("occupancy", at(0), 2, 8, 3, 5))
}

func testPlacement(t *testing.T, h *harness) {
	ctx := t.Context()
	if _, err := h.S.CreateRoom(ctx, room.Room{ID: "lab"}); err != nil {
		t.Fatal(err)
	}
	if err := h.S.AssignSensor(ctx, "nope", "s9", t0); !errors.Is(err, room.ErrNotFound) {
		t.Errorf("AssignSensor to an unknown room: err = %v, want ErrNotFound", err)
	}
	if err := h.S.AssignSensor(ctx, "lab", "s1", t0); err != nil {
		t.Fatal(err)
	}
	out := h.apply("b1",
		rd("s1", "hall", "co2", 900, at(0)),       // assigned: goes to lab
		rd("s2", "hall", "co2", 400, at(0)),       // its own room
		rd("s2", "", "co2", 410, at(time.Second)), // the room s2 reports from
		rd("s3", "", "co2", 420, at(0)),           // nobody knows: skipped
	)
	if out.Readings != 3 || out.Unroomed != 1 || !reflect.DeepEqual(out.Rooms, []string{"hall", "lab"}) {
		t.Fatalf("Apply = %+v, want 3 readings in hall and lab, 1 unroomed", out)
	}
	checkLatest(t, h.snapshot("lab", at(0), at(0)).Latest, sv("s1", "co2", 900, at(0)))
	checkLatest(t, h.snapshot("hall", at(0), at(0)).Latest, sv("s2", "co2", 410, at(time.Second)))

	// s2 moves to the kitchen: it leaves the hall; a late reading from the hall
	// does not bring it back.
	h.apply("b2", rd("s2", "kitchen", "co2", 500, at(time.Minute)))
	h.apply("b3", rd("s2", "hall", "co2", 405, at(30*time.Second)))
	for _, tc := range []struct {
		room    string
		sensors []string
	}{{"hall", []string{}}, {"kitchen", []string{"s2"}}, {"lab", []string{"s1"}}} {
		r, err := h.S.Room(ctx, tc.room)
		if err != nil {
			t.Fatal(err)
		}
		if r.SensorCount != len(tc.sensors) || !reflect.DeepEqual(r.Sensors, tc.sensors) {
			t.Errorf("room %s: %d sensors %v, want %v", tc.room, r.SensorCount, r.Sensors, tc.sensors)
		}
	}
	if got := h.snapshot("hall", at(0), at(time.Hour)).Latest; len(got) != 0 {
		t.Errorf("hall latest after s2 left = %+v, want none", got)
	}
	// Its readings stay in the hall's history.
	checkStats(t, "hall history", h.history(room.HistoryQuery{RoomID: "hall", Type: "co2", From: at(0), To: at(time.Hour), Bucket: time.Hour, Limit: 10}),
		stat("co2", at(0), 3, 1215, 400, 410))
}

func testHistory(t *testing.T, h *harness) {
	// Readings at 12:00:10 (10), 12:04:59 (20), 12:05:00 (30), 12:59:00 (40),
	// 13:00:00 (50), 13:30:00 (60) and the next day 12:00 (70).
	var rs []reading.Reading
	for _, p := range []struct {
		d time.Duration
		v float64
	}{{10 * time.Second, 10}, {4*time.Minute + 59*time.Second, 20}, {5 * time.Minute, 30}, {59 * time.Minute, 40},
		{time.Hour, 50}, {90 * time.Minute, 60}, {24 * time.Hour, 70}} {
		rs = append(rs, rd("s1", "r1", "humidity", p.v, at(p.d)))
	}
	h.apply("b1", rs...)
	day := time.Date(2026, 11, 25, 0, 0, 0, 0, time.UTC)
	tests := []struct {
		name string
		q    room.HistoryQuery
		want []room.Stat
	}{
		{"1m", room.HistoryQuery{From: at(0), To: at(2 * time.Hour), Bucket: time.Minute, Limit: 100}, []room.Stat{
			stat("humidity", at(0), 1, 10, 10, 10), stat("humidity", at(4*time.Minute), 1, 20, 20, 20),
			stat("humidity", at(5*time.Minute), 1, 30, 30, 30), stat("humidity", at(59*time.Minute), 1, 40, 40, 40),
			stat("humidity", at(time.Hour), 1, 50, 50, 50), stat("humidity", at(90*time.Minute), 1, 60, 60, 60)}},
		{"5m", room.HistoryQuery{From: at(0), To: at(2 * time.Hour), Bucket: 5 * time.Minute, Limit: 100}, []room.Stat{
			stat("humidity", at(0), 2, 30, 10, 20), stat("humidity", at(5*time.Minute), 1, 30, 30, 30),
			stat("humidity", at(55*time.Minute), 1, 40, 40, 40), stat("humidity", at(time.Hour), 1, 50, 50, 50),
			stat("humidity", at(90*time.Minute), 1, 60, 60, 60)}},
		{"15m", room.HistoryQuery{From: at(0), To: at(2 * time.Hour), Bucket: 15 * time.Minute, Limit: 100}, []room.Stat{
			stat("humidity", at(0), 3, 60, 10, 30), stat("humidity", at(45*time.Minute), 1, 40, 40, 40),
			stat("humidity", at(time.Hour), 1, 50, 50, 50), stat("humidity", at(90*time.Minute), 1, 60, 60, 60)}},
		{"1h", room.HistoryQuery{From: at(0), To: at(48 * time.Hour), Bucket: time.Hour, Limit: 100}, []room.Stat{
			stat("humidity", at(0), 4, 100, 10, 40), stat("humidity", at(time.Hour), 2, 110, 50, 60),
			stat("humidity", at(24*time.Hour), 1, 70, 70, 70)}},
		{"1h to mid-hour", room.HistoryQuery{From: at(0), To: at(80 * time.Minute), Bucket: time.Hour, Limit: 100}, []room.Stat{
			stat("humidity", at(0), 4, 100, 10, 40), stat("humidity", at(time.Hour), 1, 50, 50, 50)}},
		{"1d", room.HistoryQuery{From: day, To: day.Add(72 * time.Hour), Bucket: 24 * time.Hour, Limit: 100}, []room.Stat{
			stat("humidity", day, 6, 210, 10, 60), stat("humidity", day.Add(24*time.Hour), 1, 70, 70, 70)}},
		{"1d to 13:32: hours, five minutes, then minutes", room.HistoryQuery{From: day, To: at(92 * time.Minute), Bucket: 24 * time.Hour, Limit: 100}, []room.Stat{
			stat("humidity", day, 6, 210, 10, 60)}},
		{"1d to 13:31", room.HistoryQuery{From: day, To: at(91 * time.Minute), Bucket: 24 * time.Hour, Limit: 100}, []room.Stat{
			stat("humidity", day, 6, 210, 10, 60)}},
		{"1d to 13:30", room.HistoryQuery{From: day, To: at(90 * time.Minute), Bucket: 24 * time.Hour, Limit: 100}, []room.Stat{
			stat("humidity", day, 5, 150, 10, 50)}},
		{"1d limit 1", room.HistoryQuery{From: day, To: day.Add(72 * time.Hour), Bucket: 24 * time.Hour, Limit: 1}, []room.Stat{
			stat("humidity", day, 6, 210, 10, 60)}},
		{"5m limit 2", room.HistoryQuery{From: at(0), To: at(2 * time.Hour), Bucket: 5 * time.Minute, Limit: 2}, []room.Stat{
			stat("humidity", at(0), 2, 30, 10, 20), stat("humidity", at(5*time.Minute), 1, 30, 30, 30)}},
		{"from is inclusive, to exclusive", room.HistoryQuery{From: at(5 * time.Minute), To: at(59 * time.Minute), Bucket: time.Minute, Limit: 100}, []room.Stat{
			stat("humidity", at(5*time.Minute), 1, 30, 30, 30)}},
		{"other type", room.HistoryQuery{Type: "co2", From: at(0), To: at(2 * time.Hour), Bucket: time.Minute, Limit: 100}, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tc.q.RoomID = "r1"
			if tc.q.Type == "" {
				tc.q.Type = "humidity"
			}
			checkStats(t, "history", h.history(tc.q), tc.want...)
		})
	}
}

func testRooms(t *testing.T, h *harness) {
	ctx := t.Context()
	floor, capacity, area := 2, 12, 35.5
	created, err := h.S.CreateRoom(ctx, room.Room{ID: "r-101", Name: "Blue", Building: "A", Floor: &floor, Capacity: &capacity, AreaM2: &area, CreatedAt: t0, UpdatedAt: t0})
	if err != nil {
		t.Fatal(err)
	}
	if created.Name != "Blue" || *created.Floor != 2 || *created.Capacity != 12 || *created.AreaM2 != 35.5 || !created.CreatedAt.Equal(t0) {
		t.Errorf("CreateRoom = %+v", created)
	}
	if _, err := h.S.CreateRoom(ctx, room.Room{ID: "r-101"}); !errors.Is(err, room.ErrConflict) {
		t.Errorf("CreateRoom of an existing id: err = %v, want ErrConflict", err)
	}
	name := "Green"
	got, err := h.S.UpdateRoom(ctx, "r-101", room.Patch{Name: room.Field[string]{Set: true, Value: &name}, Capacity: room.Field[int]{Set: true}}, at(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if got.Name != "Green" || got.Capacity != nil || got.Floor == nil || *got.Floor != 2 || got.Building != "A" || !got.UpdatedAt.Equal(at(time.Hour)) {
		t.Errorf("UpdateRoom = %+v, want name Green, capacity cleared, the rest kept", got)
	}
	got, err = h.S.UpdateRoom(ctx, "r-101", room.Patch{Name: room.Field[string]{Set: true}, Building: room.Field[string]{Set: true}}, at(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if got.Name != "r-101" || got.Building != "" {
		t.Errorf("clearing name and building = %+v, want name = id, no building", got)
	}
	if _, err := h.S.UpdateRoom(ctx, "nope", room.Patch{}, t0); !errors.Is(err, room.ErrNotFound) {
		t.Errorf("UpdateRoom of an unknown room: err = %v, want ErrNotFound", err)
	}
	for i := range 5 {
		h.apply(fmt.Sprintf("b%d", i), rd(fmt.Sprintf("s%d", i), fmt.Sprintf("r-%d", 200+i), "co2", 400, at(0)))
	}
	var ids []string
	after := ""
	for {
		page, err := h.S.Rooms(ctx, after, 2)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range page {
			ids = append(ids, r.ID)
		}
		if len(page) < 2 {
			break
		}
		after = page[len(page)-1].ID
	}
	if want := []string{"r-101", "r-200", "r-201", "r-202", "r-203", "r-204"}; !reflect.DeepEqual(ids, want) {
		t.Errorf("Rooms pages = %v, want %v", ids, want)
	}

	if err := h.S.DeleteRoom(ctx, "r-200"); err != nil {
		t.Fatal(err)
	}
	if err := h.S.DeleteRoom(ctx, "r-200"); !errors.Is(err, room.ErrNotFound) {
		t.Errorf("DeleteRoom twice: err = %v, want ErrNotFound", err)
	}
	if _, err := h.S.Room(ctx, "r-200"); !errors.Is(err, room.ErrNotFound) {
		t.Errorf("Room after delete: err = %v, want ErrNotFound", err)
	}
	// A later reading recreates it, empty of the old data.
	h.apply("b9", rd("s0", "r-200", "co2", 800, at(time.Hour)))
	checkStats(t, "history after re-creation", h.history(room.HistoryQuery{RoomID: "r-200", Type: "co2", From: at(0), To: at(2 * time.Hour), Bucket: time.Hour, Limit: 10}),
		stat("co2", at(time.Hour), 1, 800, 800, 800))
}

func testForget(t *testing.T, h *harness) {
	rs := []reading.Reading{rd("s1", "r1", "co2", 500, at(0))}
	if _, err := h.S.Apply(t.Context(), room.Batch{ID: "old", Readings: rs, At: t0}); err != nil {
		t.Fatal(err)
	}
	if _, err := h.S.Apply(t.Context(), room.Batch{ID: "new", Readings: []reading.Reading{rd("s1", "r1", "co2", 600, at(time.Second))}, At: at(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	n, err := h.S.Forget(t.Context(), at(time.Minute))
	if err != nil || n != 1 {
		t.Fatalf("Forget = %d, %v, want 1", n, err)
	}
	if out := h.apply("new"); !out.Duplicate {
		t.Errorf("a batch applied after the cut was forgotten: %+v", out)
	}
	if out := h.apply("old", rs...); out.Duplicate {
		t.Errorf("a forgotten batch is still known: %+v", out)
	}
}

func testReopen(t *testing.T, h *harness) {
	h.apply("b1", rd("s1", "r1", "pir", 1, at(0)))
	if err := h.Close(); err != nil {
		t.Fatal(err)
	}
	h.Reopen()
	if out := h.apply("b1", rd("s1", "r1", "pir", 1, at(0))); !out.Duplicate {
		t.Errorf("batch applied before reopening not recognised: %+v", out)
	}
	checkLatest(t, h.snapshot("r1", at(0), at(0)).Latest, sv("s1", "pir", 1, at(0)))
	// Random batches: the rollups add up to exactly the readings applied.
	rng := rand.New(rand.NewPCG(1, 2))
	var n int64
	var sum float64
	for b := range 20 {
		var rs []reading.Reading
		for i := range 50 {
			v := float64(rng.IntN(100))
			rs = append(rs, rd(fmt.Sprintf("s%d", i%7), "r2", "noise", v, at(time.Duration(rng.IntN(3600))*time.Second)))
			n++
			sum += v
		}
		h.apply(fmt.Sprintf("rand%d", b), rs...)
	}
	st := h.history(room.HistoryQuery{RoomID: "r2", Type: "noise", From: at(0), To: at(time.Hour), Bucket: 24 * time.Hour, Limit: 10})
	if len(st) != 1 || st[0].Count != n || st[0].Sum != sum {
		t.Errorf("day of random readings = %+v, want %d readings summing to %v", st, n, sum)
	}
}

// testSeries checks a derived series (occupied_estimate): SetSeries replaces
// minutes (never adds), rebuilds the 5-minute and hour buckets, is idempotent,
// leaves the readings' rollups alone, shows in Snapshot.Estimate and goes with
// its room.
func testSeries(t *testing.T, h *harness) {
	ctx := t.Context()
	typ := room.EstimateType
	h.apply("b1", rd("s1", "r1", "co2", 600, at(30*time.Second)))
	h.apply("b0", rd("s9", "r9", "co2", 600, at(30*time.Second)))
	// Several rooms at once; one that does not exist is skipped.
	if err := h.S.SetSeries(ctx, typ, []room.RoomPoints{{RoomID: "nowhere", Points: []room.Point{{Start: at(0), Value: 0.5}}},
		{RoomID: "r9", Points: []room.Point{{Start: at(0), Value: 0.7}}}}); err != nil {
		t.Fatalf("SetSeries with an unknown room = %v, want the others written", err)
	}
	for _, c := range []struct {
		id   string
		want int
	}{{"nowhere", 0}, {"r9", 1}} {
		if got := h.history(room.HistoryQuery{RoomID: c.id, Type: typ, From: at(0), To: at(time.Hour), Bucket: time.Minute, Limit: 10}); len(got) != c.want || (c.want == 1 && got[0].Sum != 0.7) {
			t.Errorf("history of %s after SetSeries = %+v, want %d minute(s)", c.id, got, c.want)
		}
	}
	if s := h.snapshot("r1", at(0), at(5*time.Minute)); s.Estimate != nil {
		t.Fatalf("Snapshot.Estimate before any = %+v, want nil", s.Estimate)
	}
	set := func(ps ...room.Point) {
		t.Helper()
		if err := h.S.SetSeries(ctx, typ, []room.RoomPoints{{RoomID: "r1", Points: ps}}); err != nil {
			t.Fatalf("SetSeries: %v", err)
		}
	}
	set(room.Point{Start: at(0), Value: 0.2}, room.Point{Start: at(time.Minute), Value: 0.4}, room.Point{Start: at(6 * time.Minute), Value: 0.9})
	// Recomputed: minute 1 changes, minute 0 is written again; twice.
	for range 2 {
		set(room.Point{Start: at(0), Value: 0.2}, room.Point{Start: at(time.Minute), Value: 0.8})
	}
	q := room.HistoryQuery{RoomID: "r1", Type: typ, From: at(0), To: at(time.Hour), Limit: 100}
	for _, c := range []struct {
		bucket time.Duration
		want   []room.Stat
	}{
		{time.Minute, []room.Stat{stat(typ, at(0), 1, 0.2, 0.2, 0.2), stat(typ, at(time.Minute), 1, 0.8, 0.8, 0.8), stat(typ, at(6*time.Minute), 1, 0.9, 0.9, 0.9)}},
		{5 * time.Minute, []room.Stat{stat(typ, at(0), 2, 1.0, 0.2, 0.8), stat(typ, at(5*time.Minute), 1, 0.9, 0.9, 0.9)}},
		{time.Hour, []room.Stat{stat(typ, at(0), 3, 1.9, 0.2, 0.9)}},
	} {
		q.Bucket = c.bucket
		if c.bucket == time.Hour {
			q.To = at(2 * time.Hour)
		}
		got := h.history(q)
		if len(got) != len(c.want) {
			t.Fatalf("history %s = %+v, want %+v", c.bucket, got, c.want)
		}
		for i := range got {
			g, w := got[i], c.want[i]
			if !g.Start.Equal(w.Start) || g.Count != w.Count || !near(g.Sum, w.Sum) || g.Min != w.Min || g.Max != w.Max {
				t.Errorf("history %s [%d] = %+v, want %+v", c.bucket, i, g, w)
			}
		}
	}
	s := h.snapshot("r1", at(0), at(5*time.Minute))
	if s.Estimate == nil || !s.Estimate.Start.Equal(at(6*time.Minute)) || s.Estimate.Count != 1 || s.Estimate.Sum != 0.9 {
		t.Errorf("Snapshot.Estimate = %+v, want the minute at +6m, 0.9", s.Estimate)
	}
	if len(s.Window) != 1 || s.Window[0].Type != "co2" || s.Window[0].Count != 1 {
		t.Errorf("Snapshot.Window = %+v, want co2 alone", s.Window)
	}
	if err := h.S.DeleteRoom(ctx, "r1"); err != nil {
		t.Fatal(err)
	}
	h.apply("b2", rd("s1", "r1", "co2", 600, at(30*time.Second)))
	q.Bucket, q.To = time.Minute, at(time.Hour)
	if got := h.history(q); len(got) != 0 {
		t.Errorf("history after the room was deleted = %+v, want none", got)
	}
}

func near(a, b float64) bool { return a-b < 1e-9 && b-a < 1e-9 }
