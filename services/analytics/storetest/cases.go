package storetest

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/atrium-iot/atrium/internal/reading"
	"github.com/atrium-iot/atrium/services/analytics"
)

func testAddAndDedupe(t *testing.T, h *harness) {
	steps := []struct {
		name string
		rs   []reading.Reading
		want int
	}{
		{"new, with a duplicate inside the call", []reading.Reading{
			rd("s1", "r1", "temperature", 21, at(0)),
			rd("s1", "r1", "humidity", 40, at(0)),
			rd("s2", "r2", "co2", 800, at(time.Minute)),
			rd("s1", "r1", "temperature", 21, at(0)),
		}, 3},
		{"the same again", []reading.Reading{
			rd("s1", "r1", "temperature", 21, at(0)),
			rd("s1", "r1", "humidity", 40, at(0)),
			rd("s2", "r2", "co2", 800, at(time.Minute)),
		}, 0},
		{"overlapping", []reading.Reading{
			rd("s1", "r1", "temperature", 21, at(0)),
			rd("s1", "r1", "temperature", 21.5, at(30*time.Second)),
		}, 1},
		{"millisecond precision", []reading.Reading{
			rd("s3", "r1", "noise", 40, at(1234567*time.Nanosecond)),
			rd("s3", "r1", "noise", 41, at(1234000*time.Nanosecond)),
		}, 1},
		{"empty", nil, 0},
	}
	for _, st := range steps {
		t.Run(st.name, func(t *testing.T) {
			if got := h.add(st.rs...); got != st.want {
				t.Errorf("AddReadings = %d, want %d", got, st.want)
			}
		})
	}
	n, err := h.S.CountReadings(t.Context(), at(0), at(time.Hour))
	if err != nil || n != 5 {
		t.Errorf("CountReadings = %d, %v; want 5", n, err)
	}
	stats, err := h.S.TypeStats(t.Context(), at(0), at(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	checkStats(t, "TypeStats after duplicates", stats, []analytics.TypeStat{
		{Type: "co2", Count: 1, Mean: 800, Min: 800, Max: 800},
		{Type: "humidity", Count: 1, Mean: 40, Min: 40, Max: 40},
		{Type: "noise", Count: 1, Mean: 40, Min: 40, Max: 40},
		{Type: "temperature", Count: 2, Mean: 21.25, Min: 21, Max: 21.5},
	})
}

func testConcurrentAdds(t *testing.T, h *harness) {
	shared := make([]reading.Reading, 200)
	for i := range shared {
		shared[i] = rd(fmt.Sprintf("s%d", i%7), "r1", "temperature", float64(i), at(time.Duration(i)*time.Second))
	}
	const workers = 8
	counts := make([]int, workers)
	errs := make([]error, workers)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			rs := append([]reading.Reading(nil), shared...)
			for i := range 10 {
				rs = append(rs, rd(fmt.Sprintf("own%d", w), "r2", "co2", 500, at(time.Duration(i)*time.Minute)))
			}
			counts[w], errs[w] = h.S.AddReadings(t.Context(), rs)
		})
	}
	wg.Wait()
	total := 0
	for w := range workers {
		if errs[w] != nil {
			t.Fatalf("AddReadings %d: %v", w, errs[w])
		}
		total += counts[w]
	}
	if total != 200+workers*10 {
		t.Errorf("AddReadings added %d in all, want %d (each reading once)", total, 200+workers*10)
	}
	n, err := h.S.CountReadings(t.Context(), at(-time.Hour), at(time.Hour))
	if err != nil || n != int64(200+workers*10) {
		t.Errorf("CountReadings = %d, %v; want %d", n, err, 200+workers*10)
	}
}

func testCountsAndTypeStats(t *testing.T, h *harness) {
	h.add(
		rd("s1", "r1", "temperature", 20, at(0)),
		rd("s1", "r1", "temperature", 22, at(30*time.Second)),
		rd("s1", "r1", "temperature", 24, at(5*time.Minute)),
		rd("s2", "r2", "temperature", 18, at(time.Hour)),
		rd("s3", "r1", "co2", 500, at(10*time.Minute)),
		rd("s3", "r1", "co2", 700, at(59*time.Minute+59*time.Second)),
	)
	counts := []struct {
		name     string
		from, to time.Time
		want     int64
	}{
		{"first hour", at(0), at(time.Hour), 5},
		{"two hours", at(0), at(2 * time.Hour), 6},
		{"one minute", at(5 * time.Minute), at(6 * time.Minute), 1},
		{"before", at(-2 * time.Hour), at(-time.Hour), 0},
	}
	for _, tc := range counts {
		t.Run("count "+tc.name, func(t *testing.T) {
			n, err := h.S.CountReadings(t.Context(), tc.from, tc.to)
			if err != nil || n != tc.want {
				t.Errorf("CountReadings = %d, %v; want %d", n, err, tc.want)
			}
		})
	}
	type statsCase struct {
		name     string
		from, to time.Time
		want     []analytics.TypeStat
	}
	stats := []statsCase{
		{"first hour", at(0), at(time.Hour), []analytics.TypeStat{
			{Type: "co2", Count: 2, Mean: 600, Min: 500, Max: 700},
			{Type: "temperature", Count: 3, Mean: 22, Min: 20, Max: 24},
		}},
		{"second hour", at(time.Hour), at(2 * time.Hour), []analytics.TypeStat{
			{Type: "temperature", Count: 1, Mean: 18, Min: 18, Max: 18},
		}},
		{"empty", at(-2 * time.Hour), at(-time.Hour), nil},
	}
	each(t, stats, func(tc statsCase) string { return "stats " + tc.name },
		func(ctx context.Context, tc statsCase) ([]analytics.TypeStat, error) {
			return h.S.TypeStats(ctx, tc.from, tc.to)
		},
		func(t *testing.T, tc statsCase, got []analytics.TypeStat) { checkStats(t, "TypeStats", got, tc.want) })
}

func testLatestAndRooms(t *testing.T, h *harness) {
	h.add(
		rd("s1", "r1", "temperature", 20, at(0)),
		rd("s1", "r1", "temperature", 21, at(2*time.Minute)),
		rd("s2", "r1", "temperature", 25, at(time.Minute)),
		rd("s3", "r2", "co2", 900, at(3*time.Minute)),
		rd("s4", "", "pir", 1, at(4*time.Minute)),
	)
	h.add(rd("s1", "r1", "temperature", 99, at(-time.Minute))) // older: not the latest
	type latestCase struct {
		name  string
		since time.Time
		want  []analytics.RoomValue
	}
	tests := []latestCase{
		{"all", at(-time.Hour), []analytics.RoomValue{
			{RoomID: "r1", Type: "temperature", Value: 21, At: at(2 * time.Minute)},
			{RoomID: "r2", Type: "co2", Value: 900, At: at(3 * time.Minute)},
		}},
		{"recent", at(150 * time.Second), []analytics.RoomValue{
			{RoomID: "r2", Type: "co2", Value: 900, At: at(3 * time.Minute)},
		}},
		{"none", at(time.Hour), nil},
	}
	each(t, tests, func(tc latestCase) string { return tc.name },
		func(ctx context.Context, tc latestCase) ([]analytics.RoomValue, error) {
			return h.S.Latest(ctx, tc.since)
		},
		func(t *testing.T, tc latestCase, got []analytics.RoomValue) {
			if len(got) != len(tc.want) {
				t.Fatalf("Latest = %+v, want %+v", got, tc.want)
			}
			for i := range got {
				g, w := got[i], tc.want[i]
				if g.RoomID != w.RoomID || g.Type != w.Type || g.Value != w.Value || !g.At.Equal(w.At) {
					t.Errorf("Latest[%d] = %+v, want %+v", i, g, w)
				}
			}
		})
	rooms, err := h.S.Rooms(t.Context())
	if err != nil || !reflect.DeepEqual(rooms, []string{"r1", "r2"}) {
		t.Errorf("Rooms = %q, %v; want [r1 r2]", rooms, err)
	}
}

func testSeries(t *testing.T, h *harness) {
	h.add(
		rd("a", "r1", "temperature", 10, at(0)),
		rd("b", "r1", "temperature", 12, at(20*time.Second)),
		rd("a", "r1", "temperature", 14, at(time.Minute)),
		rd("a", "r1", "temperature", 20, at(5*time.Minute)),
		rd("a", "r1", "temperature", 30, at(61*time.Minute)),
		rd("c", "r2", "temperature", 100, at(0)),
		rd("a", "r1", "humidity", 50, at(0)),
	)
	b := func(d time.Duration, n int64, mean, lo, hi float64) analytics.Bucket {
		return analytics.Bucket{Start: at(d), Count: n, Mean: mean, Min: lo, Max: hi}
	}
	day := time.Date(2026, 11, 25, 0, 0, 0, 0, time.UTC)
	type seriesCase struct {
		name string
		q    analytics.SeriesQuery
		want []analytics.Bucket
	}
	tests := []seriesCase{
		{"room by minute", analytics.SeriesQuery{RoomID: "r1", Type: "temperature", From: at(0), To: at(2 * time.Hour), Bucket: time.Minute},
			[]analytics.Bucket{b(0, 2, 11, 10, 12), b(time.Minute, 1, 14, 14, 14), b(5*time.Minute, 1, 20, 20, 20), b(61*time.Minute, 1, 30, 30, 30)}},
		{"room by 5 minutes", analytics.SeriesQuery{RoomID: "r1", Type: "temperature", From: at(0), To: at(2 * time.Hour), Bucket: 5 * time.Minute},
			[]analytics.Bucket{b(0, 3, 12, 10, 14), b(5*time.Minute, 1, 20, 20, 20), b(60*time.Minute, 1, 30, 30, 30)}},
		{"room by hour, first hour", analytics.SeriesQuery{RoomID: "r1", Type: "temperature", From: at(0), To: at(time.Hour), Bucket: time.Hour},
			[]analytics.Bucket{b(0, 4, 14, 10, 20)}},
		{"building by hour", analytics.SeriesQuery{Type: "temperature", From: at(0), To: at(2 * time.Hour), Bucket: time.Hour},
			[]analytics.Bucket{b(0, 5, 31.2, 10, 100), b(time.Hour, 1, 30, 30, 30)}},
		{"building by day", analytics.SeriesQuery{Type: "temperature", From: day, To: day.Add(24 * time.Hour), Bucket: 24 * time.Hour},
			[]analytics.Bucket{{Start: day, Count: 6, Mean: 31, Min: 10, Max: 100}}},
		{"bounds", analytics.SeriesQuery{RoomID: "r1", Type: "temperature", From: at(time.Minute), To: at(5 * time.Minute), Bucket: time.Minute},
			[]analytics.Bucket{b(time.Minute, 1, 14, 14, 14)}},
		{"unknown room", analytics.SeriesQuery{RoomID: "nope", Type: "temperature", From: at(0), To: at(2 * time.Hour), Bucket: time.Hour}, nil},
	}
	each(t, tests, func(tc seriesCase) string { return tc.name },
		func(ctx context.Context, tc seriesCase) ([]analytics.Bucket, error) { return h.S.Series(ctx, tc.q) },
		func(t *testing.T, tc seriesCase, got []analytics.Bucket) { checkBuckets(t, "Series", got, tc.want) })
}

func testExtreme(t *testing.T, h *harness) {
	h.add(
		rd("s1", "r1", "temperature", 15, at(0)),
		rd("s1", "r1", "temperature", 10, at(time.Minute)),
		rd("s2", "r1", "temperature", 10, at(90*time.Second)), // same min, same minute, later
		rd("s1", "r1", "temperature", 30, at(150*time.Second)),
		rd("s1", "r1", "temperature", 10, at(3*time.Minute)),
		rd("s1", "r1", "temperature", 30, at(4*time.Minute)),
		rd("s3", "r2", "temperature", 5, at(5*time.Minute)),
	)
	tests := []struct {
		name string
		q    analytics.SeriesQuery
		max  bool
		want *analytics.Extreme
	}{
		{"room min: earliest of ties", analytics.SeriesQuery{RoomID: "r1", Type: "temperature", From: at(0), To: at(time.Hour)}, false, &analytics.Extreme{Value: 10, At: at(time.Minute)}},
		{"room max: earliest of ties", analytics.SeriesQuery{RoomID: "r1", Type: "temperature", From: at(0), To: at(time.Hour)}, true, &analytics.Extreme{Value: 30, At: at(150 * time.Second)}},
		{"room min in a later range", analytics.SeriesQuery{RoomID: "r1", Type: "temperature", From: at(2 * time.Minute), To: at(time.Hour)}, false, &analytics.Extreme{Value: 10, At: at(3 * time.Minute)}},
		{"building min", analytics.SeriesQuery{Type: "temperature", From: at(0), To: at(time.Hour)}, false, &analytics.Extreme{Value: 5, At: at(5 * time.Minute)}},
		{"none", analytics.SeriesQuery{RoomID: "r1", Type: "co2", From: at(0), To: at(time.Hour)}, true, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e, ok, err := h.S.Extreme(t.Context(), tc.q, tc.max)
			if err != nil {
				t.Fatal(err)
			}
			if tc.want == nil {
				if ok {
					t.Errorf("Extreme = %+v, want none", e)
				}
				return
			}
			if !ok || e.Value != tc.want.Value || !e.At.Equal(tc.want.At) {
				t.Errorf("Extreme = %+v (ok %v), want %+v", e, ok, *tc.want)
			}
		})
	}
}

func testRoomFigures(t *testing.T, h *harness) {
	m := func(min int, sec int) time.Time {
		return at(time.Duration(min)*time.Minute + time.Duration(sec)*time.Second)
	}
	h.add(
		// comfort: minutes 0, 2 and 4 comply; 1 (too warm) and 3 (too humid) do not
		rd("t1", "r1", "temperature", 21, m(0, 0)), rd("h1", "r1", "humidity", 40, m(0, 10)),
		rd("t1", "r1", "temperature", 25, m(1, 0)), rd("h1", "r1", "humidity", 40, m(1, 10)),
		rd("t1", "r1", "temperature", 22, m(2, 0)),
		rd("h1", "r1", "humidity", 65, m(3, 10)),
		rd("t1", "r1", "temperature", 19.5, m(4, 0)), rd("t2", "r1", "temperature", 20.5, m(4, 0)), rd("h1", "r1", "humidity", 30, m(4, 10)),
		// air: minutes 0 (mean 1000) and 2 are poor
		rd("c1", "r1", "co2", 900, m(0, 5)), rd("c1", "r1", "co2", 1100, m(0, 35)),
		rd("c1", "r1", "co2", 999, m(1, 5)),
		rd("c1", "r1", "co2", 1500, m(2, 5)),
		rd("c1", "r1", "co2", 400, m(7, 5)),
		rd("c1", "r1", "co2", 2000, m(10, 0)), // outside the period
		// occupancy: minute means 0, 2, 0.5, 4
		rd("o1", "r1", "occupancy", 0, m(0, 0)),
		rd("o1", "r1", "occupancy", 2, m(1, 0)),
		rd("o1", "r1", "occupancy", 0, m(2, 0)), rd("o1", "r1", "occupancy", 1, m(2, 30)),
		rd("o1", "r1", "occupancy", 4, m(3, 0)),
		rd("p1", "r1", "pir", 1, m(5, 0)),
		rd("p2", "r3", "pir", 0, m(0, 0)), rd("p2", "r3", "pir", 1, m(1, 0)),
		rd("x", "r2", "co2", 5000, m(0, 0)),
	)
	type figuresCase struct {
		room string
		want analytics.RoomFigures
	}
	tests := []figuresCase{
		{"r1", analytics.RoomFigures{
			RoomID: "r1",
			Types: []analytics.TypeStat{
				{Type: "co2", Count: 5, Mean: 979.8, Min: 400, Max: 1500},
				{Type: "humidity", Count: 4, Mean: 43.75, Min: 30, Max: 65},
				{Type: "occupancy", Count: 5, Mean: 1.4, Min: 0, Max: 4},
				{Type: "pir", Count: 1, Mean: 1, Min: 1, Max: 1},
				{Type: "temperature", Count: 5, Mean: 21.6, Min: 19.5, Max: 25},
			},
			ComfortMinutes: 5, CompliantMinutes: 3,
			CO2Minutes: 4, PoorAirMinutes: 2,
			OccupancyType: "occupancy", OccupancyMinutes: 4, OccupiedMinutes: 3, MeanOccupancy: 1.625,
		}},
		{"r3", analytics.RoomFigures{
			RoomID:        "r3",
			Types:         []analytics.TypeStat{{Type: "pir", Count: 2, Mean: 0.5, Min: 0, Max: 1}},
			OccupancyType: "pir", OccupancyMinutes: 2, OccupiedMinutes: 1, MeanOccupancy: 0.5,
		}},
		{"empty", analytics.RoomFigures{RoomID: "empty"}},
	}
	each(t, tests, func(tc figuresCase) string { return tc.room },
		func(ctx context.Context, tc figuresCase) (analytics.RoomFigures, error) {
			return h.S.RoomFigures(ctx, tc.room, at(0), at(10*time.Minute))
		},
		func(t *testing.T, tc figuresCase, got analytics.RoomFigures) {
			checkStats(t, "Types", got.Types, tc.want.Types)
			got.Types, tc.want.Types = nil, nil
			if !near(got.MeanOccupancy, tc.want.MeanOccupancy) {
				t.Errorf("MeanOccupancy = %v, want %v", got.MeanOccupancy, tc.want.MeanOccupancy)
			}
			got.MeanOccupancy, tc.want.MeanOccupancy = 0, 0
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("RoomFigures = %+v\nwant %+v", got, tc.want)
			}
		})
}

func testAlerts(t *testing.T, h *harness) {
	steps := []struct {
		id, state string
		active    int64
	}{
		{"a1", analytics.AlertRaised, 1},
		{"a2", analytics.AlertRaised, 2},
		{"a3", analytics.AlertRaised, 3},
		{"a1", analytics.AlertRaised, 3}, // redelivered
		{"a2", analytics.AlertResolved, 2},
		{"a2", analytics.AlertResolved, 2}, // redelivered
		{"a4", analytics.AlertResolved, 2}, // resolved before raised (out of order)
		{"a4", analytics.AlertRaised, 2},
	}
	for i, st := range steps {
		if err := h.S.RecordAlert(t.Context(), st.id, st.state, at(time.Duration(i)*time.Second)); err != nil {
			t.Fatalf("RecordAlert(%s, %s): %v", st.id, st.state, err)
		}
		n, err := h.S.ActiveAlerts(t.Context())
		if err != nil || n != st.active {
			t.Errorf("after %s %s: ActiveAlerts = %d, %v; want %d", st.id, st.state, n, err, st.active)
		}
	}
	// The summary counts the active ones and those raised in its day: a5 is
	// active but older than a day, a6 raised and resolved within it.
	for _, st := range []struct {
		id, state string
		at        time.Duration
	}{
		{"a5", analytics.AlertRaised, -25 * time.Hour},
		{"a6", analytics.AlertRaised, -time.Hour},
		{"a6", analytics.AlertResolved, -time.Minute},
	} {
		if err := h.S.RecordAlert(t.Context(), st.id, st.state, at(st.at)); err != nil {
			t.Fatal(err)
		}
	}
	f, err := h.S.SummaryFigures(t.Context(), at(time.Minute))
	if err != nil || f.ActiveAlerts != 3 || f.AlertsLastDay != 5 {
		t.Errorf("SummaryFigures: %d active, %d raised in the last day, %v; want 3, 5", f.ActiveAlerts, f.AlertsLastDay, err)
	}
}

func report(i int, status string, created time.Time) analytics.Report {
	r := analytics.Report{
		ID: fmt.Sprintf("rep-%d", i), Kind: analytics.KindCustom, Status: status,
		From: at(-24 * time.Hour), To: at(0), Rooms: []string{"r1", "r2"}, CreatedAt: created,
		Capacities: map[string]float64{"r1": 10},
	}
	if status == analytics.StatusReady {
		r.Content = []byte(fmt.Sprintf(`{"rooms":[],"n":%d}`, i))
		r.FinishedAt = created.Add(time.Second)
	}
	return r
}

func testReports(t *testing.T, h *harness) {
	ctx := t.Context()
	statuses := []string{analytics.StatusReady, analytics.StatusPending, analytics.StatusFailed, analytics.StatusPending, analytics.StatusReady}
	for i, st := range statuses {
		if err := h.S.SaveReport(ctx, report(i, st, at(time.Duration(i)*time.Second))); err != nil {
			t.Fatal(err)
		}
	}
	// Two reports created in the same millisecond are ordered by id.
	for _, i := range []int{5, 6} {
		if err := h.S.SaveReport(ctx, report(i, analytics.StatusReady, at(10*time.Second))); err != nil {
			t.Fatal(err)
		}
	}
	done := report(1, analytics.StatusReady, at(time.Second))
	if err := h.S.SaveReport(ctx, done); err != nil {
		t.Fatal(err)
	}
	t.Run("get", func(t *testing.T) {
		got, err := h.S.Report(ctx, "rep-1")
		if err != nil {
			t.Fatal(err)
		}
		if got.Status != analytics.StatusReady || string(got.Content) != string(done.Content) || !got.From.Equal(done.From) ||
			!got.CreatedAt.Equal(done.CreatedAt) || !got.FinishedAt.Equal(done.FinishedAt) ||
			!reflect.DeepEqual(got.Rooms, done.Rooms) || !reflect.DeepEqual(got.Capacities, done.Capacities) {
			t.Errorf("Report = %+v (content %s), want %+v (content %s)", got, got.Content, done, done.Content)
		}
	})
	t.Run("not found", func(t *testing.T) {
		if _, err := h.S.Report(ctx, "nope"); !errors.Is(err, analytics.ErrNotFound) {
			t.Errorf("Report(nope) = %v, want ErrNotFound", err)
		}
	})
	t.Run("list", func(t *testing.T) {
		var ids []string
		cursor := ""
		for page := 0; page < 10; page++ {
			rs, next, err := h.S.Reports(ctx, 3, cursor)
			if err != nil {
				t.Fatal(err)
			}
			for _, r := range rs {
				if r.Content != nil {
					t.Errorf("Reports: %s listed with content", r.ID)
				}
				ids = append(ids, r.ID)
			}
			if next == "" {
				break
			}
			cursor = next
		}
		want := []string{"rep-6", "rep-5", "rep-4", "rep-3", "rep-2", "rep-1", "rep-0"}
		if !reflect.DeepEqual(ids, want) {
			t.Errorf("Reports = %v, want %v", ids, want)
		}
	})
	t.Run("pending", func(t *testing.T) {
		rs, err := h.S.PendingReports(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(rs) != 1 || rs[0].ID != "rep-3" {
			t.Errorf("PendingReports = %+v, want rep-3", rs)
		}
	})
	t.Run("bad cursor", func(t *testing.T) {
		if _, _, err := h.S.Reports(ctx, 3, "not-a-cursor!"); !errors.Is(err, analytics.ErrBadCursor) {
			t.Errorf("Reports(bad cursor) = %v, want ErrBadCursor", err)
		}
	})
}

func testReopen(t *testing.T, h *harness) {
	rs := []reading.Reading{
		rd("s1", "r1", "temperature", 21, at(0)),
		rd("s1", "r1", "temperature", 23, at(time.Minute)),
	}
	h.add(rs...)
	if err := h.S.RecordAlert(t.Context(), "a1", analytics.AlertRaised, at(0)); err != nil {
		t.Fatal(err)
	}
	if err := h.S.SaveReport(t.Context(), report(1, analytics.StatusPending, at(0))); err != nil {
		t.Fatal(err)
	}
	h.Reopen()
	if n := h.add(rs...); n != 0 {
		t.Errorf("AddReadings after reopen = %d, want 0 (already stored)", n)
	}
	n, err := h.S.CountReadings(t.Context(), at(0), at(time.Hour))
	if err != nil || n != 2 {
		t.Errorf("CountReadings after reopen = %d, %v; want 2", n, err)
	}
	if a, err := h.S.ActiveAlerts(t.Context()); err != nil || a != 1 {
		t.Errorf("ActiveAlerts after reopen = %d, %v; want 1", a, err)
	}
	if p, err := h.S.PendingReports(t.Context()); err != nil || len(p) != 1 {
		t.Errorf("PendingReports after reopen = %+v, %v; want rep-1", p, err)
	}
	if rooms, err := h.S.Rooms(t.Context()); err != nil || !reflect.DeepEqual(rooms, []string{"r1"}) {
		t.Errorf("Rooms after reopen = %q, %v", rooms, err)
	}
}
