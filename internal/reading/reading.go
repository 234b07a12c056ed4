// Package reading is Atrium's one model of a sensor reading: its fields, how it is
// read from JSON, and the rules that make it valid. The sensor service and the edge
// agent both use it, so a reading the agent accepts is one the cloud accepts.
package reading

import (
	"encoding/json"
	"fmt"
	"math"
	"strconv"
	"time"
)

// MaxFuture is how far ahead of the receiver's clock a timestamp may be.
const MaxFuture = 5 * time.Minute

// MinTime is the earliest timestamp accepted: a reading from before 2000 is a
// clock that was never set (a device counting from 1970 or from year 1), not a
// measurement.
var MinTime = time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)

// MaxIDLen is the longest sensor_id or room_id accepted.
const MaxIDLen = 128

// Reading is one measurement of one sensor at one instant.
// Its identity is (SensorID, Type, Timestamp).
type Reading struct {
	SensorID  string
	RoomID    string
	Site      string
	Type      string
	Value     float64
	Unit      string
	Timestamp time.Time
}

// TimeFormat is how Atrium writes times: RFC 3339, UTC, milliseconds.
const TimeFormat = "2006-01-02T15:04:05.000Z07:00"

// FormatTime writes t the way Atrium does everywhere.
func FormatTime(t time.Time) string { return t.UTC().Format(TimeFormat) }

// UnixMilli is the reading's timestamp in Unix milliseconds, the precision Atrium keeps.
func (r Reading) UnixMilli() int64 { return r.Timestamp.UnixMilli() }

// MarshalJSON writes the reading in the contract's shape with an RFC 3339 UTC timestamp.
func (r Reading) MarshalJSON() ([]byte, error) {
	return r.AppendJSON(make([]byte, 0, 160)), nil
}

// AppendJSON appends the reading's JSON to b, without reflection: the sensor
// service and the agent write millions of these.
func (r Reading) AppendJSON(b []byte) []byte {
	b = append(b, `{"sensor_id":`...)
	b = appendString(b, r.SensorID)
	if r.RoomID != "" {
		b = append(b, `,"room_id":`...)
		b = appendString(b, r.RoomID)
	}
	if r.Site != "" {
		b = append(b, `,"site":`...)
		b = appendString(b, r.Site)
	}
	b = append(b, `,"type":`...)
	b = appendString(b, r.Type)
	b = append(b, `,"value":`...)
	b = appendFloat(b, r.Value)
	if r.Unit != "" {
		b = append(b, `,"unit":`...)
		b = appendString(b, r.Unit)
	}
	b = append(b, `,"timestamp":"`...)
	b = r.Timestamp.UTC().AppendFormat(b, TimeFormat)
	return append(b, `"}`...)
}

// appendFloat writes a finite float as encoding/json does.
func appendFloat(b []byte, f float64) []byte {
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return append(b, "null"...)
	}
	abs := math.Abs(f)
	format := byte('f')
	if abs != 0 && (abs < 1e-6 || abs >= 1e21) {
		format = 'e'
	}
	n := len(b)
	b = strconv.AppendFloat(b, f, format, -1, 64)
	if format == 'e' { // clean up e-09 to e-9, as encoding/json does
		if m := len(b) - n; m >= 4 && b[len(b)-4] == 'e' && b[len(b)-3] == '-' && b[len(b)-2] == '0' {
			b[len(b)-2] = b[len(b)-1]
			b = b[:len(b)-1]
		}
	}
	return b
}

// appendString writes s as a JSON string; ids need no escaping, anything else is
// escaped by encoding/json's rules.
func appendString(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c == '"' || c == '\\' || c >= 0x7f || c == '<' || c == '>' || c == '&' {
			q, _ := json.Marshal(s)
			return append(b, q...)
		}
	}
	b = append(b, '"')
	b = append(b, s...)
	return append(b, '"')
}

// UnmarshalJSON reads a reading strictly: it is the inverse of MarshalJSON, for
// readings Atrium itself wrote (bus events, spool records). Untrusted input goes
// through Input and Validate instead.
func (r *Reading) UnmarshalJSON(b []byte) error {
	var in Input
	if err := json.Unmarshal(b, &in); err != nil {
		return err
	}
	v, err := in.Reading(time.Time{})
	if err != nil {
		return err
	}
	*r = v
	return nil
}

// Input is a reading as a client sent it. Every field decodes without failing; what
// was wrong with it is kept and reported by Reading, so one bad reading in a batch
// never spoils the others.
type Input struct {
	SensorID  Text   `json:"sensor_id"`
	RoomID    Text   `json:"room_id"`
	Site      Text   `json:"site"`
	Type      Text   `json:"type"`
	Value     Number `json:"value"`
	Unit      Text   `json:"unit"`
	Timestamp Time   `json:"timestamp"`
}

// Text is a JSON string field that remembers a wrong JSON type instead of failing.
type Text struct {
	S       string
	Set     bool
	BadType string
}

// UnmarshalJSON implements json.Unmarshaler.
func (t *Text) UnmarshalJSON(b []byte) error {
	t.Set = true
	if len(b) > 0 && b[0] == '"' {
		if inner, ok := plainString(b); ok {
			t.S = string(inner)
			return nil
		}
		if err := json.Unmarshal(b, &t.S); err != nil {
			t.BadType = "invalid string"
		}
		return nil
	}
	if string(b) == "null" {
		t.Set = false
		return nil
	}
	t.BadType = jsonKind(b)
	return nil
}

// Number is a JSON number field that remembers what else it got.
type Number struct {
	F       float64
	Set     bool
	Problem string
}

// UnmarshalJSON implements json.Unmarshaler.
func (n *Number) UnmarshalJSON(b []byte) error {
	n.Set = true
	if len(b) == 0 {
		n.Problem = "must be a number"
		return nil
	}
	switch c := b[0]; {
	case c == '-' || (c >= '0' && c <= '9'):
		f, err := strconv.ParseFloat(string(b), 64)
		if err != nil || math.IsInf(f, 0) {
			n.Problem = "must be a finite number"
			return nil
		}
		n.F = f
	case string(b) == "null":
		n.Set = false
	default:
		n.Problem = "must be a finite number, got " + jsonKind(b)
		if c == '"' {
			var s string
			_ = json.Unmarshal(b, &s)
			n.Problem = fmt.Sprintf("must be a finite number, got the string %q", truncate(s, 32))
		}
	}
	return nil
}

// Time is a timestamp field: RFC 3339 text or Unix milliseconds.
type Time struct {
	T       time.Time
	Set     bool
	Problem string
}

// UnmarshalJSON implements json.Unmarshaler.
func (t *Time) UnmarshalJSON(b []byte) error {
	t.Set = true
	if len(b) == 0 {
		t.Problem = "must be RFC 3339 or Unix milliseconds"
		return nil
	}
	switch c := b[0]; {
	case c == '"':
		s, err := unquote(b)
		if err != nil {
			t.Problem = "must be RFC 3339 or Unix milliseconds"
			return nil
		}
		ts, err := ParseTime(s)
		if err != nil {
			t.Problem = err.Error()
			return nil
		}
		t.T = ts
	case c == '-' || (c >= '0' && c <= '9'):
		f, err := strconv.ParseFloat(string(b), 64)
		if err != nil || f < 0 || f > 1e15 || math.IsInf(f, 0) {
			t.Problem = "must be RFC 3339 or Unix milliseconds"
			return nil
		}
		t.T = time.UnixMilli(int64(f)).UTC()
	case string(b) == "null":
		t.Set = false
	default:
		t.Problem = "must be RFC 3339 or Unix milliseconds, got " + jsonKind(b)
	}
	return nil
}

// ParseTime reads an RFC 3339 timestamp, or Unix milliseconds written as digits.
func ParseTime(s string) (time.Time, error) {
	if ts, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return ts.UTC(), nil
	}
	if ms, err := strconv.ParseInt(s, 10, 64); err == nil && ms >= 0 && ms <= 1e15 {
		return time.UnixMilli(ms).UTC(), nil
	}
	return time.Time{}, fmt.Errorf("%q is neither RFC 3339 nor Unix milliseconds", truncate(s, 40))
}

// FieldError says which field of a reading is wrong and why.
type FieldError struct {
	Field  string
	Reason string
}

func (e *FieldError) Error() string { return e.Field + ": " + e.Reason }

// Reading turns the input into a valid Reading or says what is wrong with it.
// now is the receiver's clock: it stamps a reading without a timestamp and bounds the
// future. A zero now skips both (for Atrium's own trusted records).
func (in *Input) Reading(now time.Time) (Reading, error) {
	for _, f := range []struct {
		name string
		t    *Text
	}{{"sensor_id", &in.SensorID}, {"room_id", &in.RoomID}, {"site", &in.Site}, {"type", &in.Type}, {"unit", &in.Unit}} {
		if f.t.BadType != "" {
			return Reading{}, &FieldError{f.name, "must be a string, got " + f.t.BadType}
		}
	}
	if !in.Value.Set {
		return Reading{}, &FieldError{"value", "is required"}
	}
	if in.Value.Problem != "" {
		return Reading{}, &FieldError{"value", in.Value.Problem}
	}
	if in.Timestamp.Problem != "" {
		return Reading{}, &FieldError{"timestamp", in.Timestamp.Problem}
	}
	r := Reading{
		SensorID: in.SensorID.S, RoomID: in.RoomID.S, Site: in.Site.S,
		Type: in.Type.S, Value: in.Value.F, Unit: in.Unit.S, Timestamp: in.Timestamp.T,
	}
	if !in.Timestamp.Set {
		if now.IsZero() {
			return Reading{}, &FieldError{"timestamp", "is required"}
		}
		r.Timestamp = now
	}
	r.Timestamp = r.Timestamp.Truncate(time.Millisecond).UTC()
	return r, Validate(&r, now)
}

// Validate checks a reading against the contract and fills in the default unit of a
// known type. now bounds the future; a zero now skips that check.
func Validate(r *Reading, now time.Time) error {
	if err := checkID("sensor_id", r.SensorID, false); err != nil {
		return err
	}
	if err := checkID("room_id", r.RoomID, true); err != nil {
		return err
	}
	if err := checkID("site", r.Site, true); err != nil {
		return err
	}
	if err := checkType(r.Type); err != nil {
		return err
	}
	if math.IsNaN(r.Value) || math.IsInf(r.Value, 0) {
		return &FieldError{"value", "must be a finite number"}
	}
	if k, ok := Known[r.Type]; ok {
		if r.Unit == "" {
			r.Unit = k.Unit
		} else if u := canonicalUnit(r.Unit); u != k.Unit && k.Unit != "" {
			return &FieldError{"unit", fmt.Sprintf("%q is not a unit of %s (want %s)", truncate(r.Unit, 16), r.Type, k.Unit)}
		} else {
			r.Unit = u
		}
		if r.Value < k.Min || r.Value > k.Max {
			return &FieldError{"value", fmt.Sprintf("%g is outside the plausible range of %s (%g…%g %s)", r.Value, r.Type, k.Min, k.Max, k.Unit)}
		}
	} else if len(r.Unit) > 16 {
		return &FieldError{"unit", "longer than 16 characters"}
	}
	if r.Timestamp.Before(MinTime) {
		return &FieldError{"timestamp", fmt.Sprintf("%s is before 2000-01-01", FormatTime(r.Timestamp))}
	}
	if !now.IsZero() && r.Timestamp.After(now.Add(MaxFuture)) {
		return &FieldError{"timestamp", fmt.Sprintf("%s is more than %s in the future", FormatTime(r.Timestamp), MaxFuture)}
	}
	return nil
}

// Kind describes a known reading type.
type Kind struct {
	Unit     string
	Min, Max float64
}

// Known lists the reading types Atrium knows, with their unit and plausible range.
// Unknown types are accepted as they come.
var Known = map[string]Kind{
	"temperature": {"Cel", -40, 85},
	"humidity":    {"%RH", 0, 100},
	"co2":         {"ppm", 0, 10000},
	"light":       {"lx", 0, 200000},
	"occupancy":   {"count", 0, math.MaxFloat64},
	"pir":         {"", 0, math.MaxFloat64},
	"motion":      {"", 0, math.MaxFloat64},
	"noise":       {"dB", 0, 194},
	"voc":         {"ppb", 0, 100000},
	"pm25":        {"ug/m3", 0, 1000},
	"pressure":    {"hPa", 300, 1100},
}

var unitAliases = map[string]string{
	"°C": "Cel", "C": "Cel", "degC": "Cel", "%": "%RH", "lux": "lx", "people": "count",
	"µg/m3": "ug/m3", "ug/m³": "ug/m3", "mbar": "hPa", "dBA": "dB", "dB(A)": "dB",
}

func canonicalUnit(u string) string {
	if c, ok := unitAliases[u]; ok {
		return c
	}
	return u
}

func checkID(field, s string, optional bool) error {
	if s == "" {
		if optional {
			return nil
		}
		return &FieldError{field, "is required"}
	}
	if len(s) > MaxIDLen {
		return &FieldError{field, fmt.Sprintf("is %d characters long, at most %d allowed", len(s), MaxIDLen)}
	}
	for i := 0; i < len(s); i++ {
		if !ValidIDByte(s[i]) {
			return &FieldError{field, fmt.Sprintf("has %q at %d: only A-Z a-z 0-9 . _ : - allowed", s[i], i)}
		}
	}
	return nil
}

// ValidID reports whether s is a valid sensor or room id.
func ValidID(s string) bool { return checkID("id", s, false) == nil }

// ValidIDByte reports whether c may appear in a sensor or room id.
func ValidIDByte(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == ':' || c == '-'
}

func checkType(s string) error {
	if s == "" {
		return &FieldError{"type", "is required"}
	}
	if len(s) > 64 {
		return &FieldError{"type", "longer than 64 characters"}
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_') {
			return &FieldError{"type", fmt.Sprintf("has %q at %d: only a-z 0-9 _ allowed", c, i)}
		}
	}
	return nil
}

// ValidType reports whether s is a valid reading type.
func ValidType(s string) bool { return checkType(s) == nil }

// unquote decodes a JSON string, without encoding/json when it needs no decoding.
func unquote(b []byte) (string, error) {
	if inner, ok := plainString(b); ok {
		return string(inner), nil
	}
	var s string
	err := json.Unmarshal(b, &s)
	return s, err
}

func jsonKind(b []byte) string {
	if len(b) == 0 {
		return "nothing"
	}
	switch b[0] {
	case '"':
		return "a string"
	case '{':
		return "an object"
	case '[':
		return "an array"
	case 't', 'f':
		return "a boolean"
	case 'n':
		return "null"
	default:
		return "a number"
	}
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
