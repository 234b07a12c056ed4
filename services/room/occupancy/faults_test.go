package occupancy

import (
	"path/filepath"
	"testing"
)

// TestSimulateCO2Faults checks that the simulated faults are reproducible from
// their seed, touch only co2, and that the plausibility check passes nearly
// all of the healthy week while it catches a good share of the faulty minutes.
func TestSimulateCO2Faults(t *testing.T) {
	ss := readSamples(t, filepath.Join("testdata", "datatraining.txt"))
	a, b, c := SimulateCO2Faults(ss, 1), SimulateCO2Faults(ss, 1), SimulateCO2Faults(ss, 2)
	var changed, differ int
	for i := range ss {
		if a[i] != b[i] {
			t.Fatalf("sample %d: seed 1 gave %+v, then %+v", i, a[i], b[i])
		}
		x := a[i]
		x.CO2 = ss[i].CO2
		if x != ss[i] || a[i].CO2 < 0 {
			t.Fatalf("sample %d: %+v from %+v; only co2 may change, never below 0", i, a[i], ss[i])
		}
		if a[i].CO2 != ss[i].CO2 {
			changed++
		}
		if a[i].CO2 != c[i].CO2 {
			differ++
		}
	}
	if changed < len(ss)/4 || differ < len(ss)/4 {
		t.Errorf("%d of %d readings changed by seed 1, %d differ between seeds 1 and 2", changed, len(ss), differ)
	}
	failing := func(ss []Sample) (n, of int) {
		rows := Rows(Rollups(ss, [4]bool{true, true, true, true}), ss[0].Time, ss[len(ss)-1].Time, TrainOptions{CO2Check: true})
		for _, r := range rows {
			if !r.Present[iCO2] {
				n++
			}
		}
		return n, len(rows)
	}
	n, of := failing(ss)
	t.Logf("healthy week: co2 fails the check at %d of %d minutes", n, of)
	if n > of/20 {
		t.Errorf("healthy week: co2 fails the check at %d of %d minutes", n, of)
	}
	n, of = failing(a)
	t.Logf("seed 1: co2 fails the check at %d of %d minutes", n, of)
	if n < of/10 {
		t.Errorf("seed 1: co2 fails the check at only %d of %d minutes", n, of)
	}
}

// TestCO2Plausible checks the plausibility check on a made-up stream: a jump
// beyond MaxCO2Rate drops co2 for the minutes whose features read it, and so
// does a value repeated StuckMinutes minutes in a row.
func TestCO2Plausible(t *testing.T) {
	const n = 200
	s := series{val: make([]float64, n), raw: make([]bool, n)}
	for k := range n {
		s.val[k], s.raw[k] = 500+float64(k%3), true
	}
	for k := 20; k < n; k++ {
		s.val[k] += 150 // an offset step at minute 20
	}
	for k := 120; k < 120+StuckMinutes; k++ {
		s.val[k] = 700 // stuck from minute 120
	}
	ok := co2Plausible(s)
	for k := range n {
		bad := k >= 20 && k < 20+checkSpan || k >= 120+StuckMinutes-1 && k < 120+StuckMinutes-1+checkSpan
		if ok[k] == bad {
			t.Errorf("minute %d: plausible %v", k, ok[k])
		}
	}
}

// TestLookbackCoversTheModel: the estimator reads the minutes up to Influence
// before the first it estimates. The gated features look for the last co2
// rise up to RiseFade back, so a committed model trained with Gated needs the
// longer look-back too, and so does a model with a timetable (its days of
// hours, or of minutes for a timetable from estimates).
func TestLookbackCoversTheModel(t *testing.T) {
	m := Default()
	if need := RiseFade + 2*medianSpan; m.Gated && Influence < need {
		t.Errorf("the committed model is gated: Influence %v must be at least %v", Influence, need)
	}
	if need := m.TimetableLookback(); HourLookback < need || m.Timetable == TimetableEstimates && MinuteLookback < need {
		t.Errorf("the committed model reads a timetable: the look-back must reach %v", need)
	}
}
