// Package storetest is the contract every analytics.Store adapter must pass. An
// adapter's tests call Run with a function that opens its store; the suite then
// adds readings, replays recorded data and checks every aggregate against numbers
// computed here, independently of any engine, and prunes it as -retention does.
package storetest

import (
	"context"
	"fmt"
	"math"
	"testing"
	"time"

	"github.com/atrium-iot/atrium/internal/reading"
	"github.com/atrium-iot/atrium/internal/storesuite"
	"github.com/atrium-iot/atrium/services/analytics"
)

// Store is what an adapter provides: the service's Store, and the pruning that
// -retention and -rollup-retention run.
type Store interface {
	analytics.Store
	Pruner
}

// Opener opens the store called name, failing t if it cannot. Within one Run the
// same name opens the same data again (Run closes a store and reopens it to check
// what survives), and different names are independent, empty stores. Run closes
// every store it opens.
type Opener = storesuite.Opener[Store]

// t0 is the suite's reference instant (a whole hour); timestamps are relative to it.
var t0 = time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)

func at(d time.Duration) time.Time { return t0.Add(d) }

// Run runs the contract against the stores open returns.
func Run(t *testing.T, open Opener) {
	storesuite.Suite[Store, *harness]{
		Open:      open,
		StoreName: func(name string) string { return fmt.Sprintf("%s_%d", name, time.Now().UnixNano()%1e6) },
		Harness:   newHarness,
		Cases: map[string]func(*testing.T, *harness){
			"AddAndDedupe":       testAddAndDedupe,
			"ConcurrentAdds":     testConcurrentAdds,
			"CountsAndTypeStats": testCountsAndTypeStats,
			"LatestAndRooms":     testLatestAndRooms,
			"Series":             testSeries,
			"Extreme":            testExtreme,
			"RoomFigures":        testRoomFigures,
			"Alerts":             testAlerts,
			"SummaryFigures":     testSummaryFigures,
			"Reports":            testReports,
			"Reopen":             testReopen,
			"ReplayUCI":          testReplayUCI,
			"Retention":          testRetention,
			"HugeValues":         testHugeValues,
		},
	}.Run(t)
}

// harness holds the store of one subtest and the suite's helpers over it.
type harness struct{ *storesuite.Harness[Store] }

func newHarness(h *storesuite.Harness[Store]) *harness { return &harness{h} }

func (h *harness) add(rs ...reading.Reading) int {
	h.T.Helper()
	n, err := h.S.AddReadings(h.T.Context(), rs)
	if err != nil {
		h.T.Fatalf("AddReadings: %v", err)
	}
	return n
}

func rd(sensor, room, typ string, v float64, ts time.Time) reading.Reading {
	return reading.Reading{SensorID: sensor, RoomID: room, Type: typ, Value: v, Timestamp: ts}
}

// tol is the tolerance of float comparisons: engines sum in different orders.
const tol = 1e-9

func near(a, b float64) bool {
	if math.IsNaN(a) || math.IsNaN(b) {
		return math.IsNaN(a) && math.IsNaN(b)
	}
	return math.Abs(a-b) <= tol*math.Max(1, math.Max(math.Abs(a), math.Abs(b)))
}

// each runs a subtest per case c of cases, named name(c): it reads the
// store's answer to c with get, ending the subtest on an error, and hands it
// to check.
func each[C, T any](t *testing.T, cases []C, name func(C) string, get func(context.Context, C) (T, error), check func(t *testing.T, c C, got T)) {
	t.Helper()
	for _, c := range cases {
		t.Run(name(c), func(t *testing.T) {
			got, err := get(t.Context(), c)
			if err != nil {
				t.Fatal(err)
			}
			check(t, c, got)
		})
	}
}

func checkBuckets(t *testing.T, what string, got, want []analytics.Bucket) {
	t.Helper()
	ok := len(got) == len(want)
	for i := 0; ok && i < len(got); i++ {
		g, w := got[i], want[i]
		ok = g.Start.Equal(w.Start) && g.Count == w.Count && near(g.Mean, w.Mean) && near(g.Min, w.Min) && near(g.Max, w.Max)
	}
	if !ok {
		t.Errorf("%s:\n got  %+v\n want %+v", what, got, want)
	}
}

func checkStats(t *testing.T, what string, got, want []analytics.TypeStat) {
	t.Helper()
	ok := len(got) == len(want)
	for i := 0; ok && i < len(got); i++ {
		g, w := got[i], want[i]
		ok = g.Type == w.Type && g.Count == w.Count && near(g.Mean, w.Mean) && near(g.Min, w.Min) && near(g.Max, w.Max)
	}
	if !ok {
		t.Errorf("%s:\n got  %+v\n want %+v", what, got, want)
	}
}
