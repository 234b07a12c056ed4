package events

import (
	"bytes"
	"strconv"
	"time"

	"github.com/atrium-iot/atrium/internal/reading"
)

// decodeFast reads a body in exactly the shape AppendSensorData writes: its keys
// in its order, no white space, strings without escapes, control characters or
// non-ASCII bytes. It skips the reflection, the per-field UnmarshalJSON calls
// and the intermediate reading.Input of the general path, and makes each
// reading straight away. ok is false for anything else, and the caller then
// decodes the same bytes by the general path; whatever decodeFast accepts, it
// decodes to what the general path gives (FuzzDecodeSensorData holds it to
// that).
func decodeFast(body []byte) (ev SensorData, skipped int, ok bool) {
	p := scanner{b: body}
	if !p.lit(`{"batch_id":`) {
		return SensorData{}, 0, false
	}
	if ev.BatchID, ok = p.str(""); !ok {
		return SensorData{}, 0, false
	}
	if p.lit(`,"site":`) {
		if ev.Site, ok = p.str(""); !ok {
			return SensorData{}, 0, false
		}
	}
	if !p.lit(`,"readings":[`) {
		return SensorData{}, 0, false
	}
	ev.Readings = make([]reading.Reading, 0, bytes.Count(body[p.i:], []byte(`{"sensor_id":`)))
	if !p.lit("]") {
		var prev reading.Reading
		for {
			r, ok := p.reading(&prev)
			if !ok {
				return SensorData{}, 0, false
			}
			prev = r
			if reading.Validate(&r, time.Time{}) != nil {
				skipped++
			} else {
				ev.Readings = append(ev.Readings, r)
			}
			if p.lit(",") {
				continue
			}
			if p.lit("]") {
				break
			}
			return SensorData{}, 0, false
		}
	}
	if !p.lit("}") || p.i != len(p.b) {
		return SensorData{}, 0, false
	}
	return ev, skipped, true
}

type scanner struct {
	b []byte
	i int
}

// lit consumes s when the input continues with it.
func (p *scanner) lit(s string) bool {
	if len(p.b)-p.i >= len(s) && string(p.b[p.i:p.i+len(s)]) == s {
		p.i += len(s)
		return true
	}
	return false
}

// str reads a string that needs no unescaping. It returns prev itself when the
// string is the same, so a batch's many readings of one sensor, room or type
// share one string.
func (p *scanner) str(prev string) (string, bool) {
	if p.i >= len(p.b) || p.b[p.i] != '"' {
		return "", false
	}
	start := p.i + 1
	for j := start; j < len(p.b); j++ {
		switch c := p.b[j]; {
		case c == '"':
			p.i = j + 1
			if string(p.b[start:j]) == prev {
				return prev, true
			}
			return string(p.b[start:j]), true
		case c < 0x20 || c >= 0x80 || c == '\\':
			return "", false
		}
	}
	return "", false
}

// skipDigits returns the index past the ASCII digits of b from j.
func skipDigits(b []byte, j int) int {
	for j < len(b) && b[j] >= '0' && b[j] <= '9' {
		j++
	}
	return j
}

// number reads a JSON number (RFC 8259 grammar) that is a finite float64.
func (p *scanner) number() (float64, bool) {
	b, j := p.b, p.i
	if j < len(b) && b[j] == '-' {
		j++
	}
	switch {
	case j < len(b) && b[j] == '0':
		j++
	case j < len(b) && b[j] >= '1' && b[j] <= '9':
		j = skipDigits(b, j)
	default:
		return 0, false
	}
	if j < len(b) && b[j] == '.' {
		k := skipDigits(b, j+1)
		if k == j+1 {
			return 0, false // a fraction needs a digit
		}
		j = k
	}
	if j < len(b) && (b[j] == 'e' || b[j] == 'E') {
		j++
		if j < len(b) && (b[j] == '+' || b[j] == '-') {
			j++
		}
		k := skipDigits(b, j)
		if k == j {
			return 0, false // an exponent needs a digit
		}
		j = k
	}
	f, err := strconv.ParseFloat(string(b[p.i:j]), 64)
	if err != nil { // out of range: the general path says why
		return 0, false
	}
	p.i = j
	return f, true
}

// reading reads one reading object in reading.AppendJSON's key order.
func (p *scanner) reading(prev *reading.Reading) (r reading.Reading, ok bool) {
	if !p.lit(`{"sensor_id":`) {
		return r, false
	}
	if r.SensorID, ok = p.str(prev.SensorID); !ok {
		return r, false
	}
	if p.lit(`,"room_id":`) {
		if r.RoomID, ok = p.str(prev.RoomID); !ok {
			return r, false
		}
	}
	if p.lit(`,"site":`) {
		if r.Site, ok = p.str(prev.Site); !ok {
			return r, false
		}
	}
	if !p.lit(`,"type":`) {
		return r, false
	}
	if r.Type, ok = p.str(prev.Type); !ok || !p.lit(`,"value":`) {
		return r, false
	}
	if r.Value, ok = p.number(); !ok {
		return r, false
	}
	if p.lit(`,"unit":`) {
		if r.Unit, ok = p.str(prev.Unit); !ok {
			return r, false
		}
	}
	if !p.lit(`,"timestamp":"`) {
		return r, false
	}
	end := bytes.IndexByte(p.b[p.i:], '"')
	if end < 0 {
		return r, false
	}
	t, ok := parseTime(p.b[p.i : p.i+end])
	if !ok {
		return r, false
	}
	r.Timestamp = t.Truncate(time.Millisecond).UTC()
	p.i += end + 1
	return r, p.lit("}")
}

// parseTime reads a timestamp as reading.ParseTime does the RFC 3339 ones:
// reading.TimeFormat by hand, any other layout by time.Parse.
func parseTime(b []byte) (time.Time, bool) {
	// 2006-01-02T15:04:05.000Z
	if len(b) == 24 && b[4] == '-' && b[7] == '-' && b[10] == 'T' && b[13] == ':' && b[16] == ':' && b[19] == '.' && b[23] == 'Z' {
		y, ok1 := digits(b[0:4])
		mo, ok2 := digits(b[5:7])
		d, ok3 := digits(b[8:10])
		h, ok4 := digits(b[11:13])
		mi, ok5 := digits(b[14:16])
		s, ok6 := digits(b[17:19])
		ms, ok7 := digits(b[20:23])
		if ok1 && ok2 && ok3 && ok4 && ok5 && ok6 && ok7 && mo >= 1 && mo <= 12 && d >= 1 && h < 24 && mi < 60 && s < 60 {
			t := time.Date(y, time.Month(mo), d, h, mi, s, ms*1e6, time.UTC)
			if t.Day() == d { // not a 31st of a shorter month
				return t, true
			}
		}
	}
	for _, c := range b {
		if c < 0x20 || c >= 0x80 || c == '\\' {
			return time.Time{}, false
		}
	}
	t, err := time.Parse(time.RFC3339Nano, string(b))
	if err != nil { // Unix milliseconds as a string, or no time at all: the general path
		return time.Time{}, false
	}
	return t, true
}

func digits(b []byte) (int, bool) {
	n := 0
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int(c-'0')
	}
	return n, true
}
