// Package occupancy estimates whether a room is occupied from the streams it has
// (co2, temperature, humidity, light) when no occupancy, PIR or motion sensor says
// so. It works on the room service's per-minute and per-hour rollups, in reading
// time: the estimate of a minute uses only the rollups of that minute and of the
// minutes and hours before it, so a replay at any speed, in any batching, gives the
// same answers as live once the readings are in.
//
// The model is a logistic regression per set of available streams (fifteen
// models, from co2 alone to all four), trained from the UCI Occupancy Detection
// training set by cmd/occupancy-train and committed as model.json. A stream
// missing from a room, or silent for more than FillAge, makes the estimator use the
// model of the streams that remain.
package occupancy

import (
	"math"
	"slices"
	"strings"
	"time"
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
	// rollups must reach: the changes reach 60 minutes back, the baseline reads
	// the current hour from minutes, and a minute without a reading there takes
	// the value of up to FillAge before it.
	MinuteLookback = 60*time.Minute + FillAge
	// HourLookback is how far the baseline (the room's lowest level) reaches back,
	// in completed hours.
	HourLookback = 24 * time.Hour
	// FillAge is how long a stream's last minute stands in for the minutes
	// without a reading; a stream silent for longer counts as missing.
	FillAge = 10 * time.Minute
	// Influence is how long after a changed minute the estimates depend on it
	// through the changes, the recent peak and the current hour's lowest level.
	Influence = 60 * time.Minute
	// BaselineInfluence is how long after a changed minute the estimates depend
	// on it through the baseline (its hour's rollup).
	BaselineInfluence = HourLookback + time.Hour
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
	// Doc says what it is, for the model file and the docs.
	Doc string
	f   func(x *point) float64
}

// point is what the features read at one minute.
type point struct {
	level, base, peak30 [4]float64 // by index of Inputs
	ago                 [len(lags)][4]float64
}

// lags are the minutes back the changes are taken over.
var lags = [...]int{5, 15, 30, 60}

const (
	lag5 = iota
	lag15
	lag30
	lag60
)

const (
	iCO2 = iota
	iTemp
	iHum
	iLight
)

// Features are every feature; a model uses those whose Needs are all present.
var Features = []Feature{
	{"light", []string{Light}, "light level, lux/100", func(x *point) float64 { return x.level[iLight] / 100 }},
	{"co2_above_baseline", []string{CO2}, "co2 minus the room's lowest co2 of the last 24 h, ppm/100", func(x *point) float64 { return (x.level[iCO2] - x.base[iCO2]) / 100 }},
	{"co2_change_5m", []string{CO2}, "co2 change over 5 minutes, ppm/10", change(iCO2, lag5, 0.1)},
	{"co2_change_15m", []string{CO2}, "co2 change over 15 minutes, ppm/10", change(iCO2, lag15, 0.1)},
	{"co2_change_30m", []string{CO2}, "co2 change over 30 minutes, ppm/10", change(iCO2, lag30, 0.1)},
	{"co2_change_60m", []string{CO2}, "co2 change over 60 minutes, ppm/10", change(iCO2, lag60, 0.1)},
	{"co2_below_peak_30m", []string{CO2}, "co2 minus the highest co2 of the last 30 minutes (decay after people leave), ppm/100", func(x *point) float64 { return (x.level[iCO2] - x.peak30[iCO2]) / 100 }},
	{"temperature_above_baseline", []string{Temperature}, "temperature minus the lowest of the last 24 h, °C", func(x *point) float64 { return x.level[iTemp] - x.base[iTemp] }},
	{"temperature_change_5m", []string{Temperature}, "temperature change over 5 minutes, °C/10", change(iTemp, lag5, 10)},
	{"temperature_change_15m", []string{Temperature}, "temperature change over 15 minutes, °C/10", change(iTemp, lag15, 10)},
	{"temperature_change_30m", []string{Temperature}, "temperature change over 30 minutes, °C/10", change(iTemp, lag30, 10)},
	{"temperature_change_60m", []string{Temperature}, "temperature change over 60 minutes, °C/10", change(iTemp, lag60, 10)},
	{"humidity_change_5m", []string{Humidity}, "relative humidity change over 5 minutes, %RH", change(iHum, lag5, 1)},
	{"humidity_change_15m", []string{Humidity}, "relative humidity change over 15 minutes, %RH", change(iHum, lag15, 1)},
	{"humidity_change_30m", []string{Humidity}, "relative humidity change over 30 minutes, %RH", change(iHum, lag30, 1)},
	{"humidity_change_60m", []string{Humidity}, "relative humidity change over 60 minutes, %RH", change(iHum, lag60, 1)},
	{"humidity_ratio_change_15m", []string{Temperature, Humidity}, "change of the water content of the air over 15 minutes, g/kg", hrChange(lag15)},
	{"humidity_ratio_change_30m", []string{Temperature, Humidity}, "change of the water content of the air over 30 minutes, g/kg", hrChange(lag30)},
	{"humidity_ratio_change_60m", []string{Temperature, Humidity}, "change of the water content of the air over 60 minutes, g/kg", hrChange(lag60)},
}

func change(i, lag int, scale float64) func(x *point) float64 {
	return func(x *point) float64 { return (x.level[i] - x.ago[lag][i]) * scale }
}

func hrChange(lag int) func(x *point) float64 {
	return func(x *point) float64 {
		return 1000 * (HumidityRatio(x.level[iTemp], x.level[iHum]) - HumidityRatio(x.ago[lag][iTemp], x.ago[lag][iHum]))
	}
}

// withLight says whether a model with light uses the feature: light decides
// nearly alone, and co2 levels that drift make it worse.
func withLight(f Feature) bool {
	return !slices.Contains(f.Needs, CO2) && !slices.Contains(f.Needs, Humidity) && !lightExclude[f.Name]
}

var lightExclude = map[string]bool{"temperature_above_baseline": true, "temperature_change_60m": true, "temperature_change_30m": true}

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

// FeaturesFor lists the features a model over the present streams uses.
func FeaturesFor(present [4]bool) []Feature {
	var out []Feature
	for _, f := range Features {
		ok := true
		for _, n := range f.Needs {
			if !present[slices.Index(Inputs, n)] {
				ok = false
			}
		}
		if present[iLight] && !withLight(f) {
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
	val    []float64 // NaN: no value (never seen, or older than FillAge)
	raw    []bool    // a rollup of this minute exists
	minima []float64 // rollup minimum of the minute (NaN without one)
}

// Rows computes the feature points of every minute in [from, to] that holds a
// reading of at least one input type, with which inputs are present. It is what
// both the estimator and the training read.
func Rows(w Window, from, to time.Time) []Row {
	from, to = from.UTC().Truncate(time.Minute), to.UTC().Truncate(time.Minute)
	if to.Before(from) {
		return nil
	}
	start := from.Add(-MinuteLookback)
	n := int(to.Sub(start)/time.Minute) + 1
	fill := int(FillAge / time.Minute)
	var ss [4]series
	for i, typ := range Inputs {
		s := series{val: make([]float64, n), raw: make([]bool, n), minima: make([]float64, n)}
		for j := range n {
			s.val[j], s.minima[j] = math.NaN(), math.NaN()
		}
		for _, st := range w.Minutes[typ] {
			j := int(st.Start.Sub(start) / time.Minute)
			if j < 0 || j >= n || st.Count == 0 {
				continue
			}
			s.val[j], s.raw[j], s.minima[j] = st.Sum/float64(st.Count), true, st.Min
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
	var out []Row
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
		for i := range ss {
			s := &ss[i]
			if math.IsNaN(s.val[j]) {
				continue
			}
			r.Present[i] = true
			v := s.val[j]
			r.x.level[i] = v
			for l, k := range lags {
				r.x.ago[l][i] = back(s.val, j, k, v)
			}
			peak := v
			for k := max(0, j-30); k <= j; k++ {
				if !math.IsNaN(s.val[k]) && s.val[k] > peak {
					peak = s.val[k]
				}
			}
			r.x.peak30[i] = peak
			r.x.base[i] = baseline(w.Hours[Inputs[i]], s, start, m, j, v)
		}
		out = append(out, r)
	}
	return out
}

// back is the value k minutes before j, or the earliest value after that when
// the stream started later (so a new stream has no slope), or v.
func back(val []float64, j, k int, v float64) float64 {
	for i := max(0, j-k); i < j; i++ {
		if !math.IsNaN(val[i]) {
			return val[i]
		}
	}
	return v
}

// baseline is the lowest level of a stream over the completed hours of the last
// HourLookback and the minutes of the current hour up to m.
func baseline(hours []Stat, s *series, start, m time.Time, j int, v float64) float64 {
	b := v
	hour := m.Truncate(time.Hour)
	for _, h := range hours {
		if h.Count > 0 && !h.Start.Before(hour.Add(-HourLookback)) && h.Start.Before(hour) && h.Min < b {
			b = h.Min
		}
	}
	k0 := int(hour.Sub(start) / time.Minute)
	for k := max(0, k0); k <= j; k++ {
		if s.raw[k] && s.minima[k] < b {
			b = s.minima[k]
		}
	}
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
	rows := Rows(w, from, to)
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
