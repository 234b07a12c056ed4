package storetest

import (
	"math"
	"reflect"
	"sort"
	"testing"
	"time"

	"github.com/atrium-iot/atrium/internal/reading"
	"github.com/atrium-iot/atrium/services/analytics"
)

// wantFigures computes the summary figures of rs (distinct readings) for now,
// straight from the readings; alerts is the number of active alerts. Latest
// lists, per room and type, every reading of the latest instant (a store may
// return either).
func wantFigures(rs []reading.Reading, now time.Time, alerts int64) (analytics.Figures, map[[2]string][]float64) {
	hourAgo, dayAgo, end := analytics.SummaryWindow(now)
	f := analytics.Figures{ActiveAlerts: alerts}
	stats := map[string]*analytics.TypeStat{}
	sums := map[string]float64{}
	rooms := map[string]bool{}
	latest := map[[2]string]reading.Reading{}
	ties := map[[2]string][]float64{}
	for _, r := range rs {
		if r.RoomID != "" {
			rooms[r.RoomID] = true
			k := [2]string{r.RoomID, r.Type}
			l, ok := latest[k]
			switch {
			case !ok || r.Timestamp.After(l.Timestamp):
				latest[k], ties[k] = r, []float64{r.Value}
			case r.Timestamp.Equal(l.Timestamp):
				ties[k] = append(ties[k], r.Value)
			}
		}
		if r.Timestamp.Before(dayAgo) || !r.Timestamp.Before(end) {
			continue
		}
		f.LastDay++
		if r.Timestamp.Before(hourAgo) {
			continue
		}
		f.LastHour++
		st := stats[r.Type]
		if st == nil {
			st = &analytics.TypeStat{Type: r.Type, Min: math.Inf(1), Max: math.Inf(-1)}
			stats[r.Type] = st
		}
		st.Count++
		sums[r.Type] += r.Value
		st.Min, st.Max = math.Min(st.Min, r.Value), math.Max(st.Max, r.Value)
	}
	for typ, st := range stats {
		st.Mean = sums[typ] / float64(st.Count)
		f.Types = append(f.Types, *st)
	}
	sort.Slice(f.Types, func(i, j int) bool { return f.Types[i].Type < f.Types[j].Type })
	for r := range rooms {
		f.Rooms = append(f.Rooms, r)
	}
	sort.Strings(f.Rooms)
	for k, r := range latest {
		if !r.Timestamp.Before(hourAgo) {
			f.Latest = append(f.Latest, analytics.RoomValue{RoomID: k[0], Type: k[1], Value: r.Value, At: r.Timestamp.Truncate(time.Millisecond).UTC()})
		}
	}
	sort.Slice(f.Latest, func(i, j int) bool {
		a, b := f.Latest[i], f.Latest[j]
		return a.RoomID < b.RoomID || a.RoomID == b.RoomID && a.Type < b.Type
	})
	return f, ties
}

func checkFigures(t *testing.T, got, want analytics.Figures, ties map[[2]string][]float64) {
	t.Helper()
	if got.LastHour != want.LastHour || got.LastDay != want.LastDay || got.ActiveAlerts != want.ActiveAlerts {
		t.Errorf("counts: last hour %d, last day %d, alerts %d; want %d, %d, %d",
			got.LastHour, got.LastDay, got.ActiveAlerts, want.LastHour, want.LastDay, want.ActiveAlerts)
	}
	checkStats(t, "Types", got.Types, want.Types)
	if len(got.Rooms) != 0 || len(want.Rooms) != 0 {
		if !reflect.DeepEqual(got.Rooms, want.Rooms) {
			t.Errorf("Rooms = %q, want %q", got.Rooms, want.Rooms)
		}
	}
	if len(got.Latest) != len(want.Latest) {
		t.Fatalf("Latest = %+v\n want %+v", got.Latest, want.Latest)
	}
	for i, g := range got.Latest {
		w := want.Latest[i]
		k := [2]string{w.RoomID, w.Type}
		if g.RoomID != w.RoomID || g.Type != w.Type || !g.At.Equal(w.At) || !containsNear(ties[k], g.Value) {
			t.Errorf("Latest[%d] = %+v, want %+v (value one of %v)", i, g, w, ties[k])
		}
	}
}

func containsNear(vs []float64, v float64) bool {
	for _, w := range vs {
		if near(v, w) {
			return true
		}
	}
	return false
}

func testSummaryFigures(t *testing.T, h *harness) {
	now := at(30*time.Minute + 15*time.Second) // the window ends at at(31m)
	t.Run("empty", func(t *testing.T) {
		got, err := h.S.SummaryFigures(t.Context(), now)
		if err != nil {
			t.Fatal(err)
		}
		want, ties := wantFigures(nil, now, 0)
		checkFigures(t, got, want, ties)
	})
	rs := []reading.Reading{
		rd("s1", "r1", "temperature", 25, at(30*time.Minute+50*time.Second)), // the current minute
		rd("s1", "r1", "temperature", 21, at(-10*time.Minute)),
		rd("s1", "r1", "temperature", 99, at(-2*time.Hour)),              // the day only
		rd("s5", "r1", "humidity", 70, at(-29*time.Minute)),              // the first minute of the hour
		rd("s2", "r2", "co2", 1200, at(-28*time.Minute)),                 // the hour
		rd("s2", "r2", "co2", 800, at(-29*time.Minute-time.Second)),      // just before the hour
		rd("s3", "r3", "humidity", 50, at(-25*time.Hour)),                // before the day: a room, no latest
		rd("s3", "r3", "humidity", 51, at(-23*time.Hour-29*time.Minute)), // the day's first minute
		rd("s4", "", "pir", 1, at(0)),                                    // no room: counted only
		rd("s6", "r4", "temperature", 22, at(31*time.Minute)),            // after the window: latest only
	}
	h.add(rs...)
	for i, st := range []struct{ id, state string }{
		{"a1", analytics.AlertRaised}, {"a2", analytics.AlertRaised}, {"a2", analytics.AlertResolved}, {"a3", analytics.AlertRaised},
	} {
		if err := h.S.RecordAlert(t.Context(), st.id, st.state, at(time.Duration(i)*time.Second)); err != nil {
			t.Fatalf("RecordAlert(%s, %s): %v", st.id, st.state, err)
		}
	}
	t.Run("fixture", func(t *testing.T) {
		got, err := h.S.SummaryFigures(t.Context(), now)
		if err != nil {
			t.Fatal(err)
		}
		want, ties := wantFigures(rs, now, 2)
		if want.LastHour != 5 || want.LastDay != 8 || len(want.Latest) != 4 || len(want.Rooms) != 4 {
			t.Fatalf("fixture expectations drifted: %+v", want) // guards the fixture itself
		}
		checkFigures(t, got, want, ties)
	})
	u := LoadUCI(t)
	for i := 0; i < len(u.Readings); i += 500 {
		h.add(u.Readings[i:min(i+500, len(u.Readings))]...)
	}
	all := append(append([]reading.Reading(nil), rs...), u.Readings...)
	for _, tc := range []struct {
		name string
		now  time.Time
	}{
		{"uci at its end", u.Last},
		{"uci 20 minutes before its end", u.Last.Add(-20 * time.Minute)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := h.S.SummaryFigures(t.Context(), tc.now)
			if err != nil {
				t.Fatal(err)
			}
			want, ties := wantFigures(all, tc.now, 2)
			if want.LastHour == 0 || len(want.Latest) == 0 {
				t.Fatalf("the data set gives nothing to check: %+v", want)
			}
			checkFigures(t, got, want, ties)
		})
	}
}
