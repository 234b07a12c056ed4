package storetest

import (
	"fmt"
	"math"
	"slices"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/atrium-iot/atrium/internal/reading"
	"github.com/atrium-iot/atrium/services/sensor"
)

func testIngestAndReadBack(t *testing.T, h *harness) {
	in := []reading.Reading{
		rd("s1", "r1", "temperature", 21.5, "Cel", at(0)),
		rd("s1", "r1", "humidity", 40.25, "%RH", at(0)),
		rd("s1", "r1", "co2", 612, "ppm", at(time.Minute)),
		rd("s1", "r1", "temperature", -3.125, "Cel", at(time.Minute)),
		rd("s1", "r1", "vibration", 1e-7, "g", at(2*time.Minute)),
		rd("s1", "r1", "light", 123456.789, "lx", at(3*time.Minute)),
		rd("s1", "r1", "pir", 0, "", at(4*time.Minute)),
		rd("s2", "r2", "temperature", 0.1+0.2, "Cel", at(0)),
	}
	in[5].Site = "annex" // a reading's own site is kept; an empty one takes the batch's
	rejected := []sensor.Rejection{{Index: 8, Reason: "value: must be a finite number"}}
	b := sensor.Batch{ID: "b1", Site: "hq", Readings: in, Rejected: rejected, ReceivedAt: at(5 * time.Minute)}
	out := h.ingest(b)
	stored := withSite("hq", in...)
	checkResult(t, "Ingest", out.Result, sensor.Result{BatchID: "b1", Accepted: len(in), Rejected: rejected})
	if out.Replayed {
		t.Error("first Ingest: Replayed = true")
	}
	checkEvent(t, "first Ingest", out.Pending, "b1", "hq", stored)

	s1 := []reading.Reading{stored[0], stored[1], stored[2], stored[3], stored[4], stored[5], stored[6]}
	s1[0], s1[1] = s1[1], s1[0] // humidity < temperature at the same instant
	tests := []struct {
		name string
		q    sensor.ReadingQuery
		want []reading.Reading
	}{
		{"sensor s1", sensor.ReadingQuery{SensorID: "s1", Limit: 100}, s1},
		{"sensor s2", sensor.ReadingQuery{SensorID: "s2", Limit: 100}, stored[7:]},
		{"unknown sensor", sensor.ReadingQuery{SensorID: "nope", Limit: 100}, nil},
		{"type of s1", sensor.ReadingQuery{SensorID: "s1", Type: "temperature", Limit: 100}, []reading.Reading{stored[0], stored[3]}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rs, next, err := h.S.Readings(ctx(t), tc.q)
			if err != nil {
				t.Fatalf("Readings: %v", err)
			}
			if next != "" {
				t.Errorf("Readings: next = %q on the only page", next)
			}
			checkReadings(t, "Readings", rs, tc.want)
		})
	}

	t.Run("millisecond precision", func(t *testing.T) {
		ts := at(time.Hour).Add(1234567 * time.Nanosecond)
		out := h.ingest(batch("b2", at(2*time.Hour), rd("s3", "r1", "noise", 42, "dB", ts)))
		want := rd("s3", "r1", "noise", 42, "dB", ts.Truncate(time.Millisecond))
		checkEvent(t, "Ingest", out.Pending, "b2", "", []reading.Reading{want})
		rs, _, err := h.S.Readings(ctx(t), sensor.ReadingQuery{SensorID: "s3", Limit: 10})
		if err != nil {
			t.Fatalf("Readings: %v", err)
		}
		checkReadings(t, "Readings", rs, []reading.Reading{want})
	})

	t.Run("ping", func(t *testing.T) {
		if err := h.S.Ping(ctx(t)); err != nil {
			t.Errorf("Ping: %v", err)
		}
	})
}

func testDuplicates(t *testing.T, h *harness) {
	first := rd("s1", "r1", "temperature", 20, "Cel", at(0))
	tests := []struct {
		name     string
		in       []reading.Reading
		stored   []reading.Reading
		accepted int
		dups     int
	}{
		{
			name: "within a batch",
			in: []reading.Reading{
				first,
				rd("s1", "r1", "temperature", 99, "Cel", at(0)),                    // same identity
				rd("s1", "r1", "humidity", 50, "%RH", at(0)),                       // same instant, other type
				rd("s2", "r1", "temperature", 20, "Cel", at(0)),                    // other sensor
				rd("s1", "r1", "temperature", 98, "Cel", at(500*time.Microsecond)), // same millisecond
			},
			stored: []reading.Reading{
				first,
				rd("s1", "r1", "humidity", 50, "%RH", at(0)),
				rd("s2", "r1", "temperature", 20, "Cel", at(0)),
			},
			accepted: 3, dups: 2,
		},
		{
			name: "across batches",
			in: []reading.Reading{
				rd("s1", "r1", "temperature", 50, "Cel", at(0)),
				rd("s1", "r1", "temperature", 21, "Cel", at(time.Second)),
			},
			stored:   []reading.Reading{rd("s1", "r1", "temperature", 21, "Cel", at(time.Second))},
			accepted: 1, dups: 1,
		},
		{
			name: "only duplicates",
			in: []reading.Reading{
				rd("s1", "r1", "temperature", 1, "Cel", at(0)),
				rd("s2", "r1", "temperature", 2, "Cel", at(0)),
			},
			accepted: 0, dups: 2,
		},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			id := fmt.Sprintf("d%d", i)
			out := h.ingest(batch(id, at(time.Minute), tc.in...))
			checkResult(t, "Ingest", out.Result, sensor.Result{BatchID: id, Accepted: tc.accepted, Duplicates: tc.dups})
			if tc.accepted == 0 {
				if out.Pending != nil {
					t.Errorf("Ingest stored nothing but has a pending event: %s", out.Pending.Body)
				}
				return
			}
			checkEvent(t, "Ingest", out.Pending, id, "", tc.stored)
		})
	}
	got := h.all(sensor.ReadingQuery{SensorID: "s1", Type: "temperature", Limit: 10})
	checkReadings(t, "s1 temperatures (the first value of an identity is kept)", got, []reading.Reading{
		first, rd("s1", "r1", "temperature", 21, "Cel", at(time.Second)),
	})
}

// testConcurrentOverlapping sends, from several goroutines, many batches that
// repeat the same identities: each identity is stored by exactly one of them.
func testConcurrentOverlapping(t *testing.T, h *harness) {
	const workers, perWorker, identities = 8, 4, 40
	var rs []reading.Reading
	for i := range identities {
		rs = append(rs, rd(fmt.Sprintf("s%d", i%4), "r1", "temperature", float64(i), "Cel", at(time.Duration(i)*time.Second)))
	}
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		accepted int
		dups     int
		errs     []error
	)
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range perWorker {
				// Each batch sends the identities in its own order.
				off := (w*perWorker + j) % identities
				mine := slices.Concat(rs[off:], rs[:off])
				out, err := h.S.Ingest(ctx(t), batch(fmt.Sprintf("w%d-%d", w, j), at(time.Hour), mine...))
				mu.Lock()
				if err != nil {
					errs = append(errs, err)
				}
				accepted += out.Result.Accepted
				dups += out.Result.Duplicates
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if len(errs) > 0 {
		t.Fatalf("Ingest: %v", errs)
	}
	if accepted != identities || dups != workers*perWorker*identities-identities {
		t.Errorf("accepted %d, duplicates %d; want %d and %d", accepted, dups, identities, workers*perWorker*identities-identities)
	}
	n := 0
	for s := range 4 {
		n += len(h.all(sensor.ReadingQuery{SensorID: fmt.Sprintf("s%d", s), Limit: 1000}))
	}
	if n != identities {
		t.Errorf("%d readings stored, want %d", n, identities)
	}
}

func testReplay(t *testing.T, h *harness) {
	orig := batch("b1", at(time.Minute),
		rd("s1", "r1", "temperature", 21, "Cel", at(0)),
		rd("s1", "r1", "temperature", 21, "Cel", at(0)))
	orig.Rejected = []sensor.Rejection{{Index: 2, Reason: "type: is required"}}
	orig.Fingerprint = "fp-1"
	first := h.ingest(orig)
	before, err := h.S.Sensor(ctx(t), "s1")
	if err != nil {
		t.Fatalf("Sensor: %v", err)
	}

	// The same id and fingerprint, later: nothing of it is stored. The store
	// goes by the fingerprint, which the service computes from the request, so
	// other readings here prove that nothing of a resend is looked at.
	resent := batch("b1", at(time.Hour),
		rd("s1", "r9", "temperature", 30, "Cel", at(time.Second)),
		rd("s7", "r9", "co2", 900, "ppm", at(time.Second)))
	resent.Fingerprint = "fp-1"
	check := func(t *testing.T, pending bool) {
		t.Helper()
		out := h.replay(t, "replay", resent, first.Result)
		if !pending {
			if out.Pending != nil {
				t.Errorf("replay after AckEvent: pending event %s", out.Pending.Body)
			}
		} else {
			checkEvent(t, "replay", out.Pending, "b1", "", orig.Readings[:1])
		}
		checkReadings(t, "s1 readings", h.all(sensor.ReadingQuery{SensorID: "s1", Limit: 10}), orig.Readings[:1])
		checkReadings(t, "s7 readings", h.all(sensor.ReadingQuery{SensorID: "s7", Limit: 10}), nil)
		h.checkSensor(t, "registry after a replay", "s1", before)
		if _, err := h.S.Sensor(ctx(t), "s7"); !isErr(err, sensor.ErrNotFound) {
			t.Errorf("Sensor(s7) of a replayed batch: err = %v, want ErrNotFound", err)
		}
	}
	checkResult(t, "first", first.Result, sensor.Result{BatchID: "b1", Accepted: 1, Duplicates: 1, Rejected: orig.Rejected})
	t.Run("pending", func(t *testing.T) { check(t, true) })
	if err := h.S.AckEvent(ctx(t), "b1"); err != nil {
		t.Fatalf("AckEvent: %v", err)
	}
	t.Run("acknowledged", func(t *testing.T) { check(t, false) })
}

// ingestAtOnce has callers ingest at the same moment, caller i the batch
// b(i), and returns what each got.
func ingestAtOnce(t *testing.T, h *harness, callers int, b func(i int) sensor.Batch) ([]sensor.Outcome, []error) {
	outs := make([]sensor.Outcome, callers)
	errs := make([]error, callers)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range callers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			outs[i], errs[i] = h.S.Ingest(ctx(t), b(i))
		}()
	}
	close(start)
	wg.Wait()
	return outs, errs
}

func testConcurrentSameID(t *testing.T, h *harness) {
	const callers = 8
	var rs []reading.Reading
	for i := range 50 {
		rs = append(rs, rd("s1", "r1", "co2", float64(400+i), "ppm", at(time.Duration(i)*time.Second)))
	}
	b := batch("same", at(time.Hour), rs...)
	outs, errs := ingestAtOnce(t, h, callers, func(int) sensor.Batch { return b })
	fresh := 0
	for i := range callers {
		if errs[i] != nil {
			t.Fatalf("caller %d: Ingest: %v", i, errs[i])
		}
		if !outs[i].Replayed {
			fresh++
		}
		checkResult(t, fmt.Sprintf("caller %d", i), outs[i].Result, sensor.Result{BatchID: "same", Accepted: len(rs)})
		checkEvent(t, fmt.Sprintf("caller %d", i), outs[i].Pending, "same", "", rs)
	}
	if fresh != 1 {
		t.Errorf("%d callers stored the batch (Replayed false), want 1", fresh)
	}
	checkReadings(t, "stored", h.all(sensor.ReadingQuery{SensorID: "s1", Limit: 1000}), rs)
	evs, err := h.S.PendingEvents(ctx(t), 100)
	if err != nil {
		t.Fatalf("PendingEvents: %v", err)
	}
	if len(evs) != 1 || evs[0].BatchID != "same" {
		t.Errorf("PendingEvents = %d events, want the one of batch same", len(evs))
	}
}

func testRoomFromRegistry(t *testing.T, h *harness) {
	tests := []struct {
		name     string
		in       []reading.Reading
		stored   []reading.Reading
		registry string // s1's room afterwards
	}{
		{
			name:     "registers the room",
			in:       []reading.Reading{rd("s1", "r1", "temperature", 20, "Cel", at(0))},
			stored:   []reading.Reading{rd("s1", "r1", "temperature", 20, "Cel", at(0))},
			registry: "r1",
		},
		{
			name:     "empty room takes the registered one",
			in:       []reading.Reading{rd("s1", "", "temperature", 21, "Cel", at(time.Minute))},
			stored:   []reading.Reading{rd("s1", "r1", "temperature", 21, "Cel", at(time.Minute))},
			registry: "r1",
		},
		{
			name: "a move earlier in the batch counts",
			in: []reading.Reading{
				rd("s1", "r2", "temperature", 22, "Cel", at(2*time.Minute)),
				rd("s1", "", "temperature", 23, "Cel", at(3*time.Minute)),
			},
			stored: []reading.Reading{
				rd("s1", "r2", "temperature", 22, "Cel", at(2*time.Minute)),
				rd("s1", "r2", "temperature", 23, "Cel", at(3*time.Minute)),
			},
			registry: "r2",
		},
		{
			name:     "an old reading takes the current room",
			in:       []reading.Reading{rd("s1", "", "temperature", 19, "Cel", at(-time.Hour))},
			stored:   []reading.Reading{rd("s1", "r2", "temperature", 19, "Cel", at(-time.Hour))},
			registry: "r2",
		},
		{
			name:     "unknown sensor keeps no room",
			in:       []reading.Reading{rd("s9", "", "temperature", 18, "Cel", at(0))},
			stored:   []reading.Reading{rd("s9", "", "temperature", 18, "Cel", at(0))},
			registry: "r2",
		},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			id := fmt.Sprintf("b%d", i)
			out := h.ingest(batch(id, at(time.Hour), tc.in...))
			checkEvent(t, "Ingest", out.Pending, id, "", tc.stored)
			got := h.all(sensor.ReadingQuery{SensorID: tc.in[0].SensorID, From: tc.in[0].Timestamp, Limit: 10})
			got = got[:min(len(got), len(tc.stored))]
			checkReadings(t, "Readings", got, tc.stored)
			s, err := h.S.Sensor(ctx(t), "s1")
			if err != nil {
				t.Fatalf("Sensor: %v", err)
			}
			if s.RoomID != tc.registry {
				t.Errorf("registry room of s1 = %q, want %q", s.RoomID, tc.registry)
			}
		})
	}
	s, err := h.S.Sensor(ctx(t), "s9")
	if err != nil {
		t.Fatalf("Sensor(s9): %v", err)
	}
	if s.RoomID != "" {
		t.Errorf("registry room of s9 = %q, want none", s.RoomID)
	}
}

func testRegistry(t *testing.T, h *harness) {
	t1, t2, t3 := at(10*time.Minute), at(20*time.Minute), at(30*time.Minute)
	b1 := batch("b1", t1,
		rd("s1", "r1", "temperature", 21, "Cel", at(0)),
		rd("s1", "r1", "humidity", 40, "%RH", at(0)))
	b1.Site = "hq"
	h.ingest(b1)
	h.ingest(batch("b2", t2,
		rd("s1", "", "temperature", 22, "Cel", at(5*time.Minute)),
		rd("s1", "", "co2", 500, "ppm", at(5*time.Minute)),
		rd("s2", "r2", "temperature", 1, "Cel", at(9*time.Minute)), // newest first:
		rd("s2", "r2", "temperature", 2, "Cel", at(8*time.Minute)), // the last value is by time, not order
	))
	h.ingest(batch("b3", t3, rd("s1", "", "temperature", 19, "Cel", at(-time.Hour)))) // older: not the last value

	tests := []struct {
		id   string
		want sensor.Sensor
	}{
		{"s1", sensor.Sensor{
			ID: "s1", RoomID: "r1", Site: "hq", FirstSeen: t1, LastSeen: t3,
			Types: []string{"co2", "humidity", "temperature"},
			LastValues: map[string]sensor.LastValue{
				"temperature": {Value: 22, Unit: "Cel", Timestamp: at(5 * time.Minute)},
				"humidity":    {Value: 40, Unit: "%RH", Timestamp: at(0)},
				"co2":         {Value: 500, Unit: "ppm", Timestamp: at(5 * time.Minute)},
			},
		}},
		{"s2", sensor.Sensor{
			ID: "s2", RoomID: "r2", FirstSeen: t2, LastSeen: t2, Types: []string{"temperature"},
			LastValues: map[string]sensor.LastValue{"temperature": {Value: 1, Unit: "Cel", Timestamp: at(9 * time.Minute)}},
		}},
	}
	for _, tc := range tests {
		t.Run(tc.id, func(t *testing.T) {
			h.checkSensor(t, "registry", tc.id, tc.want)
		})
	}
	t.Run("not found", func(t *testing.T) {
		if _, err := h.S.Sensor(ctx(t), "nope"); !isErr(err, sensor.ErrNotFound) {
			t.Errorf("Sensor(nope): err = %v, want ErrNotFound", err)
		}
	})
}

func testOutbox(t *testing.T, h *harness) {
	r := func(i int) reading.Reading {
		return rd("s1", "r1", "temperature", float64(i), "Cel", at(time.Duration(i)*time.Minute))
	}
	batches := []struct {
		b       sensor.Batch
		pending bool
	}{
		{batch("e1", at(time.Hour), r(1), r(2)), true},
		{batch("e2", at(time.Hour), r(3)), true},
		{batch("e3", at(time.Hour), r(1)), false}, // only a duplicate
		{sensor.Batch{ID: "e4", ReceivedAt: at(time.Hour), Rejected: []sensor.Rejection{{Index: 0, Reason: "bad"}}}, false},
		{batch("e5", at(time.Hour), r(4)), true},
	}
	bodies := map[string][]byte{}
	for _, tc := range batches {
		out := h.ingest(tc.b)
		if tc.pending {
			checkEvent(t, tc.b.ID, out.Pending, tc.b.ID, "", tc.b.Readings)
			if out.Pending != nil {
				bodies[tc.b.ID] = out.Pending.Body
			}
		} else if out.Pending != nil {
			t.Errorf("%s stored nothing but has a pending event", tc.b.ID)
		}
	}
	pending := func(t *testing.T, limit int, want ...string) {
		t.Helper()
		evs, err := h.S.PendingEvents(ctx(t), limit)
		if err != nil {
			t.Fatalf("PendingEvents: %v", err)
		}
		var ids []string
		for _, ev := range evs {
			ids = append(ids, ev.BatchID)
			if string(ev.Body) != string(bodies[ev.BatchID]) {
				t.Errorf("PendingEvents: body of %s = %s, want %s", ev.BatchID, ev.Body, bodies[ev.BatchID])
			}
		}
		if !slices.Equal(ids, want) {
			t.Errorf("PendingEvents(%d) = %q, want %q", limit, ids, want)
		}
	}
	t.Run("oldest first", func(t *testing.T) { pending(t, 10, "e1", "e2", "e5") })
	t.Run("limit", func(t *testing.T) { pending(t, 2, "e1", "e2") })
	t.Run("ack", func(t *testing.T) {
		if err := h.S.AckEvent(ctx(t), "e2"); err != nil {
			t.Fatalf("AckEvent: %v", err)
		}
		pending(t, 10, "e1", "e5")
		if err := h.S.AckEvent(ctx(t), "e2"); err != nil {
			t.Errorf("AckEvent again: %v", err)
		}
		if err := h.S.AckEvent(ctx(t), "never-seen"); err != nil {
			t.Errorf("AckEvent of an unknown batch: %v", err)
		}
		pending(t, 10, "e1", "e5")
	})
	t.Run("replay", func(t *testing.T) {
		for _, tc := range []struct {
			id      string
			pending bool
		}{{"e1", true}, {"e2", false}, {"e3", false}, {"e4", false}} {
			out := h.ingest(sensor.Batch{ID: tc.id, ReceivedAt: at(2 * time.Hour)})
			if !out.Replayed {
				t.Errorf("%s: Replayed = false", tc.id)
			}
			if (out.Pending != nil) != tc.pending {
				t.Errorf("%s: Pending = %v, want pending %v", tc.id, out.Pending, tc.pending)
			}
			if tc.id == "e4" {
				checkResult(t, "e4", out.Result, sensor.Result{BatchID: "e4", Rejected: []sensor.Rejection{{Index: 0, Reason: "bad"}}})
			}
		}
	})
}

// pagingData stores 3 types at each of 17 instants for s1 (51 readings, several
// per millisecond so the type breaks ties) and a few readings of s2 between them.
func pagingData(h *harness) []reading.Reading {
	var s1, all []reading.Reading
	for i := range 17 {
		ts := at(time.Duration(i) * time.Minute)
		for _, typ := range []string{"co2", "humidity", "temperature"} {
			s1 = append(s1, rd("s1", "r1", typ, float64(i), "", ts))
		}
		all = append(all, rd("s2", "r1", "co2", float64(i), "", ts))
	}
	// Sent newest first, in two batches, so storage order is not the answer order.
	rev := slices.Clone(s1)
	slices.Reverse(rev)
	all = append(all, rev...)
	h.ingest(batch("p1", at(time.Hour), all[:30]...))
	h.ingest(batch("p2", at(time.Hour), all[30:]...))
	return s1
}

func reversed(rs []reading.Reading) []reading.Reading {
	out := slices.Clone(rs)
	slices.Reverse(out)
	return out
}

func testReadingsPagination(t *testing.T, h *harness) {
	s1 := pagingData(h)
	for _, desc := range []bool{false, true} {
		for _, limit := range []int{1, 2, 7, 17, 50, 51, 52, 1000} {
			t.Run(fmt.Sprintf("desc=%v/limit=%d", desc, limit), func(t *testing.T) {
				want := s1
				if desc {
					want = reversed(s1)
				}
				got := h.all(sensor.ReadingQuery{SensorID: "s1", Desc: desc, Limit: limit})
				checkReadings(t, "all pages", got, want)
			})
		}
	}
}

func testReadingsBounds(t *testing.T, h *harness) {
	s1 := pagingData(h)
	filter := func(from, to time.Time, typ string) []reading.Reading {
		var out []reading.Reading
		for _, r := range s1 {
			if (from.IsZero() || !r.Timestamp.Before(from)) && (to.IsZero() || r.Timestamp.Before(to)) && (typ == "" || r.Type == typ) {
				out = append(out, r)
			}
		}
		return out
	}
	tests := []struct {
		name     string
		from, to time.Time
		typ      string
	}{
		{"from inclusive", at(3 * time.Minute), time.Time{}, ""},
		{"to exclusive", time.Time{}, at(9 * time.Minute), ""},
		{"from and to", at(3 * time.Minute), at(9 * time.Minute), ""},
		{"between readings", at(3*time.Minute + time.Second), at(9*time.Minute - time.Second), ""},
		{"sub-millisecond bounds", at(3*time.Minute + time.Microsecond), at(9*time.Minute + time.Microsecond), ""},
		{"empty range", at(9 * time.Minute), at(9 * time.Minute), ""},
		{"type", time.Time{}, time.Time{}, "humidity"},
		{"type and range", at(3 * time.Minute), at(9 * time.Minute), "temperature"},
		{"unknown type", time.Time{}, time.Time{}, "voc"},
	}
	for _, tc := range tests {
		want := filter(tc.from, tc.to, tc.typ)
		for _, desc := range []bool{false, true} {
			for _, limit := range []int{2, 5, 1000} {
				t.Run(fmt.Sprintf("%s/desc=%v/limit=%d", tc.name, desc, limit), func(t *testing.T) {
					w := want
					if desc {
						w = reversed(want)
					}
					got := h.all(sensor.ReadingQuery{SensorID: "s1", Type: tc.typ, From: tc.from, To: tc.to, Desc: desc, Limit: limit})
					checkReadings(t, "all pages", got, w)
				})
			}
		}
	}
}

func testReadingsDefaultLimit(t *testing.T, h *harness) {
	var rs []reading.Reading
	for i := range 150 {
		rs = append(rs, rd("s1", "r1", "co2", float64(i), "ppm", at(time.Duration(i)*time.Second)))
	}
	h.ingest(batch("b1", at(time.Hour), rs...))
	got, next, err := h.S.Readings(ctx(t), sensor.ReadingQuery{SensorID: "s1"})
	if err != nil {
		t.Fatalf("Readings: %v", err)
	}
	if next == "" {
		t.Error("Readings with no limit: no cursor after the first page")
	}
	checkReadings(t, "first page with no limit (100)", got, rs[:100])
}

func testBadCursor(t *testing.T, h *harness) {
	h.ingest(batch("b1", at(time.Hour), rd("s1", "r1", "co2", 1, "ppm", at(0)), rd("s1", "r1", "co2", 2, "ppm", at(time.Second))))
	for _, c := range []string{"!!!", "bm90IGpzb24", "%%%", "eyJ9", "abc"} {
		t.Run(c, func(t *testing.T) {
			if _, _, err := h.S.Readings(ctx(t), sensor.ReadingQuery{SensorID: "s1", Limit: 1, Cursor: c}); !isErr(err, sensor.ErrBadCursor) {
				t.Errorf("Readings with cursor %q: err = %v, want ErrBadCursor", c, err)
			}
			if _, _, err := h.S.Sensors(ctx(t), sensor.SensorQuery{Limit: 1, Cursor: c}); !isErr(err, sensor.ErrBadCursor) {
				t.Errorf("Sensors with cursor %q: err = %v, want ErrBadCursor", c, err)
			}
		})
	}
}

func testSensors(t *testing.T, h *harness) {
	online, old := at(time.Hour), at(0)
	type spec struct {
		id, room string
		types    []string
		seen     time.Time
	}
	specs := []spec{
		{"s07", "r1", []string{"co2"}, old},
		{"s01", "r1", []string{"temperature", "humidity"}, online},
		{"s03", "r2", []string{"co2"}, old},
		{"s02", "r1", []string{"temperature"}, online},
		{"s05", "", []string{"temperature"}, online},
		{"s04", "r2", []string{"temperature"}, old},
		{"s06", "r3", []string{"humidity"}, old},
	}
	units := map[string]string{"temperature": "Cel", "humidity": "%RH", "co2": "ppm"}
	for i, sp := range specs {
		var rs []reading.Reading
		for _, typ := range sp.types {
			rs = append(rs, rd(sp.id, sp.room, typ, 1, units[typ], sp.seen.Add(-time.Minute)))
		}
		h.ingest(batch(fmt.Sprintf("b%d", i), sp.seen, rs...))
	}
	since := at(30 * time.Minute)
	tests := []struct {
		name string
		q    sensor.SensorQuery
		want []string
	}{
		{"all", sensor.SensorQuery{}, []string{"s01", "s02", "s03", "s04", "s05", "s06", "s07"}},
		{"room", sensor.SensorQuery{RoomID: "r1"}, []string{"s01", "s02", "s07"}},
		{"unknown room", sensor.SensorQuery{RoomID: "r9"}, []string{}},
		{"type", sensor.SensorQuery{Type: "temperature"}, []string{"s01", "s02", "s04", "s05"}},
		{"online", sensor.SensorQuery{Status: sensor.StatusOnline, OnlineSince: since}, []string{"s01", "s02", "s05"}},
		{"online at the bound", sensor.SensorQuery{Status: sensor.StatusOnline, OnlineSince: online}, []string{"s01", "s02", "s05"}},
		{"offline", sensor.SensorQuery{Status: sensor.StatusOffline, OnlineSince: since}, []string{"s03", "s04", "s06", "s07"}},
		{"room and type", sensor.SensorQuery{RoomID: "r1", Type: "co2"}, []string{"s07"}},
		{"room and online", sensor.SensorQuery{RoomID: "r1", Status: sensor.StatusOnline, OnlineSince: since}, []string{"s01", "s02"}},
		{"type and offline", sensor.SensorQuery{Type: "temperature", Status: sensor.StatusOffline, OnlineSince: since}, []string{"s04"}},
	}
	for _, tc := range tests {
		for _, limit := range []int{0, 1, 2, 3, 7} {
			t.Run(fmt.Sprintf("%s/limit=%d", tc.name, limit), func(t *testing.T) {
				q := tc.q
				q.Limit = limit
				if got := h.sensorIDs(q); !slices.Equal(got, tc.want) {
					t.Errorf("Sensors(%+v) = %q, want %q", q, got, tc.want)
				}
			})
		}
	}
	t.Run("entry", func(t *testing.T) {
		ss, _, err := h.S.Sensors(ctx(t), sensor.SensorQuery{RoomID: "r1", Type: "humidity"})
		if err != nil {
			t.Fatalf("Sensors: %v", err)
		}
		want := sensor.Sensor{ID: "s01", RoomID: "r1", FirstSeen: online, LastSeen: online,
			Types: []string{"humidity", "temperature"},
			LastValues: map[string]sensor.LastValue{
				"humidity":    {Value: 1, Unit: "%RH", Timestamp: online.Add(-time.Minute)},
				"temperature": {Value: 1, Unit: "Cel", Timestamp: online.Add(-time.Minute)},
			}}
		if len(ss) != 1 {
			t.Fatalf("Sensors = %d entries, want 1", len(ss))
		}
		if d := diffSensor(ss[0], want); d != "" {
			t.Error(d)
		}
	})
}

func testReopen(t *testing.T, h *harness) {
	rs := []reading.Reading{
		rd("s1", "r1", "temperature", 21.5, "Cel", at(0)),
		rd("s1", "r1", "humidity", math.Pi, "%RH", at(0)),
	}
	b1 := batch("b1", at(time.Minute), rs...)
	b1.Site = "hq"
	first := h.ingest(b1)
	h.ingest(batch("b2", at(2*time.Minute), rd("s1", "", "temperature", 22, "Cel", at(time.Minute))))
	if err := h.S.AckEvent(ctx(t), "b2"); err != nil {
		t.Fatalf("AckEvent: %v", err)
	}
	before, err := h.S.Sensor(ctx(t), "s1")
	if err != nil {
		t.Fatalf("Sensor: %v", err)
	}
	wantReadings := h.all(sensor.ReadingQuery{SensorID: "s1", Limit: 1000})
	if len(wantReadings) != 3 {
		t.Fatalf("before reopening: %d readings, want 3", len(wantReadings))
	}
	if err := h.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	h.Reopen()

	checkReadings(t, "readings after reopening", h.all(sensor.ReadingQuery{SensorID: "s1", Limit: 1000}), wantReadings)
	h.checkSensor(t, "registry after reopening", "s1", before)
	out := h.replay(t, "b1 after reopening", b1, first.Result)
	checkEvent(t, "b1 after reopening", out.Pending, "b1", "hq", withSite("hq", rs...))
	evs, err := h.S.PendingEvents(ctx(t), 10)
	if err != nil {
		t.Fatalf("PendingEvents: %v", err)
	}
	if len(evs) != 1 || evs[0].BatchID != "b1" {
		t.Errorf("PendingEvents after reopening: %d events, want b1 only", len(evs))
	}
	out = h.ingest(batch("b3", at(3*time.Minute), rd("s1", "", "temperature", 23, "Cel", at(2*time.Minute))))
	if out.Result.Accepted != 1 || out.Replayed {
		t.Errorf("new batch after reopening: %+v", out)
	}
}

func testClosed(t *testing.T, h *harness) {
	h.ingest(batch("b1", at(time.Minute), rd("s1", "r1", "co2", 1, "ppm", at(0))))
	if err := h.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	calls := map[string]func() error{
		"Ping": func() error { return h.S.Ping(ctx(t)) },
		"Ingest": func() error {
			_, err := h.S.Ingest(ctx(t), batch("b2", at(time.Minute), rd("s1", "r1", "co2", 2, "ppm", at(time.Second))))
			return err
		},
		"Readings": func() error {
			_, _, err := h.S.Readings(ctx(t), sensor.ReadingQuery{SensorID: "s1"})
			return err
		},
		"Sensor": func() error {
			_, err := h.S.Sensor(ctx(t), "s1")
			return err
		},
	}
	names := make([]string, 0, len(calls))
	for n := range calls {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		t.Run(n, func(t *testing.T) {
			if err := calls[n](); !isErr(err, sensor.ErrUnavailable) {
				t.Errorf("%s on a closed store: err = %v, want ErrUnavailable", n, err)
			}
		})
	}
}
