package room

import (
	"math"
	"sort"
	"time"

	"github.com/atrium-iot/atrium/internal/events"
	"github.com/atrium-iot/atrium/internal/reading"
)

// Window is the span the "last 5 minutes" figures cover. It is counted in whole
// minutes of the service's clock: the current minute and the four before it.
const Window = 5 * time.Minute

// Thresholds of the derived metrics.
const (
	AirGoodBelow     = 800.0  // co2 ppm
	AirModerateBelow = 1000.0 // co2 ppm
	AirPoorBelow     = 1500.0 // co2 ppm
	ComfortTempMin   = 20.0   // °C, inclusive
	ComfortTempMax   = 24.0   // °C, inclusive
	ComfortHumMin    = 30.0   // %RH, inclusive
	ComfortHumMax    = 60.0   // %RH, inclusive
)

// Sources of Metrics.Occupied.
const (
	OccupiedBySensor   = "sensor"
	OccupiedByEstimate = "estimate"
)

// EstimateThreshold is the probability from which an estimate says occupied.
const EstimateThreshold = 0.5

// Air quality classes.
const (
	AirGood     = "good"
	AirModerate = "moderate"
	AirPoor     = "poor"
	AirBad      = "bad"
)

// Comfort statuses and issues.
const (
	ComfortOK            = "ok"
	ComfortUncomfortable = "uncomfortable"
	ComfortUnknown       = "unknown"

	IssueTempLow  = "temperature_low"
	IssueTempHigh = "temperature_high"
	IssueHumLow   = "humidity_low"
	IssueHumHigh  = "humidity_high"
)

// The body of GET /rooms/{id}/metrics and of room.metrics.updated is defined
// in package events, so that every consumer of the event reads the same type.
type (
	Metrics     = events.RoomMetrics
	TypeMetrics = events.RoomTypeMetrics
	Comfort     = events.Comfort
	TimeRange   = events.TimeRange
)

// WindowAt is the window of the "last 5 minutes" at now: from the start of the
// minute four minutes before now's minute, to now.
func WindowAt(now time.Time) TimeRange {
	now = now.UTC()
	return TimeRange{From: now.Truncate(time.Minute).Add(-Window + time.Minute), To: now}
}

// Compute derives a room's metrics from its snapshot at now.
func Compute(s Snapshot, now time.Time) Metrics {
	m := Metrics{RoomID: s.Room.ID, At: now.UTC(), Window: WindowAt(now), Metrics: map[string]TypeMetrics{}}

	newest := map[string]SensorValue{}
	for _, v := range s.Latest {
		if n, ok := newest[v.Type]; !ok || v.Timestamp.After(n.Timestamp) {
			newest[v.Type] = v
		}
	}
	type acc struct {
		sum, scaled, lo, hi float64
		n                   int
	}
	sums := map[string]acc{}
	for _, v := range s.Latest {
		n := newest[v.Type]
		if n.Timestamp.Sub(v.Timestamp) > Window {
			continue
		}
		a := sums[v.Type]
		if a.n == 0 || v.Value < a.lo {
			a.lo = v.Value
		}
		if a.n == 0 || v.Value > a.hi {
			a.hi = v.Value
		}
		a.sum = reading.AddSum(a.sum, v.Value)
		a.n++
		sums[v.Type] = a
	}
	// A sum that saturated (values near the largest double) is added again, each
	// value divided by the count first, which cannot overflow.
	for _, v := range s.Latest {
		a := sums[v.Type]
		if math.Abs(a.sum) < math.MaxFloat64 || newest[v.Type].Timestamp.Sub(v.Timestamp) > Window {
			continue
		}
		a.scaled += v.Value / float64(a.n)
		sums[v.Type] = a
	}
	for typ, n := range newest {
		a := sums[typ]
		mean := reading.Mean(a.sum, int64(a.n), a.lo, a.hi)
		if math.Abs(a.sum) >= math.MaxFloat64 {
			mean = min(max(a.scaled, a.lo), a.hi)
		}
		m.Metrics[typ] = TypeMetrics{Value: mean, Unit: n.Unit, Timestamp: n.Timestamp.UTC(), Sensors: a.n}
	}
	windowMax := map[string]float64{}
	for _, w := range s.Window {
		if w.Count == 0 {
			continue
		}
		tm, ok := m.Metrics[w.Type]
		if !ok { // readings of sensors that have since left the room
			continue
		}
		mean, lo, hi := reading.Mean(w.Sum, w.Count, w.Min, w.Max), w.Min, w.Max
		tm.Mean5m, tm.Min5m, tm.Max5m, tm.Count5m = &mean, &lo, &hi, w.Count
		m.Metrics[w.Type] = tm
		windowMax[w.Type] = w.Max
	}

	// Occupancy.
	var occupied, known bool
	if occ, ok := m.Metrics["occupancy"]; ok {
		known = true
		occupied = occ.Value > 0
		if c := s.Room.Capacity; c != nil && *c > 0 {
			r := occ.Value / float64(*c)
			m.OccupancyRatio = &r
		}
	}
	for _, typ := range []string{"occupancy", "pir", "motion"} {
		if _, ok := m.Metrics[typ]; ok {
			known = true
		}
		if windowMax[typ] > 0 {
			occupied = true
		}
	}
	switch {
	case known:
		src := OccupiedBySensor
		m.Occupied, m.OccupiedSource = &occupied, &src
	case s.Estimate != nil && s.Estimate.Count > 0:
		p := reading.Mean(s.Estimate.Sum, s.Estimate.Count, s.Estimate.Min, s.Estimate.Max)
		occ, src, at := p >= EstimateThreshold, OccupiedByEstimate, s.Estimate.Start.UTC()
		m.Occupied, m.OccupiedSource, m.OccupiedProbability, m.OccupiedEstimatedAt = &occ, &src, &p, &at
	}

	if co2, ok := m.Metrics["co2"]; ok {
		q := AirQuality(co2.Value)
		m.AirQuality = &q
	}
	m.Comfort = comfort(m.Metrics)
	return m
}

// AirQuality classifies a co2 concentration in ppm.
func AirQuality(co2 float64) string {
	switch {
	case co2 < AirGoodBelow:
		return AirGood
	case co2 < AirModerateBelow:
		return AirModerate
	case co2 < AirPoorBelow:
		return AirPoor
	default:
		return AirBad
	}
}

func comfort(ms map[string]TypeMetrics) Comfort {
	c := Comfort{Status: ComfortUnknown, Issues: []string{}}
	t, okT := ms["temperature"]
	h, okH := ms["humidity"]
	if !okT && !okH {
		return c
	}
	if okT {
		if t.Value < ComfortTempMin {
			c.Issues = append(c.Issues, IssueTempLow)
		} else if t.Value > ComfortTempMax {
			c.Issues = append(c.Issues, IssueTempHigh)
		}
	}
	if okH {
		if h.Value < ComfortHumMin {
			c.Issues = append(c.Issues, IssueHumLow)
		} else if h.Value > ComfortHumMax {
			c.Issues = append(c.Issues, IssueHumHigh)
		}
	}
	c.Status = ComfortOK
	if len(c.Issues) > 0 {
		c.Status = ComfortUncomfortable
	}
	return c
}

// headline is the short list of types a room summary shows.
var headline = []string{"temperature", "humidity", "co2", "occupancy"}

// Summary is a room as GET /rooms lists it: its description and headline metrics.
type Summary struct {
	Room
	Occupied            *bool              `json:"occupied"`
	OccupiedSource      *string            `json:"occupied_source"`
	OccupiedProbability *float64           `json:"occupied_probability"`
	AirQuality          *string            `json:"air_quality"`
	Comfort             string             `json:"comfort"`
	Metrics             map[string]float64 `json:"metrics"`
}

// Summarise builds a room's summary from its metrics.
func Summarise(r Room, m Metrics) Summary {
	s := Summary{Room: r, Occupied: m.Occupied, OccupiedSource: m.OccupiedSource, OccupiedProbability: m.OccupiedProbability, AirQuality: m.AirQuality, Comfort: m.Comfort.Status, Metrics: map[string]float64{}}
	s.Sensors = nil
	for _, typ := range headline {
		if tm, ok := m.Metrics[typ]; ok {
			s.Metrics[typ] = tm.Value
		}
	}
	return s
}

// sortedKeys returns the keys of a set in order.
func sortedKeys(set map[string]struct{}) []string {
	out := make([]string, 0, len(set))
	for k := range set {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
