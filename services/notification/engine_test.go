package notification

import (
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/atrium-iot/atrium/internal/events"
	"github.com/atrium-iot/atrium/internal/reading"
)

var t0 = time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)

// series makes readings of one sensor every step from start, one per value.
func series(sensor, room, typ string, start time.Time, step time.Duration, values ...float64) []reading.Reading {
	out := make([]reading.Reading, len(values))
	for i, v := range values {
		out[i] = reading.Reading{SensorID: sensor, RoomID: room, Type: typ, Value: v, Timestamp: start.Add(time.Duration(i) * step)}
	}
	return out
}

func repeat(v float64, n int) []float64 {
	out := make([]float64, n)
	for i := range out {
		out[i] = v
	}
	return out
}

func alternate(a, b float64, n int) []float64 {
	out := make([]float64, n)
	for i := range out {
		out[i] = a
		if i%2 == 1 {
			out[i] = b
		}
	}
	return out
}

func concat(vs ...[]float64) []float64 {
	var out []float64
	for _, v := range vs {
		out = append(out, v...)
	}
	return out
}

// evaluate runs batches through a fresh engine and describes its transitions as
// "raise <rule> <minute>" / "resolve <rule> <minute>", binding raised alerts as the
// service does.
func evaluate(rules []Rule, batches ...[]reading.Reading) []string {
	e := NewEngine(rules)
	var out []string
	n := 0
	for _, b := range batches {
		SortReadings(b)
		var trans []transition
		for i := range b {
			trans = e.Evaluate(&b[i], trans)
		}
		for _, t := range trans {
			if t.kind == transRaise {
				n++
				e.Bind(t.key, fmt.Sprint("a", n))
			}
			out = append(out, fmt.Sprintf("%s %s %g", t.kind, t.key.RuleID, t.at.Sub(t0).Minutes()))
		}
	}
	return out
}

func TestEngineScenarios(t *testing.T) {
	defaults := DefaultRules(t0)
	halfMin := 30 * time.Second
	clearFor := Rule{ID: "slow-clear", Kind: KindThreshold, Metric: "co2", Comparison: CompareGT, Threshold: f64(1000), ClearThreshold: f64(950),
		For: Duration(time.Minute), ClearFor: Duration(2 * time.Minute), Severity: SeverityWarning}
	roomOnly := Rule{ID: "room-a", Kind: KindThreshold, Metric: "co2", Comparison: CompareGT, Threshold: f64(800), Severity: SeverityInfo, RoomID: "a"}
	low := Rule{ID: "humidity-low", Kind: KindThreshold, Metric: "humidity", Comparison: CompareLT, Threshold: f64(30), ClearThreshold: f64(35), Severity: SeverityInfo}

	co2For8 := series("s1", "r1", "co2", t0, halfMin, concat(repeat(1200, 17), repeat(900, 4))...) // 0..8 min high, then low
	shuffled := append([]reading.Reading(nil), co2For8...)
	rand.New(rand.NewPCG(1, 2)).Shuffle(len(shuffled), func(i, j int) { shuffled[i], shuffled[j] = shuffled[j], shuffled[i] })

	tests := []struct {
		name    string
		rules   []Rule
		batches [][]reading.Reading
		want    []string
	}{
		{"co2 above 1000 for 8 minutes then below: one raise, one resolve", defaults,
			[][]reading.Reading{co2For8}, []string{"raise default-co2-warning 5", "resolve default-co2-warning 8.5"}},
		{"same readings in one shuffled batch", defaults,
			[][]reading.Reading{shuffled}, []string{"raise default-co2-warning 5", "resolve default-co2-warning 8.5"}},
		{"same readings redelivered change nothing", defaults,
			[][]reading.Reading{co2For8, append([]reading.Reading(nil), co2For8...)}, []string{"raise default-co2-warning 5", "resolve default-co2-warning 8.5"}},
		{"high for less than for: nothing", defaults,
			[][]reading.Reading{series("s1", "r1", "co2", t0, halfMin, concat(repeat(1200, 9), repeat(900, 4))...)}, nil},
		{"flapping around the threshold never raises", defaults,
			[][]reading.Reading{series("s1", "r1", "co2", t0, halfMin, alternate(1010, 990, 120)...)}, nil},
		{"flapping after a raise: one alert, resolved once", defaults,
			[][]reading.Reading{series("s1", "r1", "co2", t0, halfMin, concat(repeat(1200, 12), alternate(1040, 960, 40), alternate(940, 1060, 40))...)},
			[]string{"raise default-co2-warning 5", "resolve default-co2-warning 26"}},
		{"critical and warning both raise", defaults,
			[][]reading.Reading{series("s1", "r1", "co2", t0, time.Minute, concat(repeat(1600, 7), repeat(900, 1))...)},
			[]string{"raise default-co2-warning 5", "raise default-co2-critical 5", "resolve default-co2-warning 7", "resolve default-co2-critical 7"}},
		{"late reading cannot resolve", defaults,
			[][]reading.Reading{
				series("s1", "r1", "co2", t0, time.Minute, repeat(1200, 7)...),
				series("s1", "r1", "co2", t0.Add(3*time.Minute), time.Minute, 800), // older than the state
				series("s1", "r1", "co2", t0.Add(7*time.Minute), time.Minute, 1200, 800),
			}, []string{"raise default-co2-warning 5", "resolve default-co2-warning 8"}},
		{"late reading cannot cut a pending condition", defaults,
			[][]reading.Reading{
				series("s1", "r1", "co2", t0, time.Minute, repeat(1200, 3)...),
				series("s1", "r1", "co2", t0.Add(90*time.Second), time.Minute, 800),
				series("s1", "r1", "co2", t0.Add(3*time.Minute), time.Minute, repeat(1200, 3)...),
			}, []string{"raise default-co2-warning 5"}},
		{"two sensors of a room are separate conditions", defaults,
			[][]reading.Reading{append(series("s1", "r1", "co2", t0, time.Minute, repeat(1200, 6)...), series("s2", "r1", "co2", t0, time.Minute, repeat(700, 6)...)...)},
			[]string{"raise default-co2-warning 5"}},
		{"temperature outside 18-26 with hysteresis", defaults,
			[][]reading.Reading{series("s1", "r1", "temperature", t0, time.Minute, concat(repeat(17, 11), []float64{18.2, 18.3, 19})...)},
			[]string{"raise default-temperature 10", "resolve default-temperature 13"}},
		{"clear_for delays the resolve", []Rule{clearFor},
			[][]reading.Reading{series("s1", "r1", "co2", t0, time.Minute, 1200, 1200, 900, 1200, 900, 900, 900)},
			[]string{"raise slow-clear 1", "resolve slow-clear 6"}},
		{"room-scoped rule ignores other rooms", []Rule{roomOnly},
			[][]reading.Reading{series("s1", "b", "co2", t0, time.Minute, 900), series("s2", "a", "co2", t0, time.Minute, 900)},
			[]string{"raise room-a 0"}},
		{"lt rule", []Rule{low},
			[][]reading.Reading{series("s1", "r1", "humidity", t0, time.Minute, 25, 32, 36)},
			[]string{"raise humidity-low 0", "resolve humidity-low 2"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := evaluate(tc.rules, tc.batches...)
			if strings.Join(got, "; ") != strings.Join(tc.want, "; ") {
				t.Fatalf("transitions:\n got  %q\n want %q", got, tc.want)
			}
		})
	}
}

func TestRuleValid(t *testing.T) {
	ok := func(r Rule) Rule { r.Normalize(); return r }
	tests := []struct {
		name   string
		rule   Rule
		fields []string
	}{
		{"defaults are valid", ok(DefaultRules(t0)[2]), nil},
		{"silent default valid", ok(DefaultRules(t0)[3]), nil},
		{"missing everything", ok(Rule{}), []string{"severity", "metric", "comparison"}},
		{"gt without threshold", ok(Rule{Metric: "co2", Comparison: "gt", Severity: "warning"}), []string{"threshold"}},
		{"clear above threshold", ok(Rule{Metric: "co2", Comparison: "gt", Threshold: f64(10), ClearThreshold: f64(11), Severity: "info"}), []string{"clear_threshold"}},
		{"outside with low >= high", ok(Rule{Metric: "t", Comparison: "outside", Low: f64(5), High: f64(5), Severity: "info"}), []string{"high"}},
		{"bad kind", ok(Rule{Kind: "magic", Severity: "info"}), []string{"kind"}},
		{"silent without for", ok(Rule{Kind: KindSensorSilent, Severity: "info"}), []string{"for"}},
		{"negative for, bad webhook, bad room", ok(Rule{Metric: "co2", Comparison: "gt", Threshold: f64(1), Severity: "info", For: -1, WebhookURL: "ftp://x", RoomID: "a b"}),
			[]string{"room_id", "for", "webhook_url"}},
		{"room source", ok(Rule{Source: SourceRoom, Metric: "occupancy_ratio", Comparison: "gt", Threshold: f64(1), Severity: "info"}), nil},
		{"unknown source", ok(Rule{Source: "sky", Metric: "co2", Comparison: "gt", Threshold: f64(1), Severity: "info"}), []string{"source"}},
		{"silent from the room", ok(Rule{Kind: KindSensorSilent, Source: SourceRoom, For: Duration(time.Minute), Severity: "info"}), []string{"source"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var got []string
			for _, p := range tc.rule.Valid() {
				got = append(got, p.Field)
			}
			if strings.Join(got, ",") != strings.Join(tc.fields, ",") {
				t.Fatalf("problems in %v, want %v (%+v)", got, tc.fields, tc.rule.Valid())
			}
		})
	}
}

// TestTrackerDeadlines: the tracker raises a sensor's silent alerts from its
// offline event, each at the last reading plus the rule's For (at once when
// that has passed), resolves them when it comes online, and ignores
// redelivered and late events.
func TestTrackerDeadlines(t *testing.T) {
	rules := []Rule{
		{ID: "silent-5m", Kind: KindSensorSilent, For: Duration(5 * time.Minute), Severity: SeverityWarning},
		{ID: "silent-co2-1h", Kind: KindSensorSilent, Metric: "co2", For: Duration(time.Hour), Severity: SeverityCritical},
	}
	tr := NewTracker()
	tr.SetRules(rules)
	status := func(id, typ, st string, lastSeen, since time.Duration) events.SensorStatus {
		return events.SensorStatus{SensorID: id, RoomID: "r1", Types: []string{typ}, Status: st, LastSeen: t0.Add(lastSeen), Since: t0.Add(since)}
	}
	online, offline := events.StatusOnline, events.StatusOffline
	for _, ev := range []events.SensorStatus{status("a", "co2", online, 0, 0), status("b", "temperature", online, 0, 0)} {
		if resolves := tr.Status(ev); len(resolves) != 0 {
			t.Fatalf("first online resolves %d", len(resolves))
		}
	}
	steps := []struct {
		at     time.Duration
		ev     *events.SensorStatus // applied before the expiry
		raises []string
	}{
		{4 * time.Minute, nil, nil},
		{9 * time.Minute, nil, nil}, // online sensors have no deadline, however long
		{10 * time.Minute, ptr(status("b", "temperature", offline, 0, 10*time.Minute)), []string{"b/silent-5m"}},
		{12 * time.Minute, ptr(status("a", "co2", offline, 2*time.Minute, 12*time.Minute)), []string{"a/silent-5m"}},
		{61 * time.Minute, nil, nil},
		{2 * time.Hour, nil, []string{"a/silent-co2-1h"}},
		{3 * time.Hour, nil, nil},
	}
	for _, st := range steps {
		if st.ev != nil {
			if !tr.Changes(*st.ev) {
				t.Fatalf("at +%s: %+v changes nothing", st.at, *st.ev)
			}
			tr.Status(*st.ev)
		}
		var rs []string
		for _, r := range tr.Expire(t0.Add(st.at)) {
			rs = append(rs, r.key.SensorID+"/"+r.key.RuleID)
			if !r.at.Equal(t0.Add(map[string]time.Duration{"a": 2 * time.Minute, "b": 0}[r.key.SensorID] + time.Duration(r.rule.For))) {
				t.Errorf("raise %s at %s", r.key.RuleID, r.at)
			}
			tr.bindSilent(r.key.SensorID, r.key.RuleID, "alert-"+r.key.SensorID+r.key.RuleID)
		}
		if fmt.Sprint(rs) != fmt.Sprint(st.raises) {
			t.Fatalf("at +%s: raises %v, want %v", st.at, rs, st.raises)
		}
	}
	// Redelivered or late: nothing changes.
	for _, ev := range []events.SensorStatus{status("a", "co2", offline, 2*time.Minute, 12*time.Minute), status("a", "co2", online, 0, 0)} {
		if tr.Changes(ev) || len(tr.Status(ev)) != 0 {
			t.Fatalf("%+v changed the tracker", ev)
		}
	}
	if resolves := tr.Status(status("a", "co2", online, 3*time.Hour, 3*time.Hour)); len(resolves) != 2 {
		t.Fatalf("back online: %d resolves, want 2", len(resolves))
	}
	// Online at one last reading, then offline at the same one: a change; the
	// online again (a redelivery) is not.
	if !tr.Changes(status("a", "co2", offline, 3*time.Hour, 3*time.Hour+5*time.Minute)) {
		t.Fatal("offline after online at the same last reading changes nothing")
	}
	tr.Status(status("a", "co2", offline, 3*time.Hour, 3*time.Hour+5*time.Minute))
	if tr.Changes(status("a", "co2", online, 3*time.Hour, 3*time.Hour)) {
		t.Fatal("a redelivered online changed the tracker")
	}
}

func ptr[T any](v T) *T { return &v }

// TestEvaluateRoom: rules of source "room" watch the room's metrics by the
// update times, one alert per room without a sensor; reading rules ignore the
// room's metrics and room rules the readings.
func TestEvaluateRoom(t *testing.T) {
	rules := []Rule{
		{ID: "room-co2", Kind: KindThreshold, Source: SourceRoom, Metric: "co2", Comparison: CompareGT, Threshold: f64(1000), For: Duration(2 * time.Minute), Severity: SeverityWarning},
		{ID: "crowded", Kind: KindThreshold, Source: SourceRoom, Metric: RoomMetricOccupancyRatio, Comparison: CompareGT, Threshold: f64(1), Severity: SeverityCritical, RoomID: "r1"},
		{ID: "reading-co2", Kind: KindThreshold, Metric: "co2", Comparison: CompareGT, Threshold: f64(1000), Severity: SeverityInfo},
	}
	e := NewEngine(rules)
	room := func(id string, at time.Duration, co2, ratio float64) *events.RoomMetrics {
		return &events.RoomMetrics{RoomID: id, At: t0.Add(at), OccupancyRatio: &ratio,
			Metrics: map[string]events.RoomTypeMetrics{"co2": {Value: co2}, "temperature": {Value: 21}}}
	}
	var got []string
	record := func(trans []transition) {
		for _, tr := range trans {
			got = append(got, fmt.Sprintf("%s %s %s/%s/%s %g @%s", tr.kind, tr.key.RuleID, tr.key.RoomID, tr.key.SensorID, tr.key.Type, tr.value, tr.at.Sub(t0)))
		}
	}
	record(e.EvaluateRoom(room("r1", 0, 1100, 0.5), nil))
	record(e.EvaluateRoom(room("r2", 0, 1200, 1.5), nil))
	record(e.EvaluateRoom(room("r1", time.Minute, 1150, 1.2), nil))
	record(e.EvaluateRoom(room("r1", time.Minute, 1150, 1.2), nil)) // a redelivery
	record(e.EvaluateRoom(room("r1", 2*time.Minute, 1120, 0.8), nil))
	record(e.EvaluateRoom(room("r1", 3*time.Minute, 900, 0.8), nil))
	record(e.Evaluate(&reading.Reading{SensorID: "s", RoomID: "r1", Type: "co2", Value: 1300, Timestamp: t0}, nil))
	want := []string{
		"raise crowded r1//occupancy_ratio 1.2 @1m0s",
		"raise room-co2 r1//co2 1120 @2m0s",
		"resolve crowded r1//occupancy_ratio 0.8 @2m0s",
		"resolve room-co2 r1//co2 900 @3m0s",
		"raise reading-co2 r1/s/co2 1300 @0s",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("transitions:\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// TestEvaluateRoomHugeValue: a rule over a metric near the largest double
// raises and resolves as any other.
func TestEvaluateRoomHugeValue(t *testing.T) {
	e := NewEngine([]Rule{{ID: "huge", Kind: KindThreshold, Source: SourceRoom, Metric: "energy", Comparison: CompareGT,
		Threshold: f64(1e308), ClearThreshold: f64(-1e308), Severity: SeverityWarning}})
	var got []string
	for i, v := range []float64{1.7e308, 0, -1.7e308} {
		m := &events.RoomMetrics{RoomID: "r1", At: t0.Add(time.Duration(i) * time.Minute), Metrics: map[string]events.RoomTypeMetrics{"energy": {Value: v}}}
		for _, tr := range e.EvaluateRoom(m, nil) {
			got = append(got, fmt.Sprintf("%s %g", tr.kind, tr.value))
		}
	}
	if want := "[raise 1.7e+308 resolve -1.7e+308]"; fmt.Sprint(got) != want {
		t.Errorf("transitions %v, want %s", got, want)
	}
}

// BenchmarkEvaluate runs readings of 1,000 sensors (co2 and temperature, values
// around the thresholds) through the default rules; the target is ≥500,000
// readings/s.
func BenchmarkEvaluate(b *testing.B) {
	e := NewEngine(DefaultRules(t0))
	const sensors = 1000
	rs := make([]reading.Reading, 0, 2*sensors)
	rng := rand.New(rand.NewPCG(3, 4))
	for i := range sensors {
		id, room := fmt.Sprintf("sensor_%04d", i), fmt.Sprintf("room-%d", i%50)
		rs = append(rs,
			reading.Reading{SensorID: id, RoomID: room, Type: "co2", Value: 800 + rng.Float64()*900},
			reading.Reading{SensorID: id, RoomID: room, Type: "temperature", Value: 16 + rng.Float64()*12})
	}
	var trans []transition
	b.ReportAllocs()
	b.ResetTimer()
	for n := 0; n < b.N; n++ {
		r := &rs[n%len(rs)]
		r.Timestamp = t0.Add(time.Duration(n) * time.Millisecond)
		trans = e.Evaluate(r, trans[:0])
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "readings/s")
}
