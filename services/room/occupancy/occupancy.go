// Package occupancy estimates whether a room is occupied from the streams it has
// (co2, temperature, humidity, light) when no occupancy, PIR or motion sensor says
// so. It works on the room service's per-minute and per-hour rollups, in reading
// time: the estimate of a minute uses only the rollups of that minute and of the
// minutes and hours before it, so a replay at any speed, in any batching, gives the
// same answers as live once the readings are in.
//
// The model is a logistic regression per set of available streams (fifteen
// models, from co2 alone to all four), trained from the UCI Occupancy Detection
// training set by tools/occupancy-train and committed as model.json. A stream
// missing from a room, or silent for more than FillAge, makes the estimator use the
// model of the streams that remain. Without light the features are changes and
// levels relative to the room's own baseline, never an absolute co2 level, so a
// co2 sensor's offset or drift cancels.
package occupancy

import (
	"math"
	"slices"
	"strings"
	"time"

	"github.com/atrium-iot/atrium/internal/reading"
)

// The reading types the estimator reads.
const (
	CO2         = "co2"
	Temperature = "temperature"
	Humidity    = "humidity"
	Light       = "light"
)

// Inputs are the reading types the estimator reads, in the order that names a
// model ("co2+temperature+humidity+light").
var Inputs = []string{CO2, Temperature, Humidity, Light}

// Series is the room history type the estimates are kept under.
const Series = "occupied_estimate"

const (
	// MinuteLookback is how far before the first estimated minute the minute
	// rollups must reach: the changes compare 5-minute medians up to 60 minutes
	// apart, and a minute without a reading takes the value of up to FillAge
	// before it.
	MinuteLookback = maxLag + medianSpan + FillAge
	// HourLookback is how far the baseline (the room's lowest hourly mean)
	// reaches back, in completed hours.
	HourLookback = 24 * time.Hour
	// FillAge is how long a stream's last minute stands in for the minutes
	// without a reading; a stream silent for longer counts as missing.
	FillAge = 10 * time.Minute
	// Influence is how long after a changed minute the estimates depend on it
	// through the medians and the changes. A model trained with Gated (a
	// training option, not the committed model) would need RiseFade +
	// 2·medianSpan (TestLookbackCoversTheModel).
	Influence = maxLag + medianSpan
	// BaselineInfluence is how long after a changed minute the estimates depend
	// on it through the baseline (its hour's rollup).
	BaselineInfluence = HourLookback + time.Hour
)

const (
	maxLag     = 60 * time.Minute
	medianSpan = 5 * time.Minute
)

// Stat is a rollup of one type over the period starting at Start, as the room
// store keeps it.
type Stat struct {
	Start         time.Time
	Count         int64
	Sum, Min, Max float64
}

// Window holds the rollups an estimate needs, per type, in time order: minute
// rollups from MinuteLookback before the first estimated minute to the last, and
// hour rollups from HourLookback before the first estimated minute's hour.
type Window struct {
	Minutes map[string][]Stat
	Hours   map[string][]Stat
}

// Estimate is the probability that the room was occupied in the minute starting
// at Minute, and the name of the model that said so.
type Estimate struct {
	Minute time.Time
	P      float64
	Model  string
}

// Feature is one input of a logistic model, computed from the streams of a
// minute.
type Feature struct {
	Name string
	// Needs are the types that must be present for it.
	Needs []string
	// Without is a type whose presence drops it (a better feature then
	// carries the same information).
	Without string
	// Light says that the models with light use it: light decides nearly
	// alone, and co2 and humidity made those models worse.
	Light bool
	// Gated says which models use it: 0 every model, gated the models with
	// co2 and without light of a model file with Gated, ungated the others.
	Gated gating
	// Option, when set, says which model files use it: those trained with
	// the options it accepts (the timetable and mass-balance candidates).
	Option func(o TrainOptions) bool
	// Doc says what it is, for the docs.
	Doc string
	f   func(x *point) float64
}

type gating int8

const (
	ungated gating = 1 + iota
	gated
)

// RiseGate is the co2 rise that opens the gate of the gated features: the
// 5-minute median up this much on the one 5 minutes before. RiseFade is how
// long the gate takes to close after the last rise.
const (
	RiseGate = 15 // ppm
	RiseFade = 300 * time.Minute
)

// point is what the features read at one minute, by index of Inputs.
type point struct {
	level [4]float64 // the minute's value (mean of its rollup, or filled)
	med   [4]float64 // median of the minute values of the last 5 minutes
	// ago is med as it was lags[l] minutes before (or, for a stream younger
	// than that, at its start, so a new stream has no change).
	ago [len(lags)][4]float64
	// base is the room's lowest hourly mean of the last 24 completed hours, or
	// med when that is lower.
	base [4]float64
	// hrBase is the same for the humidity ratio (from the hourly means of
	// temperature and humidity).
	hrBase float64
	// sinceRise is the minutes since co2 last rose by RiseGate in 5 minutes
	// (at most RiseFade; co2 that fails the check does not rise).
	sinceRise float64
	// tt is the logit of the smoothed share of the room's previous days that
	// showed the timetable's evidence at this time of day, ttDays the share
	// of TimetableDays with a verdict (timetable.go).
	tt, ttDays float64
	// lambda is the room's air-change rate estimated from its own co2 decays
	// (per minute, mass balance candidate).
	lambda float64
}

// gate is 1 at a co2 rise, fading linearly to 0 over RiseFade.
func (x *point) gate() float64 { return 1 - x.sinceRise/RiseFade.Minutes() }

// lags are the minutes back the changes are taken over.
var lags = [...]int{5, 15, 30, 60}

const (
	iCO2 = iota
	iTemp
	iHum
	iLight
	iHR   // the humidity ratio, in baselines
	nBase // baselines: the inputs and the humidity ratio
)

// Features are every feature; a model uses those whose Needs are all present.
var Features = append(baseFeatures, timetableFeatures()...)

var baseFeatures = []Feature{
	{Name: "light", Needs: []string{Light}, Light: true, Doc: "light level, lx/100",
		f: func(x *point) float64 { return x.level[iLight] / 100 }},
	{Name: "co2_rise_5m", Needs: []string{CO2}, Doc: "co2 change over 5 minutes relative to how far above the baseline it was then, %", f: co2Rise(0)},
	{Name: "co2_rise_15m", Needs: []string{CO2}, Doc: "the same over 15 minutes", f: co2Rise(1)},
	{Name: "co2_rise_30m", Needs: []string{CO2}, Doc: "the same over 30 minutes", f: co2Rise(2)},
	{Name: "co2_rise_60m", Needs: []string{CO2}, Doc: "the same over 60 minutes", f: co2Rise(3)},
	{Name: "minutes_since_co2_rise", Needs: []string{CO2}, Gated: gated, Doc: "minutes since co2 last rose by RiseGate in 5 minutes (at most RiseFade), h",
		f: func(x *point) float64 { return x.sinceRise / 60 }},
	{Name: "temperature_above_baseline_gated", Needs: []string{Temperature, CO2}, Gated: gated, Doc: "temperature above the room's baseline times the gate of a recent co2 rise, °C",
		f: func(x *point) float64 { return (x.med[iTemp] - x.base[iTemp]) * x.gate() }},
	{Name: "humidity_ratio_above_baseline_gated", Needs: []string{Temperature, Humidity, CO2}, Gated: gated, Doc: "water content above the room's baseline times the gate of a recent co2 rise, g/kg",
		f: func(x *point) float64 { return 1000 * (HumidityRatio(x.med[iTemp], x.med[iHum]) - x.hrBase) * x.gate() }},
	{Name: "temperature_above_baseline", Needs: []string{Temperature}, Gated: ungated, Doc: "temperature minus the room's baseline, °C",
		f: func(x *point) float64 { return x.med[iTemp] - x.base[iTemp] }},
	{Name: "temperature_change_5m", Needs: []string{Temperature}, Light: true, Doc: "temperature change over 5 minutes, °C/10", f: change(iTemp, 0, 10)},
	{Name: "temperature_change_15m", Needs: []string{Temperature}, Light: true, Doc: "the same over 15 minutes", f: change(iTemp, 1, 10)},
	{Name: "temperature_change_30m", Needs: []string{Temperature}, Doc: "the same over 30 minutes", f: change(iTemp, 2, 10)},
	{Name: "temperature_change_60m", Needs: []string{Temperature}, Doc: "the same over 60 minutes", f: change(iTemp, 3, 10)},
	{Name: "humidity_change_5m", Needs: []string{Humidity}, Without: Temperature, Doc: "relative humidity change over 5 minutes, %RH", f: change(iHum, 0, 1)},
	{Name: "humidity_change_15m", Needs: []string{Humidity}, Without: Temperature, Doc: "the same over 15 minutes", f: change(iHum, 1, 1)},
	{Name: "humidity_change_30m", Needs: []string{Humidity}, Without: Temperature, Doc: "the same over 30 minutes", f: change(iHum, 2, 1)},
	{Name: "humidity_change_60m", Needs: []string{Humidity}, Without: Temperature, Doc: "the same over 60 minutes", f: change(iHum, 3, 1)},
	{Name: "humidity_ratio_above_baseline", Needs: []string{Temperature, Humidity}, Gated: ungated, Doc: "water content of the air minus the room's baseline, g/kg",
		f: func(x *point) float64 { return 1000 * (HumidityRatio(x.med[iTemp], x.med[iHum]) - x.hrBase) }},
	{Name: "humidity_ratio_change_5m", Needs: []string{Temperature, Humidity}, Doc: "change of the water content of the air over 5 minutes, g/kg", f: hrChange(0)},
	{Name: "humidity_ratio_change_15m", Needs: []string{Temperature, Humidity}, Doc: "the same over 15 minutes", f: hrChange(1)},
	{Name: "humidity_ratio_change_30m", Needs: []string{Temperature, Humidity}, Doc: "the same over 30 minutes", f: hrChange(2)},
	{Name: "humidity_ratio_change_60m", Needs: []string{Temperature, Humidity}, Doc: "the same over 60 minutes", f: hrChange(3)},
	{Name: "co2_generation", Needs: []string{CO2}, Option: func(o TrainOptions) bool { return o.MassBalance },
		Doc: "co2 the room gains per minute by the mass balance: the 15-minute change plus the air-change rate times co2 above the baseline, ppm/min",
		f: func(x *point) float64 {
			return (x.med[iCO2]-x.ago[1][iCO2])/15 + x.lambda*(x.med[iCO2]-x.base[iCO2])
		}},
	{Name: "humidity_ratio_generation", Needs: []string{Temperature, Humidity}, Option: func(o TrainOptions) bool { return o.MassBalanceWater },
		Doc: "water the room's air gains per minute by the mass balance, with the air-change rate of co2 (or DefaultAirChange), mg/kg/min",
		f: func(x *point) float64 {
			hr := HumidityRatio(x.med[iTemp], x.med[iHum])
			return 1e6 * ((hr-HumidityRatio(x.ago[1][iTemp], x.ago[1][iHum]))/15 + x.lambda*(hr-x.hrBase))
		}},
}

// co2Rise is the change of co2 over a lag, in percent of how far above the
// room's baseline it was at the start of the lag (at least 50 ppm): 100 ppm
// more counts as much as a doubling of the excess, whatever the sensor's offset.
func co2Rise(lag int) func(x *point) float64 {
	return func(x *point) float64 {
		from := x.ago[lag][iCO2]
		return 100 * (x.med[iCO2] - from) / math.Max(50, from-x.base[iCO2]+50)
	}
}

func change(i, lag int, scale float64) func(x *point) float64 {
	return func(x *point) float64 { return (x.med[i] - x.ago[lag][i]) * scale }
}

func hrChange(lag int) func(x *point) float64 {
	return func(x *point) float64 {
		return 1000 * (HumidityRatio(x.med[iTemp], x.med[iHum]) - HumidityRatio(x.ago[lag][iTemp], x.ago[lag][iHum]))
	}
}

// HumidityRatio is the mass of water per mass of dry air (kg/kg) at a
// temperature (°C) and relative humidity (%RH) at sea-level pressure.
func HumidityRatio(tempC, rh float64) float64 {
	ps := 611.2 * math.Exp(17.62*tempC/(243.12+tempC)) // saturation pressure, Pa (Magnus)
	pv := rh / 100 * ps
	return 0.622 * pv / (101325 - pv)
}

// ModelName names the model of a set of present streams: the present types of
// Inputs joined by "+".
func ModelName(present [4]bool) string {
	var parts []string
	for i, ok := range present {
		if ok {
			parts = append(parts, Inputs[i])
		}
	}
	return strings.Join(parts, "+")
}

// FeaturesFor lists the features a model over the present streams uses, in a
// model file trained with opts.
func FeaturesFor(present [4]bool, opts TrainOptions) []Feature {
	var out []Feature
	for _, f := range Features {
		ok := !present[iLight] || f.Light
		ok = ok && (f.Option == nil || f.Option(opts))
		gates := opts.Gated && present[iCO2] && !present[iLight]
		switch f.Gated {
		case gated:
			ok = ok && gates
		case ungated:
			ok = ok && !gates
		}
		for _, n := range f.Needs {
			ok = ok && present[slices.Index(Inputs, n)]
		}
		if f.Without != "" && present[slices.Index(Inputs, f.Without)] {
			ok = false
		}
		if ok {
			out = append(out, f)
		}
	}
	return out
}

// series is one type's minute means over the frame, forward filled up to FillAge.
type series struct {
	val []float64 // NaN: no value (never seen, or older than FillAge)
	raw []bool    // a rollup of this minute exists
}

// Rows computes the feature points of every minute in [from, to] that holds a
// reading of at least one input type, with which inputs are present. It is what
// both the estimator and the training read. With opts.CO2Check, a co2 stream
// that fails CO2Plausible at a minute counts as missing there; the timetable
// features of evidence from the streams are computed too (those from
// estimates are left to the caller).
func Rows(w Window, from, to time.Time, opts TrainOptions) []Row {
	from, to = from.UTC().Truncate(time.Minute), to.UTC().Truncate(time.Minute)
	if to.Before(from) {
		return nil
	}
	start := from.Add(-MinuteLookback)
	n := int(to.Sub(start)/time.Minute) + 1
	fill := int(FillAge / time.Minute)
	var ss [4]series
	for i, typ := range Inputs {
		s := series{val: make([]float64, n), raw: make([]bool, n)}
		for j := range n {
			s.val[j] = math.NaN()
		}
		for _, st := range w.Minutes[typ] {
			j := int(st.Start.Sub(start) / time.Minute)
			if j < 0 || j >= n || st.Count == 0 {
				continue
			}
			s.val[j], s.raw[j] = reading.Mean(st.Sum, st.Count, st.Min, st.Max), true
		}
		last := -1
		for j := range n {
			if s.raw[j] {
				last = j
			} else if last >= 0 && j-last <= fill {
				s.val[j] = s.val[last]
			}
		}
		ss[i] = s
	}
	var co2OK []bool
	if opts.CO2Check {
		co2OK = co2Plausible(ss[iCO2])
	}
	since := sinceRise(ss[iCO2], co2OK)
	hb := newHourBaselines(w)
	var out []Row
	var lamHour time.Time
	var lam float64
	for m := from; !m.After(to); m = m.Add(time.Minute) {
		j := int(m.Sub(start) / time.Minute)
		any := false
		for i := range ss {
			any = any || ss[i].raw[j]
		}
		if !any {
			continue
		}
		r := Row{Minute: m}
		base := hb.at(m)
		for i := range ss {
			s := &ss[i]
			if math.IsNaN(s.val[j]) || i == iCO2 && co2OK != nil && !co2OK[j] {
				continue
			}
			r.Present[i] = true
			r.x.level[i] = s.val[j]
			r.x.med[i] = median(s.val, j)
			for l, k := range lags {
				r.x.ago[l][i] = medianAgo(s.val, j, k)
			}
			r.x.base[i] = math.Min(base[i], r.x.med[i])
		}
		r.x.hrBase = math.Min(base[iHR], HumidityRatio(r.x.med[iTemp], r.x.med[iHum]))
		r.x.sinceRise = since[j]
		if opts.MassBalance || opts.MassBalanceWater {
			if h := m.Truncate(time.Hour); !h.Equal(lamHour) {
				lamHour, lam = h, hb.airChange(h, base[iCO2])
			}
			r.x.lambda = lam
		}
		out = append(out, r)
	}
	if opts.Timetable != "" && opts.Timetable != TimetableEstimates {
		applyTimetable(out, streamEvidence(hb, opts.Timetable), opts)
	}
	return out
}

const medianMinutes = int(medianSpan / time.Minute)

// sinceRise is, for each minute, the minutes since the 5-minute median of co2
// last rose by RiseGate on the one 5 minutes before, at a minute co2 passed the
// check (ok nil: every minute), at most RiseFade.
func sinceRise(s series, ok []bool) []float64 {
	fade := int(RiseFade / time.Minute)
	out := make([]float64, len(s.val))
	last := -fade
	prev := make([]float64, len(s.val)) // the medians
	for j := range s.val {
		prev[j] = median(s.val, j)
		if j >= medianMinutes && prev[j]-prev[j-medianMinutes] >= RiseGate && (ok == nil || ok[j]) {
			last = j
		}
		out[j] = float64(min(j-last, fade))
	}
	return out
}

// The co2 plausibility check. People cannot move a room's co2 by more than
// MaxCO2Rate from one minute to the next: a person breathes out about 0.3 l of
// co2 a minute, 4 ppm a minute in a 75 m³ office, so even twenty people in it
// add under 100 ppm a minute, and ventilation removes at most the excess times
// the air changes (1,000 ppm above outdoors at 6 changes an hour: 100 ppm a
// minute). A working NDIR sensor's reading scatters by a few ppm, so the same
// value in StuckMinutes consecutive minutes is a hung sensor.
const (
	MaxCO2Rate   = 100 // ppm per minute
	StuckMinutes = 10
)

// checkSpan is the minutes the features of a minute read: the 5-minute median
// now and as it was up to 60 minutes before.
const checkSpan = int((maxLag + medianSpan) / time.Minute)

// co2Plausible says, for each minute, whether the co2 stream
// passes the check over the minutes the features read (checkSpan up to it):
// no value differs from the previous reading (at most FillAge before) by more
// than MaxCO2Rate per minute between them, and no StuckMinutes consecutive
// minutes hold the same value. A stream that fails counts as missing, so the estimate
// falls back to the model of the other streams until the implausible minutes
// are out of what the features read. It reads only the past and the present.
func co2Plausible(s series) []bool {
	n := len(s.val)
	bad := make([]bool, n) // the reading of minute k is implausible
	fill := int(FillAge / time.Minute)
	prev, run := -1, 0
	for k := range n {
		if !s.raw[k] {
			continue
		}
		if prev >= 0 && k-prev <= fill {
			if math.Abs(s.val[k]-s.val[prev]) > MaxCO2Rate*float64(k-prev) {
				bad[k] = true
			}
		}
		if prev >= 0 && prev == k-1 && s.val[k] == s.val[prev] {
			run++
		} else {
			run = 1
		}
		if run >= StuckMinutes {
			bad[k] = true
		}
		prev = k
	}
	ok := make([]bool, n)
	lastBad := -1 << 30
	for k := range n {
		if bad[k] {
			lastBad = k
		}
		ok[k] = k-lastBad >= checkSpan
	}
	return ok
}

// median is the median of the values of the medianSpan minutes ending at j
// (NaN when none has one).
func median(val []float64, j int) float64 {
	var b [medianMinutes]float64
	n := 0
	for k := max(0, j-medianMinutes+1); k <= j; k++ {
		if !math.IsNaN(val[k]) {
			b[n] = val[k]
			n++
		}
	}
	if n == 0 {
		return math.NaN()
	}
	slices.Sort(b[:n])
	if n%2 == 1 {
		return b[n/2]
	}
	return (b[n/2-1] + b[n/2]) / 2
}

// medianAgo is the median k minutes before j or, when the stream has no value
// then, the median at its first value after (so a new stream has no change).
func medianAgo(val []float64, j, k int) float64 {
	for i := max(0, j-k); i <= j; i++ {
		if v := median(val, i); !math.IsNaN(v) {
			return v
		}
	}
	return math.NaN() // not reached: val[j] has a value
}

// hourBaselines finds the room's baselines: the lowest hourly mean of each
// input (and of the humidity ratio, from the hourly means of temperature and
// humidity) over the HourLookback completed hours before a minute's hour.
type hourBaselines struct {
	means map[time.Time]*[nBase]float64 // NaN: no rollup that hour
	hour  time.Time
	cur   [nBase]float64
}

func newHourBaselines(w Window) *hourBaselines {
	hb := &hourBaselines{means: map[time.Time]*[nBase]float64{}}
	get := func(t time.Time) *[nBase]float64 {
		v := hb.means[t]
		if v == nil {
			v = &[nBase]float64{}
			for i := range v {
				v[i] = math.NaN()
			}
			hb.means[t] = v
		}
		return v
	}
	for i, typ := range Inputs {
		for _, h := range w.Hours[typ] {
			if h.Count > 0 {
				get(h.Start)[i] = reading.Mean(h.Sum, h.Count, h.Min, h.Max)
			}
		}
	}
	for _, v := range hb.means {
		if !math.IsNaN(v[iTemp]) && !math.IsNaN(v[iHum]) {
			v[iHR] = HumidityRatio(v[iTemp], v[iHum])
		}
	}
	return hb
}

// at is the baselines for minute m (+Inf where no completed hour has a mean).
func (hb *hourBaselines) at(m time.Time) [nBase]float64 {
	hour := m.Truncate(time.Hour)
	if hour.Equal(hb.hour) && !hb.hour.IsZero() {
		return hb.cur
	}
	var b [nBase]float64
	for i := range b {
		b[i] = math.Inf(1)
	}
	for h := hour.Add(-HourLookback); h.Before(hour); h = h.Add(time.Hour) {
		v := hb.means[h]
		if v == nil {
			continue
		}
		for i := range b {
			if !math.IsNaN(v[i]) && v[i] < b[i] {
				b[i] = v[i]
			}
		}
	}
	hb.hour, hb.cur = hour, b
	return b
}

// Row is the state of a room at one minute: which inputs are present and the
// feature points.
type Row struct {
	Minute  time.Time
	Present [4]bool
	x       point
}

// Vector computes the given features of the row.
func (r *Row) Vector(fs []Feature) []float64 {
	out := make([]float64, len(fs))
	for i, f := range fs {
		out[i] = f.f(&r.x)
	}
	return out
}

// Estimate computes the estimates of every minute in [from, to] that holds a
// reading of an input type, from the rollups of w.
func (m *Model) Estimate(w Window, from, to time.Time) []Estimate {
	var rows []Row
	if m.Timetable == TimetableEstimates && m.Stage1 != nil {
		// The first stage's estimates of the look-back days, then the rows
		// of [from, to] with the timetable they give.
		start := from.UTC().Truncate(time.Minute)
		past := Rows(w, start.Add(-m.TimetableLookback()), to, m.TrainOptions)
		past = estimateTimetable(past, m.Stage1.model, m.TrainOptions)
		if k := slices.IndexFunc(past, func(r Row) bool { return !r.Minute.Before(start) }); k >= 0 {
			rows = past[k:]
		}
	} else {
		rows = Rows(w, from, to, m.TrainOptions)
	}
	out := make([]Estimate, 0, len(rows))
	for i := range rows {
		r := &rows[i]
		name := ModelName(r.Present)
		lm, ok := m.byName[name]
		if !ok {
			continue
		}
		out = append(out, Estimate{Minute: r.Minute, P: lm.Predict(r), Model: name})
	}
	return out
}
