package notification

import (
	"fmt"
	"math"
	"net/url"
	"regexp"
	"time"

	"github.com/atrium-iot/atrium/internal/httpx"
	"github.com/atrium-iot/atrium/internal/reading"
)

// Rule kinds.
const (
	KindThreshold    = "threshold"
	KindSensorSilent = "sensor_silent"
)

// Sources of the values a threshold rule watches.
const (
	// SourceReadings (the default, also written "") evaluates the rule on each
	// reading of sensor.data.received: one alert per room, sensor and type.
	SourceReadings = "readings"
	// SourceRoom evaluates the rule on the room service's room.metrics.updated:
	// one alert per room. Metric is a reading type (the room's current value of
	// it: the mean of the latest value of each of its sensors) or a derived
	// metric (RoomMetricOccupancyRatio).
	SourceRoom = "room"
)

// RoomMetricOccupancyRatio is the derived room metric a rule of SourceRoom may
// watch next to the reading types: the current occupancy count over the
// room's capacity.
const RoomMetricOccupancyRatio = "occupancy_ratio"

// Comparisons of a threshold rule.
const (
	CompareGT      = "gt"      // value > threshold
	CompareLT      = "lt"      // value < threshold
	CompareOutside = "outside" // value < low or value > high
)

// Rule is an alert rule.
//
// A threshold rule raises an alert for a (room, sensor, type) once every reading
// of its metric has met the condition for at least For (by reading timestamps),
// and resolves it once readings are back on the clear side of the clear
// threshold(s) for ClearFor. The clear thresholds default to the thresholds (no
// hysteresis). With Source "room" a threshold rule watches the room's metrics
// instead of the readings (see SourceRoom), by the times of the room service's
// updates. A sensor_silent rule raises an alert when a sensor (of Metric, if
// set) sent nothing for For, and resolves it when the sensor is online again.
// RoomID scopes a rule to one room; empty means building-wide.
type Rule struct {
	ID             string    `json:"id"`
	Name           string    `json:"name,omitempty"`
	Kind           string    `json:"kind"`
	Source         string    `json:"source,omitempty"`
	Metric         string    `json:"metric,omitempty"`
	Comparison     string    `json:"comparison,omitempty"`
	Threshold      *float64  `json:"threshold,omitempty"`
	ClearThreshold *float64  `json:"clear_threshold,omitempty"`
	Low            *float64  `json:"low,omitempty"`
	High           *float64  `json:"high,omitempty"`
	ClearLow       *float64  `json:"clear_low,omitempty"`
	ClearHigh      *float64  `json:"clear_high,omitempty"`
	For            Duration  `json:"for"`
	ClearFor       Duration  `json:"clear_for"`
	Severity       string    `json:"severity"`
	RoomID         string    `json:"room_id,omitempty"`
	WebhookURL     string    `json:"webhook_url,omitempty"`
	WebhookSecret  string    `json:"webhook_secret,omitempty"`
	Enabled        *bool     `json:"enabled,omitempty"`
	CreatedAt      time.Time `json:"created_at"`
	UpdatedAt      time.Time `json:"updated_at"`
}

// MaxRuleDuration bounds For and ClearFor.
const MaxRuleDuration = 7 * 24 * time.Hour

var ruleIDPattern = regexp.MustCompile(`^[A-Za-z0-9._:-]{1,128}$`)

func f64(v float64) *float64 { return &v }

// DefaultRules are the rules a new store starts with (DESIGN.md): co2 > 1000 ppm for
// 5m → warning, > 1500 → critical; temperature outside 18–26 °C for 10m → warning;
// a sensor silent for 5m → warning.
func DefaultRules(now time.Time) []Rule {
	on := true
	rs := []Rule{
		{ID: "default-co2-warning", Name: "CO2 above 1000 ppm", Kind: KindThreshold, Metric: "co2", Comparison: CompareGT,
			Threshold: f64(1000), ClearThreshold: f64(950), For: Duration(5 * time.Minute), Severity: SeverityWarning},
		{ID: "default-co2-critical", Name: "CO2 above 1500 ppm", Kind: KindThreshold, Metric: "co2", Comparison: CompareGT,
			Threshold: f64(1500), ClearThreshold: f64(1400), For: Duration(5 * time.Minute), Severity: SeverityCritical},
		{ID: "default-temperature", Name: "Temperature outside 18-26 °C", Kind: KindThreshold, Metric: "temperature", Comparison: CompareOutside,
			Low: f64(18), High: f64(26), ClearLow: f64(18.5), ClearHigh: f64(25.5), For: Duration(10 * time.Minute), Severity: SeverityWarning},
		{ID: "default-sensor-silent", Name: "Sensor silent for 5 minutes", Kind: KindSensorSilent, For: Duration(5 * time.Minute), Severity: SeverityWarning},
	}
	for i := range rs {
		rs[i].Enabled = &on
		rs[i].CreatedAt, rs[i].UpdatedAt = now, now
	}
	return rs
}

// IsEnabled reports whether the rule is evaluated (Enabled absent means true).
func (r Rule) IsEnabled() bool { return r.Enabled == nil || *r.Enabled }

// Public is the rule as the API shows it: the webhook secret is never echoed.
func (r Rule) Public() Rule {
	if r.WebhookSecret != "" {
		r.WebhookSecret = "********"
	}
	return r
}

// Normalize fills in defaults: kind threshold, clear thresholds equal to the
// thresholds, enabled.
func (r *Rule) Normalize() {
	if r.Kind == "" {
		r.Kind = KindThreshold
	}
	if r.Enabled == nil {
		on := true
		r.Enabled = &on
	}
	if r.Kind != KindThreshold {
		return
	}
	if r.ClearThreshold == nil && r.Threshold != nil {
		r.ClearThreshold = f64(*r.Threshold)
	}
	if r.ClearLow == nil && r.Low != nil {
		r.ClearLow = f64(*r.Low)
	}
	if r.ClearHigh == nil && r.High != nil {
		r.ClearHigh = f64(*r.High)
	}
}

// Valid checks a normalized rule; every problem is named by its field.
func (r Rule) Valid() []httpx.FieldProblem {
	var ps problems
	r.validFields(&ps)
	switch r.Kind {
	case KindSensorSilent:
		r.validSilent(&ps)
		if r.Source != "" && r.Source != SourceReadings {
			ps.add("source", "a sensor_silent rule watches sensors, not "+r.Source)
		}
	case KindThreshold:
		if r.Source != "" && r.Source != SourceReadings && r.Source != SourceRoom {
			ps.add("source", "must be readings or room")
		}
		r.validThreshold(&ps)
	default:
		ps.add("kind", "must be threshold or sensor_silent")
	}
	return ps
}

// problems collects the field problems of one rule, in the order found.
type problems []httpx.FieldProblem

func (ps *problems) add(field, reason string) {
	*ps = append(*ps, httpx.FieldProblem{Field: field, Reason: reason})
}

// finite adds a problem when v is set and is NaN or infinite.
func (ps *problems) finite(field string, v *float64) {
	if v != nil && (math.IsNaN(*v) || math.IsInf(*v, 0)) {
		ps.add(field, "must be a finite number")
	}
}

// validFields checks the fields every kind of rule has, each on its own.
func (r Rule) validFields(ps *problems) {
	if r.ID != "" && !ruleIDPattern.MatchString(r.ID) {
		ps.add("id", "1-128 characters of A-Z a-z 0-9 . _ : -")
	}
	if len(r.Name) > 200 {
		ps.add("name", "at most 200 characters")
	}
	if SeverityRank(r.Severity) == 0 {
		ps.add("severity", "must be one of info, warning, critical")
	}
	if r.RoomID != "" && !reading.ValidID(r.RoomID) {
		ps.add("room_id", "1-128 characters of A-Z a-z 0-9 . _ : -")
	}
	if r.Metric != "" && !reading.ValidType(r.Metric) {
		ps.add("metric", "lowercase a-z 0-9 _")
	}
	if r.For < 0 || time.Duration(r.For) > MaxRuleDuration {
		ps.add("for", "must be from 0s to 168h")
	}
	if r.ClearFor < 0 || time.Duration(r.ClearFor) > MaxRuleDuration {
		ps.add("clear_for", "must be from 0s to 168h")
	}
	if r.WebhookURL != "" {
		u, err := url.Parse(r.WebhookURL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			ps.add("webhook_url", "must be an absolute http or https URL")
		}
	}
	if len(r.WebhookSecret) > 256 {
		ps.add("webhook_secret", "at most 256 characters")
	}
	ps.finite("threshold", r.Threshold)
	ps.finite("clear_threshold", r.ClearThreshold)
	ps.finite("low", r.Low)
	ps.finite("high", r.High)
	ps.finite("clear_low", r.ClearLow)
	ps.finite("clear_high", r.ClearHigh)
}

// validSilent checks a sensor_silent rule: a positive duration, no condition.
func (r Rule) validSilent(ps *problems) {
	if r.For <= 0 {
		ps.add("for", "a sensor_silent rule needs a positive duration")
	}
	if r.Comparison != "" || r.Threshold != nil || r.Low != nil || r.High != nil {
		ps.add("comparison", "a sensor_silent rule has no comparison or thresholds")
	}
}

// validThreshold checks a threshold rule: a metric and a complete comparison.
func (r Rule) validThreshold(ps *problems) {
	if r.Metric == "" {
		ps.add("metric", "is required for a threshold rule")
	}
	switch r.Comparison {
	case CompareGT, CompareLT:
		r.validOneSided(ps)
	case CompareOutside:
		r.validOutside(ps)
	default:
		ps.add("comparison", "must be one of gt, lt, outside")
	}
}

// validOneSided checks a gt or lt comparison: one threshold, and a clear
// threshold on its clear side.
func (r Rule) validOneSided(ps *problems) {
	if r.Threshold == nil {
		ps.add("threshold", "is required for comparison "+r.Comparison)
		return
	}
	if r.Low != nil || r.High != nil {
		ps.add("low", "low/high belong to comparison outside")
	}
	if r.ClearThreshold == nil {
		return
	}
	if r.Comparison == CompareGT && *r.ClearThreshold > *r.Threshold {
		ps.add("clear_threshold", "must not be above threshold for gt")
	}
	if r.Comparison == CompareLT && *r.ClearThreshold < *r.Threshold {
		ps.add("clear_threshold", "must not be below threshold for lt")
	}
}

// validOutside checks an outside comparison: low below high, and the clear
// band inside them.
func (r Rule) validOutside(ps *problems) {
	if r.Low == nil || r.High == nil {
		ps.add("low", "low and high are required for comparison outside")
		return
	}
	if r.Threshold != nil {
		ps.add("threshold", "threshold belongs to gt and lt; use low and high")
	}
	if *r.Low >= *r.High {
		ps.add("high", "must be above low")
	}
	if r.ClearLow != nil && r.ClearHigh != nil &&
		(*r.ClearLow < *r.Low || *r.ClearHigh > *r.High || *r.ClearLow > *r.ClearHigh) {
		ps.add("clear_low", "clear_low..clear_high must lie within low..high")
	}
}

// breaching reports whether v meets the raise condition.
func (r *Rule) breaching(v float64) bool {
	switch r.Comparison {
	case CompareGT:
		return v > *r.Threshold
	case CompareLT:
		return v < *r.Threshold
	case CompareOutside:
		return v < *r.Low || v > *r.High
	}
	return false
}

// clear reports whether v is on the clear side of the hysteresis band.
func (r *Rule) clear(v float64) bool {
	switch r.Comparison {
	case CompareGT:
		return v <= *r.ClearThreshold
	case CompareLT:
		return v >= *r.ClearThreshold
	case CompareOutside:
		return v >= *r.ClearLow && v <= *r.ClearHigh
	}
	return true
}

// describe is a one-line human description of the condition, for messages.
func (r *Rule) describe(v float64) string {
	switch r.Kind {
	case KindSensorSilent:
		return fmt.Sprintf("sensor silent for %s", time.Duration(r.For))
	}
	metric := r.Metric
	if r.Source == SourceRoom {
		metric = "room " + metric
	}
	switch r.Comparison {
	case CompareGT:
		return fmt.Sprintf("%s %g above %g for %s", metric, v, *r.Threshold, time.Duration(r.For))
	case CompareLT:
		return fmt.Sprintf("%s %g below %g for %s", metric, v, *r.Threshold, time.Duration(r.For))
	}
	return fmt.Sprintf("%s %g outside %g..%g for %s", metric, v, *r.Low, *r.High, time.Duration(r.For))
}
