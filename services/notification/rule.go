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
// hysteresis). A sensor_silent rule raises an alert when a sensor (of Metric, if
// set) sent nothing for For, and resolves it at the sensor's next reading.
// RoomID scopes a rule to one room; empty means building-wide.
type Rule struct {
	ID             string    `json:"id"`
	Name           string    `json:"name,omitempty"`
	Kind           string    `json:"kind"`
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
	var ps []httpx.FieldProblem
	add := func(field, reason string) { ps = append(ps, httpx.FieldProblem{Field: field, Reason: reason}) }
	finite := func(field string, v *float64) {
		if v != nil && (math.IsNaN(*v) || math.IsInf(*v, 0)) {
			add(field, "must be a finite number")
		}
	}
	if r.ID != "" && !ruleIDPattern.MatchString(r.ID) {
		add("id", "1-128 characters of A-Z a-z 0-9 . _ : -")
	}
	if len(r.Name) > 200 {
		add("name", "at most 200 characters")
	}
	if SeverityRank(r.Severity) == 0 {
		add("severity", "must be one of info, warning, critical")
	}
	if r.RoomID != "" && !reading.ValidID(r.RoomID) {
		add("room_id", "1-128 characters of A-Z a-z 0-9 . _ : -")
	}
	if r.Metric != "" && !reading.ValidType(r.Metric) {
		add("metric", "lowercase a-z 0-9 _")
	}
	if r.For < 0 || time.Duration(r.For) > MaxRuleDuration {
		add("for", "must be from 0s to 168h")
	}
	if r.ClearFor < 0 || time.Duration(r.ClearFor) > MaxRuleDuration {
		add("clear_for", "must be from 0s to 168h")
	}
	if r.WebhookURL != "" {
		u, err := url.Parse(r.WebhookURL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			add("webhook_url", "must be an absolute http or https URL")
		}
	}
	if len(r.WebhookSecret) > 256 {
		add("webhook_secret", "at most 256 characters")
	}
	for _, f := range []struct {
		n string
		v *float64
	}{{"threshold", r.Threshold}, {"clear_threshold", r.ClearThreshold}, {"low", r.Low}, {"high", r.High}, {"clear_low", r.ClearLow}, {"clear_high", r.ClearHigh}} {
		finite(f.n, f.v)
	}
	switch r.Kind {
	case KindSensorSilent:
		if r.For <= 0 {
			add("for", "a sensor_silent rule needs a positive duration")
		}
		if r.Comparison != "" || r.Threshold != nil || r.Low != nil || r.High != nil {
			add("comparison", "a sensor_silent rule has no comparison or thresholds")
		}
	case KindThreshold:
		if r.Metric == "" {
			add("metric", "is required for a threshold rule")
		}
		switch r.Comparison {
		case CompareGT, CompareLT:
			if r.Threshold == nil {
				add("threshold", "is required for comparison "+r.Comparison)
				break
			}
			if r.Low != nil || r.High != nil {
				add("low", "low/high belong to comparison outside")
			}
			if r.ClearThreshold != nil {
				if r.Comparison == CompareGT && *r.ClearThreshold > *r.Threshold {
					add("clear_threshold", "must not be above threshold for gt")
				}
				if r.Comparison == CompareLT && *r.ClearThreshold < *r.Threshold {
					add("clear_threshold", "must not be below threshold for lt")
				}
			}
		case CompareOutside:
			if r.Low == nil || r.High == nil {
				add("low", "low and high are required for comparison outside")
				break
			}
			if r.Threshold != nil {
				add("threshold", "threshold belongs to gt and lt; use low and high")
			}
			if *r.Low >= *r.High {
				add("high", "must be above low")
			}
			if r.ClearLow != nil && r.ClearHigh != nil {
				if *r.ClearLow < *r.Low || *r.ClearHigh > *r.High || *r.ClearLow > *r.ClearHigh {
					add("clear_low", "clear_low..clear_high must lie within low..high")
				}
			}
		default:
			add("comparison", "must be one of gt, lt, outside")
		}
	default:
		add("kind", "must be threshold or sensor_silent")
	}
	return ps
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
	switch r.Comparison {
	case CompareGT:
		return fmt.Sprintf("%s %g above %g for %s", r.Metric, v, *r.Threshold, time.Duration(r.For))
	case CompareLT:
		return fmt.Sprintf("%s %g below %g for %s", r.Metric, v, *r.Threshold, time.Duration(r.For))
	}
	return fmt.Sprintf("%s %g outside %g..%g for %s", r.Metric, v, *r.Low, *r.High, time.Duration(r.For))
}
