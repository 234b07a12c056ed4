package occupancy

import (
	"errors"
	"fmt"
	"io"
	"math"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"
)

// Sample is one row of the UCI Occupancy Detection files: the room's state at
// one instant and whether the camera saw someone.
type Sample struct {
	Time                              time.Time
	Temperature, Humidity, Light, CO2 float64
	Occupied                          bool
}

// ReadUCI reads a UCI Occupancy Detection file ("date","Temperature","Humidity",
// "Light","CO2","HumidityRatio","Occupancy", each row led by an unnamed row index;
// times without a zone, read as UTC).
func ReadUCI(r io.Reader) ([]Sample, error) {
	var out []Sample
	key := func(h string) string { return strings.ToLower(strings.TrimSpace(h)) }
	err := readCSV(r, key, []string{"date", "temperature", "humidity", "light", "co2", "occupancy"}, func(line int, rec []string, col map[string]int) error {
		ts, err := time.ParseInLocation(time.DateTime, strings.TrimSpace(rec[col["date"]]), time.UTC)
		if err != nil {
			return err
		}
		s := Sample{Time: ts}
		for _, f := range []struct {
			name string
			dst  *float64
		}{{"temperature", &s.Temperature}, {"humidity", &s.Humidity}, {"light", &s.Light}, {"co2", &s.CO2}} {
			v, err := strconv.ParseFloat(strings.TrimSpace(rec[col[f.name]]), 64)
			if err != nil {
				return fmt.Errorf("%s: %w", f.name, err)
			}
			*f.dst = v
		}
		s.Occupied = strings.TrimSpace(rec[col["occupancy"]]) == "1"
		out = append(out, s)
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// Rollups builds the minute and hour rollups the room store would hold for the
// samples, each column a stream of its own; only the types in use are kept.
func Rollups(samples []Sample, use [4]bool) Window {
	w := Window{Minutes: map[string][]Stat{}, Hours: map[string][]Stat{}}
	for i, typ := range Inputs {
		if !use[i] {
			continue
		}
		w.Minutes[typ] = rollup(samples, i, time.Minute)
		w.Hours[typ] = rollup(samples, i, time.Hour)
	}
	return w
}

func (s *Sample) value(i int) float64 {
	switch i {
	case iCO2:
		return s.CO2
	case iTemp:
		return s.Temperature
	case iHum:
		return s.Humidity
	default:
		return s.Light
	}
}

func rollup(samples []Sample, i int, d time.Duration) []Stat {
	byStart := map[time.Time]*Stat{}
	for k := range samples {
		v := samples[k].value(i)
		start := samples[k].Time.Truncate(d)
		st := byStart[start]
		if st == nil {
			st = &Stat{Start: start, Min: v, Max: v}
			byStart[start] = st
		}
		st.Count++
		st.Sum += v
		st.Min, st.Max = math.Min(st.Min, v), math.Max(st.Max, v)
	}
	out := make([]Stat, 0, len(byStart))
	for _, st := range byStart {
		out = append(out, *st)
	}
	sort.Slice(out, func(a, b int) bool { return out[a].Start.Before(out[b].Start) })
	return out
}

// labels maps each minute to the occupancy of its latest sample.
func labels(samples []Sample) map[time.Time]bool {
	out := map[time.Time]bool{}
	for _, s := range samples {
		out[s.Time.Truncate(time.Minute)] = s.Occupied
	}
	return out
}

// TrainSource names the training data in the model file.
const TrainSource = "UCI Occupancy Detection, datatraining.txt (Candanedo & Feldheim 2016, CC BY 4.0)"

// ridge is the L2 penalty of the fit (on standardised weights).
const ridge = 1.0

// TrainOptions choose how the models are trained (and, for CO2Check, what the
// estimator does); the model file records them.
type TrainOptions struct {
	// FaultCopies adds that many copies of the training samples with simulated
	// co2 sensor faults (SimulateCO2Faults, seeds 1, 2, …) to the training
	// minutes, labels unchanged.
	FaultCopies int `json:"fault_copies,omitempty"`
	// CO2Check drops a co2 stream at the minutes it fails the plausibility
	// check (co2Plausible): a model with co2 is neither fitted on nor used for
	// those minutes; the model of the other streams is.
	CO2Check bool `json:"co2_check,omitempty"`
	// Gated counts temperature and water content above their baselines only
	// through a recent co2 rise (the gated features) in the models with co2
	// and without light.
	Gated bool `json:"gated,omitempty"`
	// Timetable adds the timetable features of that evidence kind
	// (TimetableCO2Rise, …; timetable.go) to the models without light,
	// looking TimetableDays back (0: DefaultTimetableDays) within
	// TimetableWindowMinutes of the time of day (0: DefaultTimetableWindow).
	Timetable              string `json:"timetable,omitempty"`
	TimetableDays          int    `json:"timetable_days,omitempty"`
	TimetableWindowMinutes int    `json:"timetable_window_minutes,omitempty"`
	// MassBalance adds co2_generation to the models with co2 and without
	// light.
	MassBalance bool `json:"mass_balance,omitempty"`
	// MassBalanceWater adds humidity_ratio_generation, the same for the
	// water content of the air, to the models with temperature and humidity
	// and without light.
	MassBalanceWater bool `json:"mass_balance_water,omitempty"`
}

// CVFaultCopies is how many copies of the samples with simulated co2 faults
// (seeds 1, 2, …) CrossValidate judges besides the samples as they are.
const CVFaultCopies = 3

// Train fits one logistic model per non-empty set of inputs on the samples.
func Train(samples []Sample, opts TrainOptions) (*Model, error) {
	if opts.Timetable != "" && !isTimetableKind(opts.Timetable) {
		return nil, fmt.Errorf("occupancy: train: unknown timetable evidence %q", opts.Timetable)
	}
	vs, err := trainingVariants(samples, opts.FaultCopies, opts)
	if err != nil {
		return nil, err
	}
	m := &Model{Source: TrainSource, TrainOptions: opts}
	if opts.Timetable == TimetableEstimates {
		if m.Stage1, err = Train(samples, opts.firstStage()); err != nil {
			return nil, err
		}
		for k := range vs {
			vs[k].rows = estimateTimetable(vs[k].rows, m.Stage1.model, opts)
		}
	}
	for mask := 1; mask < 16; mask++ {
		var present [4]bool
		for i := range present {
			present[i] = mask&(1<<i) != 0
		}
		if len(FeaturesFor(present, opts)) == 0 {
			continue
		}
		lm, err := fitRows(present, opts, vs, func(time.Time) bool { return true })
		if err != nil {
			return nil, err
		}
		m.Models = append(m.Models, lm)
	}
	sort.Slice(m.Models, func(a, b int) bool { return m.Models[a].Name < m.Models[b].Name })
	if err := m.index(); err != nil {
		return nil, err
	}
	return m, nil
}

// variant is the labelled feature rows of one version of the training
// samples: as they are, or with simulated co2 faults.
type variant struct {
	rows []Row
	lab  map[time.Time]bool
}

// trainingVariants computes the feature rows of the samples and of copies of
// them with simulated co2 faults, with every input in use (a feature reads only
// the streams it needs, so the rows serve every model), and the label of each
// minute.
func trainingVariants(samples []Sample, copies int, opts TrainOptions) ([]variant, error) {
	if len(samples) == 0 {
		return nil, errors.New("occupancy: train: no samples")
	}
	lab := labels(samples)
	vs := make([]variant, copies+1)
	for k := range vs {
		ss := samples
		if k > 0 {
			ss = SimulateCO2Faults(samples, uint64(k))
		}
		w := Rollups(ss, [4]bool{true, true, true, true})
		vs[k] = variant{Rows(w, ss[0].Time, ss[len(ss)-1].Time, opts), lab}
	}
	return vs, nil
}

// fitRows fits the model of the present inputs on the labelled rows of the
// variants that have those inputs and whose minute keep accepts.
func fitRows(present [4]bool, opts TrainOptions, vs []variant, keep func(time.Time) bool) (*Logistic, error) {
	fs := FeaturesFor(present, opts)
	readsCO2 := slices.ContainsFunc(fs, func(f Feature) bool { return slices.Contains(f.Needs, CO2) })
	if !readsCO2 {
		vs = vs[:1] // copies with co2 faults would only repeat its rows
	}
	var xs [][]float64
	var ys []float64
	for _, v := range vs {
		for i := range v.rows {
			r := &v.rows[i]
			y, ok := v.lab[r.Minute]
			if !ok || !keep(r.Minute) || !covers(r.Present, present) {
				continue
			}
			xs = append(xs, r.Vector(fs))
			ys = append(ys, b2f(y))
		}
	}
	names := make([]string, len(fs))
	for i, f := range fs {
		names[i] = f.Name
	}
	lm, err := fit(ModelName(present), names, xs, ys)
	if err != nil {
		return nil, err
	}
	lm.fs = fs
	return lm, nil
}

// covers says whether the inputs of have include those of want.
func covers(have, want [4]bool) bool {
	for i := range want {
		if want[i] && !have[i] {
			return false
		}
	}
	return true
}

// CV is a cross-validation's confusions.
type CV struct {
	// ByDay is each left-out day ("2006-01-02") of the samples as they are.
	ByDay map[string]Confusion
	// Healthy is every day of the samples as they are; Faulty every day of
	// CVFaultCopies copies of them with simulated co2 faults.
	Healthy, Faulty Confusion
}

// Score is the mean of the accuracies with a healthy and with a faulty co2
// sensor: what candidates are compared by.
func (c CV) Score() float64 { return (c.Healthy.Accuracy() + c.Faulty.Accuracy()) / 2 }

// CrossValidate judges the models of the present inputs, trained with opts, by
// leaving one calendar day of the samples out at a time: the models are fitted
// on the other days (of the samples and of opts.FaultCopies faulty copies) and
// judge the left-out day's minutes (≥ 0.5 = occupied), in the samples as they
// are and in CVFaultCopies copies with simulated co2 faults. A minute is judged
// by the model of its present inputs, as the estimator does (with CO2Check, the
// one without co2 where co2 fails the check). The features of a left-out minute
// still read the streams before it, as live; only the labels are held out.
// This is how candidates are compared without the test sets.
func CrossValidate(samples []Sample, present [4]bool, opts TrainOptions) (CV, error) {
	all, err := trainingVariants(samples, max(opts.FaultCopies, CVFaultCopies), opts)
	if err != nil {
		return CV{}, err
	}
	vs := all
	day := func(t time.Time) string { return t.Format(time.DateOnly) }
	cv := CV{ByDay: map[string]Confusion{}}
	for m := range vs[0].lab {
		cv.ByDay[day(m)] = Confusion{}
	}
	for d := range cv.ByDay {
		keep := func(m time.Time) bool { return day(m) != d }
		if opts.Timetable == TimetableEstimates {
			// The first stage is fitted without the left-out day too.
			first, err := foldModels(opts.firstStage(), all[:opts.FaultCopies+1], keep)
			if err != nil {
				return CV{}, err
			}
			vs = make([]variant, len(all))
			for k, v := range all {
				vs[k] = variant{estimateTimetable(v.rows, first, opts), v.lab}
			}
		}
		train := vs[:opts.FaultCopies+1]
		models := map[[4]bool]*Logistic{}
		judge := func(v variant, c *Confusion) error {
			for i := range v.rows {
				r := &v.rows[i]
				y, ok := v.lab[r.Minute]
				if !ok || day(r.Minute) != d {
					continue
				}
				var use [4]bool
				for k := range use {
					use[k] = present[k] && r.Present[k]
				}
				p := 0.0
				if len(FeaturesFor(use, opts)) > 0 {
					lm := models[use]
					if lm == nil {
						if lm, err = fitRows(use, opts, train, keep); err != nil {
							return err
						}
						models[use] = lm
					}
					p = lm.Predict(r)
				}
				c.Add(p >= 0.5, y)
			}
			return nil
		}
		var c Confusion
		if err := judge(vs[0], &c); err != nil {
			return CV{}, err
		}
		cv.ByDay[d] = c
		cv.Healthy.merge(c)
		for _, v := range vs[1 : CVFaultCopies+1] {
			if err := judge(v, &cv.Faulty); err != nil {
				return CV{}, err
			}
		}
	}
	return cv, nil
}

// firstStage is the options of the first stage of a timetable from
// estimates: the same without the timetable.
func (o TrainOptions) firstStage() TrainOptions {
	o.Timetable, o.TimetableDays, o.TimetableWindowMinutes = "", 0, 0
	return o
}

// foldModels fits the models of opts without light on the variants' minutes
// keep accepts, one per set of the other streams.
func foldModels(opts TrainOptions, vs []variant, keep func(time.Time) bool) (func([4]bool) *Logistic, error) {
	models := map[[4]bool]*Logistic{}
	for mask := 1; mask < 8; mask++ {
		use := [4]bool{mask&1 != 0, mask&2 != 0, mask&4 != 0, false}
		if len(FeaturesFor(use, opts)) == 0 {
			continue
		}
		lm, err := fitRows(use, opts, vs, keep)
		if err != nil {
			return nil, err
		}
		models[use] = lm
	}
	return func(use [4]bool) *Logistic { return models[use] }, nil
}

// estimateTimetable returns a copy of the rows with the timetable features
// from the estimates of the first stage: each row judged by the first stage's
// model of its streams other than light (a row with none gives no evidence).
func estimateTimetable(rows []Row, first func([4]bool) *Logistic, opts TrainOptions) []Row {
	out := slices.Clone(rows)
	var judged []Row
	var p []float64
	for i := range out {
		use := out[i].Present
		use[iLight] = false
		if lm := first(use); lm != nil {
			judged = append(judged, out[i])
			p = append(p, lm.Predict(&out[i]))
		}
	}
	applyTimetable(out, estimateEvidence(judged, p), opts)
	return out
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// fit is a ridge-penalised logistic regression by Newton's method (iteratively
// reweighted least squares) on standardised features (xs[i][j] is feature
// names[j] of sample i).
func fit(name string, names []string, xs [][]float64, ys []float64) (*Logistic, error) {
	n, d := len(xs), len(names)
	lm := &Logistic{Name: name, Features: names, Mean: make([]float64, d), Scale: make([]float64, d), Weights: make([]float64, d), Samples: n}
	for j := range d {
		var s float64
		for i := range n {
			s += xs[i][j]
		}
		mean := s / float64(n)
		var v float64
		for i := range n {
			v += (xs[i][j] - mean) * (xs[i][j] - mean)
		}
		sd := math.Sqrt(v / float64(n))
		if sd == 0 {
			sd = 1
		}
		lm.Mean[j], lm.Scale[j] = mean, sd
	}
	z := make([][]float64, n) // standardised, with a leading 1
	for i := range n {
		z[i] = make([]float64, d+1)
		z[i][0] = 1
		for j := range d {
			z[i][j+1] = (xs[i][j] - lm.Mean[j]) / lm.Scale[j]
		}
	}
	beta := make([]float64, d+1)
	for iter := 0; iter < 100; iter++ {
		h := make([][]float64, d+1)
		for a := range h {
			h[a] = make([]float64, d+1)
		}
		g := make([]float64, d+1)
		for i := range n {
			var eta float64
			for a := range beta {
				eta += beta[a] * z[i][a]
			}
			p := sigmoid(eta)
			wt := math.Max(p*(1-p), 1e-12)
			for a := range d + 1 {
				g[a] += (ys[i] - p) * z[i][a]
				for b := 0; b <= a; b++ {
					h[a][b] += wt * z[i][a] * z[i][b]
				}
			}
		}
		for a := 1; a <= d; a++ { // the intercept is not penalised
			g[a] -= ridge * beta[a]
			h[a][a] += ridge
		}
		for a := range d + 1 {
			for b := a + 1; b <= d; b++ {
				h[a][b] = h[b][a]
			}
		}
		step, err := solve(h, g)
		if err != nil {
			return nil, fmt.Errorf("occupancy: fit %s: %w", name, err)
		}
		var norm float64
		for a := range beta {
			beta[a] += step[a]
			norm = math.Max(norm, math.Abs(step[a]))
		}
		if norm < 1e-10 {
			break
		}
	}
	lm.Intercept = beta[0]
	copy(lm.Weights, beta[1:])
	var right int
	for i := range n {
		var eta float64
		for a := range beta {
			eta += beta[a] * z[i][a]
		}
		if (sigmoid(eta) >= 0.5) == (ys[i] == 1) {
			right++
		}
	}
	lm.TrainAccuracy = float64(right) / float64(n)
	return lm, nil
}

// solve solves the symmetric positive definite system h·x = g by Cholesky.
func solve(h [][]float64, g []float64) ([]float64, error) {
	n := len(g)
	l := make([][]float64, n)
	for i := range l {
		l[i] = make([]float64, n)
	}
	for i := range n {
		for j := 0; j <= i; j++ {
			s := h[i][j]
			for k := range j {
				s -= l[i][k] * l[j][k]
			}
			if i == j {
				if s <= 0 {
					return nil, errors.New("matrix not positive definite")
				}
				l[i][i] = math.Sqrt(s)
			} else {
				l[i][j] = s / l[j][j]
			}
		}
	}
	y := make([]float64, n)
	for i := range n {
		s := g[i]
		for k := range i {
			s -= l[i][k] * y[k]
		}
		y[i] = s / l[i][i]
	}
	x := make([]float64, n)
	for i := n - 1; i >= 0; i-- {
		s := y[i]
		for k := i + 1; k < n; k++ {
			s -= l[k][i] * x[k]
		}
		x[i] = s / l[i][i]
	}
	return x, nil
}

// Confusion counts a binary classifier's answers.
type Confusion struct {
	TP, FP, TN, FN int
}

// Add counts one answer.
func (c *Confusion) Add(predicted, actual bool) {
	switch {
	case predicted && actual:
		c.TP++
	case predicted:
		c.FP++
	case actual:
		c.FN++
	default:
		c.TN++
	}
}

func (c *Confusion) merge(o Confusion) {
	c.TP, c.FP, c.TN, c.FN = c.TP+o.TP, c.FP+o.FP, c.TN+o.TN, c.FN+o.FN
}

// Total is how many answers were counted.
func (c Confusion) Total() int { return c.TP + c.FP + c.TN + c.FN }

// Accuracy is the share of right answers.
func (c Confusion) Accuracy() float64 { return ratio(c.TP+c.TN, c.Total()) }

// Precision is the share of "occupied" answers that were right.
func (c Confusion) Precision() float64 { return ratio(c.TP, c.TP+c.FP) }

// Recall is the share of occupied minutes found.
func (c Confusion) Recall() float64 { return ratio(c.TP, c.TP+c.FN) }

func ratio(a, b int) float64 {
	if b == 0 {
		return math.NaN()
	}
	return float64(a) / float64(b)
}

func (c Confusion) String() string {
	return fmt.Sprintf("accuracy %.2f %%, precision %.2f %%, recall %.2f %% (n=%d; occupied: %d found, %d missed; empty: %d right, %d false alarms)",
		100*c.Accuracy(), 100*c.Precision(), 100*c.Recall(), c.Total(), c.TP, c.FN, c.TN, c.FP)
}

// Judge compares estimates with the samples' occupancy: each sample is judged by
// the latest estimate at or before it (≥ 0.5 = occupied). Samples before the
// first estimate count as judged "empty".
func Judge(est []Estimate, samples []Sample) Confusion {
	var c Confusion
	k := -1
	for _, s := range samples {
		for k+1 < len(est) && !est[k+1].Minute.After(s.Time) {
			k++
		}
		p := 0.0
		if k >= 0 {
			p = est[k].P
		}
		c.Add(p >= 0.5, s.Occupied)
	}
	return c
}

// Offline runs the estimator over the samples in process, with only the streams
// in use, as the room service would over their rollups.
func (m *Model) Offline(samples []Sample, use [4]bool) []Estimate {
	if len(samples) == 0 {
		return nil
	}
	return m.Estimate(Rollups(samples, use), samples[0].Time, samples[len(samples)-1].Time)
}
