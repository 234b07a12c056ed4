package storetest

import (
	"fmt"
	"testing"
	"time"

	"github.com/atrium-iot/atrium/internal/reading"
	"github.com/atrium-iot/atrium/services/sensor"
)

// from is a batch of principal with fingerprint fp.
func from(principal, fp string, b sensor.Batch) sensor.Batch {
	b.Principal, b.Fingerprint = principal, fp
	return b
}

// pendingKeys lists the batch keys of the outbox, oldest first.
func (h *harness) pendingKeys() []string {
	h.T.Helper()
	evs, err := h.S.PendingEvents(h.T.Context(), 1000)
	if err != nil {
		h.T.Fatalf("PendingEvents: %v", err)
	}
	keys := []string{}
	for _, ev := range evs {
		keys = append(keys, ev.BatchID)
	}
	return keys
}

// testFingerprintConflict: one caller, one batch id, another fingerprint. The
// second batch is refused with ErrBatchConflict and changes nothing; the first
// request, resent, still gets its first answer, also once its event is
// acknowledged and after the store is reopened.
func testFingerprintConflict(t *testing.T, h *harness) {
	const p = "key:agent-hq"
	orig := from(p, "fp-a", batch("b1", at(time.Minute),
		rd("s1", "r1", "temperature", 21, "Cel", at(0)),
		rd("s1", "r1", "temperature", 22, "Cel", at(time.Second))))
	orig.Rejected = []sensor.Rejection{{Index: 2, Reason: "value: is required"}}
	first := h.ingest(orig)
	key := sensor.BatchKey(p, "b1")
	checkResult(t, "first", first.Result, sensor.Result{BatchID: "b1", Accepted: 2, Rejected: orig.Rejected})
	checkEvent(t, "first", first.Pending, key, "", orig.Readings)
	before, err := h.S.Sensor(ctx(t), "s1")
	if err != nil {
		t.Fatalf("Sensor: %v", err)
	}

	// Empty, or other readings: what a poisoner or a buggy client sends.
	other := []sensor.Batch{
		from(p, "fp-empty", batch("b1", at(time.Hour))),
		from(p, "fp-b", batch("b1", at(time.Hour),
			rd("s1", "r9", "temperature", 30, "Cel", at(time.Hour)),
			rd("s7", "r9", "co2", 900, "ppm", at(time.Hour)))),
		from(p, "", batch("b1", at(time.Hour), rd("s7", "r9", "co2", 901, "ppm", at(time.Hour)))),
	}
	check := func(t *testing.T, pending bool) {
		t.Helper()
		for i, b := range other {
			out, err := h.S.Ingest(ctx(t), b)
			if !isErr(err, sensor.ErrBatchConflict) {
				t.Errorf("batch %d, same id, fingerprint %q: err = %v (outcome %+v), want ErrBatchConflict", i, b.Fingerprint, err, out)
			}
		}
		checkReadings(t, "s1 readings", h.all(sensor.ReadingQuery{SensorID: "s1", Limit: 10}), orig.Readings)
		checkReadings(t, "s7 readings", h.all(sensor.ReadingQuery{SensorID: "s7", Limit: 10}), nil)
		if _, err := h.S.Sensor(ctx(t), "s7"); !isErr(err, sensor.ErrNotFound) {
			t.Errorf("Sensor(s7) of a refused batch: err = %v, want ErrNotFound", err)
		}
		h.checkSensor(t, "registry after a refused batch", "s1", before)
		out := h.replay(t, "the first request resent", orig, first.Result)
		if pending {
			checkEvent(t, "the first request resent", out.Pending, key, "", orig.Readings)
		} else if out.Pending != nil {
			t.Errorf("the first request resent after AckEvent: pending event %s", out.Pending.Body)
		}
	}
	t.Run("pending", func(t *testing.T) {
		check(t, true)
		if got := h.pendingKeys(); len(got) != 1 || got[0] != key {
			t.Errorf("outbox %q, want only %q", got, key)
		}
	})
	if err := h.S.AckEvent(ctx(t), key); err != nil {
		t.Fatalf("AckEvent: %v", err)
	}
	t.Run("acknowledged", func(t *testing.T) { check(t, false) })
	if err := h.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	h.Reopen()
	t.Run("reopened", func(t *testing.T) { check(t, false) })
}

// testPrincipals: the same batch id from different callers names different
// batches: each is stored, answered, replayed and refused on its own, and their
// events have distinct batch ids (the keys).
func testPrincipals(t *testing.T, h *harness) {
	r := func(s string, v float64) reading.Reading { return rd(s, "r1", "co2", v, "ppm", at(0)) }
	type call struct {
		principal, id string
		rs            []reading.Reading
	}
	calls := []call{
		{"key:agent-hq", "b-1", []reading.Reading{r("hq-1", 500), r("hq-2", 510)}},
		{"key:intruder", "b-1", nil}, // an empty batch under the same id
		{sensor.DirectPrincipal, "b-1", []reading.Reading{r("direct-1", 520)}},
		// Keys are unambiguous when names and ids hold the separator.
		{"key:a/b", "c", []reading.Reading{r("ab-1", 530)}},
		{"key:a", "b/c", []reading.Reading{r("a-1", 540)}},
	}
	keys := map[string]bool{}
	var pending []string
	for _, c := range calls {
		b := from(c.principal, "fp-"+c.principal, batch(c.id, at(time.Minute), c.rs...))
		key := b.Key()
		if keys[key] {
			t.Fatalf("BatchKey(%q, %q) = %q, the key of another call", c.principal, c.id, key)
		}
		keys[key] = true
		out := h.ingest(b)
		if out.Replayed {
			t.Errorf("%s %s: Replayed = true, want a batch of its own", c.principal, c.id)
		}
		checkResult(t, c.principal+" "+c.id, out.Result, sensor.Result{BatchID: c.id, Accepted: len(c.rs)})
		if len(c.rs) > 0 {
			checkEvent(t, c.principal+" "+c.id, out.Pending, key, "", c.rs)
			pending = append(pending, key)
		} else if out.Pending != nil {
			t.Errorf("%s %s stored nothing but has a pending event", c.principal, c.id)
		}
	}
	for _, c := range calls {
		for _, rr := range c.rs {
			checkReadings(t, c.principal+" "+rr.SensorID, h.all(sensor.ReadingQuery{SensorID: rr.SensorID, Limit: 10}), []reading.Reading{rr})
		}
	}
	if got := h.pendingKeys(); fmt.Sprint(got) != fmt.Sprint(pending) {
		t.Errorf("outbox %q, want %q", got, pending)
	}

	// Each caller's resend gets its own first answer; another fingerprint under
	// one caller's id is refused without touching the others'.
	for _, c := range calls {
		h.replay(t, c.principal+" "+c.id+" resent", from(c.principal, "fp-"+c.principal, batch(c.id, at(time.Hour), c.rs...)),
			sensor.Result{BatchID: c.id, Accepted: len(c.rs)})
	}
	if _, err := h.S.Ingest(ctx(t), from("key:intruder", "fp-other", batch("b-1", at(time.Hour), r("x", 1)))); !isErr(err, sensor.ErrBatchConflict) {
		t.Errorf("intruder's own id with another fingerprint: err = %v, want ErrBatchConflict", err)
	}
	if err := h.S.AckEvent(ctx(t), sensor.BatchKey("key:agent-hq", "b-1")); err != nil {
		t.Fatalf("AckEvent: %v", err)
	}
	if got, want := h.pendingKeys(), pending[1:]; fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("outbox after acknowledging agent-hq's b-1: %q, want %q", got, want)
	}
}

// testConcurrentConflicting: callers send one key at once with two
// fingerprints. One request is stored; the callers with its fingerprint get its
// answer, the others ErrBatchConflict; nothing of the other batch is stored.
func testConcurrentConflicting(t *testing.T, h *harness) {
	const callers = 8
	mk := func(fp string, v float64, sensorID string) sensor.Batch {
		var rs []reading.Reading
		for i := range 20 {
			rs = append(rs, rd(sensorID, "r1", "co2", v+float64(i), "ppm", at(time.Duration(i)*time.Second)))
		}
		return from("key:k", fp, batch("same", at(time.Hour), rs...))
	}
	bs := [2]sensor.Batch{mk("fp-0", 400, "a"), mk("fp-1", 800, "b")}
	outs, errs := ingestAtOnce(t, h, callers, func(i int) sensor.Batch { return bs[i%2] })
	winner, fresh := -1, 0
	for i := range callers {
		if errs[i] == nil && !outs[i].Replayed {
			fresh++
			winner = i % 2
		}
	}
	if fresh != 1 {
		t.Fatalf("%d callers stored the batch (no error, Replayed false), want 1; errors %v", fresh, errs)
	}
	for i := range callers {
		if i%2 == winner {
			if errs[i] != nil {
				t.Errorf("caller %d, the stored fingerprint: %v", i, errs[i])
			}
			checkResult(t, fmt.Sprintf("caller %d", i), outs[i].Result, sensor.Result{BatchID: "same", Accepted: 20})
		} else if !isErr(errs[i], sensor.ErrBatchConflict) {
			t.Errorf("caller %d, the other fingerprint: err = %v, want ErrBatchConflict", i, errs[i])
		}
	}
	w, l := bs[winner], bs[1-winner]
	checkReadings(t, "stored", h.all(sensor.ReadingQuery{SensorID: w.Readings[0].SensorID, Limit: 100}), w.Readings)
	checkReadings(t, "refused", h.all(sensor.ReadingQuery{SensorID: l.Readings[0].SensorID, Limit: 100}), nil)
	if got := h.pendingKeys(); len(got) != 1 || got[0] != w.Key() {
		t.Errorf("outbox %q, want only %q", got, w.Key())
	}
}
