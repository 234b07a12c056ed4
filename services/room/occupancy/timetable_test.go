package occupancy

import (
	"math"
	"path/filepath"
	"testing"
	"time"
)

// TestCandidatesAreCausal trains the round's candidates and checks that their
// estimates read only the past and the present over the training week: cutting
// the data leaves the estimates before the cut alone, and computing the minutes
// in pieces gives what computing them at once gives.
func TestCandidatesAreCausal(t *testing.T) {
	ss := readSamples(t, filepath.Join("testdata", "datatraining.txt"))
	use := [4]bool{true, true, true, false}
	for _, opts := range []TrainOptions{
		{Timetable: TimetableCO2Rise, MassBalance: true, MassBalanceWater: true},
		{Timetable: TimetableEstimates, CO2Check: true},
	} {
		m, err := Train(ss, opts)
		if err != nil {
			t.Fatal(err)
		}
		full := m.Offline(ss, use)
		cut := ss[:len(ss)*3/4]
		part := m.Offline(cut, use)
		for i := range part {
			if part[i] != full[i] {
				t.Fatalf("%+v: estimate %d with the data cut after %s = %+v, with all of it %+v", opts, i, cut[len(cut)-1].Time, part[i], full[i])
			}
		}
		w := Rollups(ss, use)
		var pieces []Estimate
		first, last := ss[0].Time.Truncate(time.Minute), ss[len(ss)-1].Time
		for from := first; !from.After(last); from = from.Add(12 * time.Hour) {
			pieces = append(pieces, m.Estimate(w, from, from.Add(12*time.Hour-time.Minute))...)
		}
		if len(pieces) != len(full) {
			t.Fatalf("%+v: in pieces %d estimates, at once %d", opts, len(pieces), len(full))
		}
		for i := range full {
			if pieces[i] != full[i] {
				t.Fatalf("%+v: estimate %d in pieces %+v, at once %+v", opts, i, pieces[i], full[i])
			}
		}
	}
}

// TestApplyTimetable checks the timetable on made-up evidence: a day's verdict
// comes from the hours around the same time that day, only completed hours
// count, and the share is smoothed so a room without history reads 0.
func TestApplyTimetable(t *testing.T) {
	day0 := time.Date(2015, 2, 2, 0, 0, 0, 0, time.UTC)
	ev := hourEvidence{}
	for d := range 3 {
		for h := range 24 {
			ev[day0.AddDate(0, 0, d).Add(time.Duration(h)*time.Hour)] = b2f(h == 9 && d != 1)
		}
	}
	at := func(d int, hm time.Duration) time.Time { return day0.AddDate(0, 0, d).Add(hm) }
	rows := []Row{
		{Minute: at(0, 9*time.Hour+10*time.Minute)},  // no day before
		{Minute: at(1, 9*time.Hour+10*time.Minute)},  // day 0 at 9: occupied
		{Minute: at(3, 9*time.Hour+10*time.Minute)},  // days 2 and 0 occupied, day 1 not
		{Minute: at(3, 10*time.Hour+40*time.Minute)}, // 10:10–11:10 on days 0–2: hours 10 and 11, empty
		{Minute: at(3, 10*time.Hour+20*time.Minute)}, // 9:50–10:50: hour 9 counts
	}
	applyTimetable(rows, ev, TrainOptions{Timetable: TimetableCO2Rise})
	for i, want := range []struct{ tt, days float64 }{
		{0, 0},
		{math.Log(2), 1.0 / 7},
		{math.Log(3.0 / 2), 3.0 / 7},
		{math.Log(1.0 / 4), 3.0 / 7},
		{math.Log(3.0 / 2), 3.0 / 7},
	} {
		if got := rows[i].x; math.Abs(got.tt-want.tt) > 1e-12 || got.ttDays != want.days {
			t.Errorf("row %d (%s): timetable %.4f over %.3f of the days, want %.4f over %.3f", i, rows[i].Minute, got.tt, got.ttDays, want.tt, want.days)
		}
	}
}

// TestAirChange checks that the air-change rate comes back from a made-up
// exponential decay of the hourly co2 means, and that a room without a decay
// gets DefaultAirChange.
func TestAirChange(t *testing.T) {
	const lambda, base = 0.02, 420.0
	h0 := time.Date(2015, 2, 2, 17, 0, 0, 0, time.UTC)
	hb := &hourBaselines{means: map[time.Time]*[nBase]float64{}}
	for k := range 6 {
		var v [nBase]float64
		v[iCO2] = base + 900*math.Exp(-lambda*60*float64(k))
		hb.means[h0.Add(time.Duration(k)*time.Hour)] = &v
	}
	if got := hb.airChange(h0.Add(6*time.Hour), base); math.Abs(got-lambda) > 1e-9 {
		t.Errorf("air change %v per minute, want %v", got, lambda)
	}
	if got := hb.airChange(h0.Add(48*time.Hour), base); got != DefaultAirChange {
		t.Errorf("without a decay in the last day: %v, want %v", got, DefaultAirChange)
	}
}
