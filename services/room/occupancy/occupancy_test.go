package occupancy

import (
	"bytes"
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"testing"
	"time"
)

func readSamples(t *testing.T, path string) []Sample {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	ss, err := ReadUCI(f)
	if err != nil {
		t.Fatal(err)
	}
	return ss
}

// TestTrainReproducesCommittedModel re-trains from the training set kept in
// testdata and gets model.json again, coefficient by coefficient.
func TestTrainReproducesCommittedModel(t *testing.T) {
	m, err := Train(readSamples(t, filepath.Join("testdata", "datatraining.txt")), Default().TrainOptions)
	if err != nil {
		t.Fatal(err)
	}
	got, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	want := Default()
	if len(m.Models) != 15 || len(want.Models) != len(m.Models) {
		t.Fatalf("trained %d models, model.json has %d; want 15 (one per set of inputs)", len(m.Models), len(want.Models))
	}
	if m.Source != want.Source {
		t.Errorf("source %q, model.json says %q", m.Source, want.Source)
	}
	for i, g := range m.Models {
		w := want.Models[i]
		if g.Name != w.Name || len(g.Features) != len(w.Features) || g.Samples != w.Samples {
			t.Fatalf("model %d: trained %s %v on %d, model.json %s %v on %d", i, g.Name, g.Features, g.Samples, w.Name, w.Features, w.Samples)
		}
		check := func(what string, a, b float64) {
			if math.Abs(a-b) > 1e-9*math.Max(1, math.Abs(b)) {
				t.Errorf("model %s: %s trained %v, model.json %v", g.Name, what, a, b)
			}
		}
		check("intercept", g.Intercept, w.Intercept)
		for j := range g.Features {
			if g.Features[j] != w.Features[j] {
				t.Errorf("model %s: feature %d is %s, model.json %s", g.Name, j, g.Features[j], w.Features[j])
			}
			check(g.Features[j]+" weight", g.Weights[j], w.Weights[j])
			check(g.Features[j]+" mean", g.Mean[j], w.Mean[j])
			check(g.Features[j]+" scale", g.Scale[j], w.Scale[j])
		}
	}
	if bytes.Equal(got, nil) {
		t.Fatal("empty model")
	}
}

// TestCrossValidate leaves each day of the training set out in turn and holds
// the figures docs/room-service.md gives for the committed features: every
// labelled minute judged once, by a model fitted without its day.
func TestCrossValidate(t *testing.T) {
	ss := readSamples(t, filepath.Join("testdata", "datatraining.txt"))
	for _, c := range []struct {
		use      [4]bool
		accuracy float64
	}{
		{[4]bool{true, true, true, true}, 0.974},
		{[4]bool{true, true, true, false}, 0.829},
	} {
		r, err := CrossValidate(ss, c.use, Default().TrainOptions)
		byDay, all := r.ByDay, r.Healthy
		if err != nil {
			t.Fatal(err)
		}
		name := ModelName(c.use)
		t.Logf("%s: %s", name, all)
		if len(byDay) != 7 {
			t.Errorf("%s: %d days, want 7 (4 to 10 Feb 2015)", name, len(byDay))
		}
		var n int
		for _, cm := range byDay {
			n += cm.Total()
		}
		lm := Default().byName[name]
		if n != lm.Samples || all.Total() != lm.Samples {
			t.Errorf("%s: %d minutes judged by day, %d in all; the model was trained on %d", name, n, all.Total(), lm.Samples)
		}
		// A day's model does not see that day: the model fitted on every
		// day does better on them.
		if lm.TrainAccuracy <= all.Accuracy() {
			t.Errorf("%s: training accuracy %.4f not above the cross-validated %.4f", name, lm.TrainAccuracy, all.Accuracy())
		}
		if all.Accuracy() < c.accuracy {
			t.Errorf("%s: accuracy %.4f, want ≥ %.3f", name, all.Accuracy(), c.accuracy)
		}
	}
}

// TestEstimateIsCausal checks that an estimate depends only on the past and the
// present: cutting the data after a minute leaves the estimates up to it alone,
// and computing the minutes in pieces gives what computing them at once gives.
func TestEstimateIsCausal(t *testing.T) {
	ss := readSamples(t, filepath.Join("testdata", "datatest_excerpt.txt"))
	m := Default()
	all := [4]bool{true, true, true, true}
	full := m.Offline(ss, all)
	if len(full) < 900 { // a minute can hold two samples (their times jitter by a second)
		t.Fatalf("%d estimates for %d samples", len(full), len(ss))
	}
	cut := ss[:600]
	part := m.Offline(cut, all)
	for i := range part {
		if part[i] != full[i] {
			t.Fatalf("estimate %d with the data cut after %s = %+v, with all of it %+v", i, cut[len(cut)-1].Time, part[i], full[i])
		}
	}
	w := Rollups(ss, all)
	var pieces []Estimate
	first, last := ss[0].Time.Truncate(time.Minute), ss[len(ss)-1].Time
	for from := first; !from.After(last); from = from.Add(37 * time.Minute) {
		pieces = append(pieces, m.Estimate(w, from, from.Add(36*time.Minute))...)
	}
	if len(pieces) != len(full) {
		t.Fatalf("in pieces %d estimates, at once %d", len(pieces), len(full))
	}
	for i := range full {
		if pieces[i] != full[i] {
			t.Fatalf("estimate %d in pieces %+v, at once %+v", i, pieces[i], full[i])
		}
	}
}

// TestMissingStreams checks that the estimator degrades: each set of inputs
// gets its own model, and a stream silent for longer than FillAge drops out.
func TestMissingStreams(t *testing.T) {
	ss := readSamples(t, filepath.Join("testdata", "datatest_excerpt.txt"))
	m := Default()
	for _, c := range []struct {
		use  [4]bool
		name string
	}{
		{[4]bool{true, true, true, true}, "co2+temperature+humidity+light"},
		{[4]bool{true, true, true, false}, "co2+temperature+humidity"},
		{[4]bool{false, true, false, false}, "temperature"},
		{[4]bool{false, false, false, true}, "light"},
	} {
		est := m.Offline(ss, c.use)
		if len(est) == 0 || est[len(est)/2].Model != c.name {
			t.Errorf("with %v: no estimate or model %+v, want %s", c.use, est[len(est)/2], c.name)
		}
	}
	// Light stops 100 minutes in: the estimates after FillAge use the others.
	w := Rollups(ss, [4]bool{true, true, true, true})
	stop := ss[0].Time.Add(100 * time.Minute)
	var kept []Stat
	for _, st := range w.Minutes[Light] {
		if st.Start.Before(stop) {
			kept = append(kept, st)
		}
	}
	w.Minutes[Light] = kept
	lastLight := kept[len(kept)-1].Start
	est := m.Estimate(w, ss[0].Time, ss[len(ss)-1].Time)
	for _, e := range est {
		want := "co2+temperature+humidity+light"
		if e.Minute.After(lastLight.Add(FillAge)) {
			want = "co2+temperature+humidity"
		}
		if e.Model != want {
			t.Fatalf("estimate at %s by %s, want %s", e.Minute, e.Model, want)
		}
	}
}

// TestOfflineAccuracy runs the estimator in process over the UCI test sets
// (ATRIUM_TEST_UCI_OCCUPANCY_DIR: the folder of datatest.txt and
// datatest2.txt; skipped without it) and holds the figures docs/room-service.md
// gives.
func TestOfflineAccuracy(t *testing.T) {
	dir := os.Getenv("ATRIUM_TEST_UCI_OCCUPANCY_DIR")
	if dir == "" {
		t.Skip("ATRIUM_TEST_UCI_OCCUPANCY_DIR not set")
	}
	m := Default()
	for _, c := range []struct {
		file     string
		use      [4]bool
		accuracy float64
	}{
		{"datatest.txt", [4]bool{true, true, true, true}, 0.978},
		{"datatest2.txt", [4]bool{true, true, true, true}, 0.993},
		{"datatest.txt", [4]bool{true, true, true, false}, 0.915},
		{"datatest2.txt", [4]bool{true, true, true, false}, 0.85},
	} {
		ss := readSamples(t, filepath.Join(dir, c.file))
		cm := Judge(m.Offline(ss, c.use), ss)
		t.Logf("%s %s: %s", c.file, ModelName(c.use), cm)
		if cm.Accuracy() < c.accuracy {
			t.Errorf("%s %s: accuracy %.4f, want ≥ %.3f", c.file, ModelName(c.use), cm.Accuracy(), c.accuracy)
		}
	}
}
