package occupancy

import (
	"math"
	"slices"
	"strings"
	"time"
)

// The timetable candidates (training options, not the committed model). Rooms
// keep a timetable, so a room's own previous days say how likely it is to be in
// use at a time of day. The time of day is the readings' own clock: the same
// minute a whole number of days before, in reading time, with no time zone
// (a room whose sensors stamp UTC sees its timetable move by an hour across a
// daylight saving change). For each of the TimetableDays days before a minute,
// the hours overlapping TimetableWindow either side of the same time that day
// give that day's verdict (the largest evidence of those hours); a day without
// any of those hours gives none. The feature is the logit of the smoothed share
// (k+1)/(n+2) of the n days with a verdict, k the sum of their verdicts, so a
// room without history reads 0 (no opinion); a second feature is n over
// TimetableDays.
//
// The evidence of an hour comes from the streams (never the labels, never the
// estimates) or, for TimetableEstimates, from a first-stage model's estimates:
//
//   - TimetableCO2Rise: the hour's co2 mean is TimetableRise above the hour
//     before's;
//   - TimetableCO2Above: the hour's co2 mean is TimetableAbove above the room's
//     lowest hourly mean of the 24 hours up to it;
//   - TimetableWaterRise: the hour's mean water content of the air is
//     TimetableWaterStep above the hour before's;
//   - TimetableEstimates: the share of the hour's minutes the first-stage
//     model (the same options without the timetable) says occupied. Using the
//     first stage rather than the estimates of the model itself keeps the
//     estimates from feeding themselves.
const (
	TimetableCO2Rise   = "co2-rise"
	TimetableCO2Above  = "co2-above"
	TimetableWaterRise = "water-rise"
	TimetableEstimates = "estimates"
)

// Thresholds of the evidence, and the defaults of the look-back.
const (
	TimetableRise      = 20      // ppm, hour mean on the hour before
	TimetableAbove     = 100     // ppm, hour mean above its 24-hour low
	TimetableWaterStep = 0.15e-3 // kg/kg, hour mean on the hour before

	DefaultTimetableDays   = 7
	DefaultTimetableWindow = 30 * time.Minute
)

// DefaultAirChange is the air-change rate (per minute) the mass-balance
// feature assumes while a room has shown no co2 decay in the last 24 hours.
const DefaultAirChange = 0.01

// timetableKind is an evidence kind with the streams a model must have to use
// it.
type timetableKind struct {
	kind  string
	needs []string
}

var timetableKinds = []timetableKind{
	{TimetableCO2Rise, []string{CO2}},
	{TimetableCO2Above, []string{CO2}},
	{TimetableWaterRise, []string{Temperature, Humidity}},
	{TimetableEstimates, nil},
}

// timetableFeatures are the two features of each evidence kind.
func timetableFeatures() []Feature {
	var out []Feature
	for _, k := range timetableKinds {
		name := "timetable_" + strings.ReplaceAll(k.kind, "-", "_")
		use := func(o TrainOptions) bool { return o.Timetable == k.kind }
		out = append(out,
			Feature{Name: name, Needs: k.needs, Option: use,
				Doc: "logit of the smoothed share of the room's previous days with " + k.kind + " evidence at this time of day",
				f:   func(x *point) float64 { return x.tt }},
			Feature{Name: name + "_days", Needs: k.needs, Option: use,
				Doc: "share of the look-back days that gave a verdict",
				f:   func(x *point) float64 { return x.ttDays }})
	}
	return out
}

func (o TrainOptions) timetableDays() int {
	if o.TimetableDays > 0 {
		return o.TimetableDays
	}
	return DefaultTimetableDays
}

func (o TrainOptions) timetableWindow() time.Duration {
	if o.TimetableWindowMinutes > 0 {
		return time.Duration(o.TimetableWindowMinutes) * time.Minute
	}
	return DefaultTimetableWindow
}

// TimetableLookback is how far before a minute the timetable reads hours.
func (o TrainOptions) TimetableLookback() time.Duration {
	if o.Timetable == "" {
		return 0
	}
	return time.Duration(o.timetableDays())*24*time.Hour + o.timetableWindow() + time.Hour
}

// hourEvidence maps an hour to its evidence in [0, 1]; an hour not in it has
// none.
type hourEvidence map[time.Time]float64

// streamEvidence is the evidence of every hour with the rollups it needs.
func streamEvidence(hb *hourBaselines, kind string) hourEvidence {
	ev := hourEvidence{}
	step := func(i int, min float64) {
		for h, v := range hb.means {
			p := hb.means[h.Add(-time.Hour)]
			if p != nil && !math.IsNaN(v[i]) && !math.IsNaN(p[i]) {
				ev[h] = b2f(v[i]-p[i] >= min)
			}
		}
	}
	switch kind {
	case TimetableCO2Rise:
		step(iCO2, TimetableRise)
	case TimetableWaterRise:
		step(iHR, TimetableWaterStep)
	case TimetableCO2Above:
		for h, v := range hb.means {
			if math.IsNaN(v[iCO2]) {
				continue
			}
			low := v[iCO2]
			for g := h.Add(-24 * time.Hour); g.Before(h); g = g.Add(time.Hour) {
				if p := hb.means[g]; p != nil && !math.IsNaN(p[iCO2]) {
					low = math.Min(low, p[iCO2])
				}
			}
			ev[h] = b2f(v[iCO2]-low >= TimetableAbove)
		}
	}
	return ev
}

// estimateEvidence is, for every hour with estimated minutes, the share of
// them estimated occupied.
func estimateEvidence(rows []Row, p []float64) hourEvidence {
	n := map[time.Time]int{}
	ev := hourEvidence{}
	for i := range rows {
		h := rows[i].Minute.Truncate(time.Hour)
		n[h]++
		ev[h] += b2f(p[i] >= 0.5)
	}
	for h := range ev {
		ev[h] /= float64(n[h])
	}
	return ev
}

// applyTimetable sets the timetable features of the rows from the evidence.
// Only hours completed before a row's minute are read.
func applyTimetable(rows []Row, ev hourEvidence, opts TrainOptions) {
	days, win := opts.timetableDays(), opts.timetableWindow()
	for i := range rows {
		r := &rows[i]
		var n, k float64
		for d := 1; d <= days; d++ {
			at := r.Minute.Add(-time.Duration(d) * 24 * time.Hour)
			v := math.NaN()
			for h := at.Add(-win).Truncate(time.Hour); !h.After(at.Add(win)); h = h.Add(time.Hour) {
				if e, ok := ev[h]; ok && !h.Add(time.Hour).After(r.Minute) {
					v = math.Max(e, nanTo(v, e))
				}
			}
			if !math.IsNaN(v) {
				n++
				k += v
			}
		}
		r.x.tt = math.Log((k + 1) / (n - k + 1))
		r.x.ttDays = n / float64(days)
	}
}

func nanTo(v, or float64) float64 {
	if math.IsNaN(v) {
		return or
	}
	return v
}

// airChange is the room's air-change rate per minute from its own co2 decays
// in the completed hours before hour: the fastest decay of the co2 excess
// over base from one hourly mean to the next while both excesses are at least
// 50 ppm (people still in the room only slow a decay down), or
// DefaultAirChange when none shows, at most 0.1.
func (hb *hourBaselines) airChange(hour time.Time, base float64) float64 {
	lam := math.NaN()
	for h := hour.Add(-HourLookback + time.Hour); h.Before(hour); h = h.Add(time.Hour) {
		p, v := hb.means[h.Add(-time.Hour)], hb.means[h]
		if p == nil || v == nil || math.IsNaN(p[iCO2]) || math.IsNaN(v[iCO2]) {
			continue
		}
		e1, e2 := p[iCO2]-base, v[iCO2]-base
		if e2 >= 50 && e1 > e2 {
			lam = math.Max(nanTo(lam, 0), math.Log(e1/e2)/60)
		}
	}
	if math.IsNaN(lam) {
		return DefaultAirChange
	}
	return math.Min(lam, 0.1)
}

// isTimetableKind says whether kind names an evidence kind.
func isTimetableKind(kind string) bool {
	return slices.ContainsFunc(timetableKinds, func(k timetableKind) bool { return k.kind == kind })
}
