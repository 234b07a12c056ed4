// Package storetest is the contract every sensor.Store adapter must pass. An
// adapter's tests call Run with a function that opens its store; the suite then
// ingests, replays, pages through and reopens stores through the interface alone.
// RunRetention, with a function that opens a store with a retention and a clock,
// checks -retention and -rollup-retention (a store with them has a Prune method).
package storetest

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/atrium-iot/atrium/internal/reading"
	"github.com/atrium-iot/atrium/internal/storesuite"
	"github.com/atrium-iot/atrium/services/sensor"
)

// Opener opens the store called name, failing t if it cannot. Within one Run,
// the same name opens the same data again (Run closes a store and reopens it to
// check what survives), and different names are independent, empty stores; the
// adapter picks where they live (a file in a test's temporary directory, a
// database with a unique prefix). Run closes every store it opens.
type Opener = storesuite.Opener[sensor.Store]

// t0 is the suite's reference instant; every timestamp is relative to it.
var t0 = time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)

// Run runs the contract against the stores open returns.
func Run(t *testing.T, open Opener) {
	storesuite.Suite[sensor.Store, *harness]{
		Open:      open,
		StoreName: strings.ToLower,
		Harness:   newHarness,
		Cases: map[string]func(*testing.T, *harness){
			"IngestAndReadBack":            testIngestAndReadBack,
			"Duplicates":                   testDuplicates,
			"ConcurrentOverlappingBatches": testConcurrentOverlapping,
			"Replay":                       testReplay,
			"ConcurrentSameBatchID":        testConcurrentSameID,
			"FingerprintConflict":          testFingerprintConflict,
			"Principals":                   testPrincipals,
			"ConcurrentConflictingBatches": testConcurrentConflicting,
			"RoomFromRegistry":             testRoomFromRegistry,
			"Registry":                     testRegistry,
			"Outbox":                       testOutbox,
			"StatusMarks":                  testStatusMarks,
			"ReadingsPagination":           testReadingsPagination,
			"ReadingsBounds":               testReadingsBounds,
			"ReadingsDefaultLimit":         testReadingsDefaultLimit,
			"BadCursor":                    testBadCursor,
			"Sensors":                      testSensors,
			"Reopen":                       testReopen,
			"Closed":                       testClosed,
		},
	}.Run(t)
}

// harness holds the store of one subtest and the suite's helpers over it.
type harness struct {
	*storesuite.Harness[sensor.Store]
}

func newHarness(h *storesuite.Harness[sensor.Store]) *harness { return &harness{h} }

// harnessFor is a harness over s, a store the caller opened and closes.
func harnessFor(t *testing.T, s sensor.Store) *harness {
	return &harness{&storesuite.Harness[sensor.Store]{T: t, S: s}}
}

func (h *harness) ingest(b sensor.Batch) sensor.Outcome {
	h.T.Helper()
	out, err := h.S.Ingest(h.T.Context(), b)
	if err != nil {
		h.T.Fatalf("Ingest(%s): %v", b.ID, err)
	}
	return out
}

// replay resends b and fails t unless the store answers it as a replay of the
// batch's first answer, want; what names the call in the messages.
func (h *harness) replay(t *testing.T, what string, b sensor.Batch, want sensor.Result) sensor.Outcome {
	t.Helper()
	out := h.ingest(b)
	if !out.Replayed {
		t.Errorf("%s: Replayed = false", what)
	}
	checkResult(t, what, out.Result, want)
	return out
}

// checkSensor fails t unless the registry entry of sensor id is want; what
// names the moment in the messages.
func (h *harness) checkSensor(t *testing.T, what, id string, want sensor.Sensor) {
	t.Helper()
	got, err := h.S.Sensor(ctx(t), id)
	if err != nil {
		t.Fatalf("%s: Sensor(%s): %v", what, id, err)
	}
	if d := diffSensor(got, want); d != "" {
		t.Errorf("%s: Sensor(%s): %s", what, id, d)
	}
}

// all reads every page of q (storesuite.Pages checks the pages).
func (h *harness) all(q sensor.ReadingQuery) []reading.Reading {
	h.T.Helper()
	return storesuite.Pages(h.T, fmt.Sprintf("Readings(%+v)", q), q.Limit, func(cursor string) ([]reading.Reading, string, error) {
		q.Cursor = cursor
		return h.S.Readings(h.T.Context(), q)
	})
}

// sensorIDs reads every page of q and fails t unless each entry is what
// Sensor returns for its id.
func (h *harness) sensorIDs(q sensor.SensorQuery) []string {
	h.T.Helper()
	ss := storesuite.Pages(h.T, fmt.Sprintf("Sensors(%+v)", q), q.Limit, func(cursor string) ([]sensor.Sensor, string, error) {
		q.Cursor = cursor
		return h.S.Sensors(h.T.Context(), q)
	})
	ids := []string{}
	for _, s := range ss {
		h.checkSensor(h.T, fmt.Sprintf("Sensors(%+v) entry", q), s.ID, s)
		ids = append(ids, s.ID)
	}
	return ids
}

func rd(sensorID, room, typ string, value float64, unit string, ts time.Time) reading.Reading {
	return reading.Reading{SensorID: sensorID, RoomID: room, Type: typ, Value: value, Unit: unit, Timestamp: ts}
}

func at(d time.Duration) time.Time { return t0.Add(d) }

func batch(id string, received time.Time, rs ...reading.Reading) sensor.Batch {
	return sensor.Batch{ID: id, Readings: rs, ReceivedAt: received}
}

func sameReading(a, b reading.Reading) bool {
	return a.SensorID == b.SensorID && a.RoomID == b.RoomID && a.Site == b.Site && a.Type == b.Type &&
		a.Value == b.Value && a.Unit == b.Unit && a.Timestamp.Equal(b.Timestamp)
}

func fmtReading(r reading.Reading) string {
	return fmt.Sprintf("{%s room=%q site=%q %s=%v %q @%s}", r.SensorID, r.RoomID, r.Site, r.Type, r.Value, r.Unit, reading.FormatTime(r.Timestamp))
}

// checkReadings fails t unless got and want hold the same readings in the same order.
func checkReadings(t *testing.T, what string, got, want []reading.Reading) {
	t.Helper()
	ok := len(got) == len(want)
	for i := 0; ok && i < len(got); i++ {
		ok = sameReading(got[i], want[i])
	}
	if ok {
		return
	}
	var b strings.Builder
	for i := 0; i < max(len(got), len(want)); i++ {
		g, w := "-", "-"
		if i < len(got) {
			g = fmtReading(got[i])
		}
		if i < len(want) {
			w = fmtReading(want[i])
		}
		mark := " "
		if g != w {
			mark = "!"
		}
		fmt.Fprintf(&b, "\n%s %3d got  %s\n      want %s", mark, i, g, w)
	}
	t.Errorf("%s: got %d readings, want %d:%s", what, len(got), len(want), b.String())
}

func checkResult(t *testing.T, what string, got, want sensor.Result) {
	t.Helper()
	norm := func(r sensor.Result) sensor.Result {
		if r.Rejected == nil {
			r.Rejected = []sensor.Rejection{}
		}
		return r
	}
	if !reflect.DeepEqual(norm(got), norm(want)) {
		t.Errorf("%s: result %+v, want %+v", what, got, want)
	}
}

// checkEvent fails t unless ev is the outbox event of the readings stored by batch id.
func checkEvent(t *testing.T, what string, ev *sensor.Event, id, site string, stored []reading.Reading) {
	t.Helper()
	if ev == nil {
		t.Errorf("%s: no pending event, want one for %s", what, id)
		return
	}
	if ev.BatchID != id {
		t.Errorf("%s: event of batch %q, want %q", what, ev.BatchID, id)
	}
	if want := sensor.EventBody(id, site, stored); string(ev.Body) != string(want) {
		t.Errorf("%s: event body\n%s\nwant\n%s", what, ev.Body, want)
	}
}

func diffSensor(got, want sensor.Sensor) string {
	var d []string
	if got.ID != want.ID || got.RoomID != want.RoomID || got.Site != want.Site || got.Status != want.Status {
		d = append(d, fmt.Sprintf("id/room/site/status %q/%q/%q/%q, want %q/%q/%q/%q",
			got.ID, got.RoomID, got.Site, got.Status, want.ID, want.RoomID, want.Site, want.Status))
	}
	if !got.FirstSeen.Equal(want.FirstSeen) || !got.LastSeen.Equal(want.LastSeen) {
		d = append(d, fmt.Sprintf("first/last seen %s/%s, want %s/%s", reading.FormatTime(got.FirstSeen),
			reading.FormatTime(got.LastSeen), reading.FormatTime(want.FirstSeen), reading.FormatTime(want.LastSeen)))
	}
	if !slices.Equal(got.Types, want.Types) {
		d = append(d, fmt.Sprintf("types %q, want %q", got.Types, want.Types))
	}
	if len(got.LastValues) != len(want.LastValues) {
		d = append(d, fmt.Sprintf("last values %v, want %v", got.LastValues, want.LastValues))
	} else {
		for k, w := range want.LastValues {
			g, ok := got.LastValues[k]
			if !ok || g.Value != w.Value || g.Unit != w.Unit || !g.Timestamp.Equal(w.Timestamp) {
				d = append(d, fmt.Sprintf("last %s %+v, want %+v", k, g, w))
			}
		}
	}
	return strings.Join(d, "; ")
}

// withSite returns copies of rs whose empty site is site.
func withSite(site string, rs ...reading.Reading) []reading.Reading {
	out := make([]reading.Reading, len(rs))
	for i, r := range rs {
		if r.Site == "" {
			r.Site = site
		}
		out[i] = r
	}
	return out
}

func isErr(err, target error) bool { return err != nil && errors.Is(err, target) }

// ctx is a helper for the rare call that needs no harness.
func ctx(t *testing.T) context.Context { return t.Context() }
