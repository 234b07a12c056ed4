package decode

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"strconv"
	"time"

	"github.com/atrium-iot/atrium/internal/reading"
)

// SenML (RFC 8428) as the agent reads it:
//
//   - Base fields bn, bt, bu, bv apply to their record and every record after it
//     until redefined. bver above 10 is refused; bs, s and ut are read and ignored.
//   - The reading type is the record's n, the name after the base name. A record
//     without n takes the last segment of bn after '/' or ':' ("urn:dev:x:co2" → co2).
//     The sensor id always comes from the topic, never from bn.
//   - The value is bv + v. vb is accepted as 1 (true) or 0 (false), for presence
//     and contact sensors; vs and vd are not numbers and are refused.
//   - The unit is u, else bu; reading.Validate maps it to Atrium's unit or refuses it.
//   - Times are seconds, bt + t. A time below 2**28 is relative to the agent's clock
//     (RFC 8428 section 4.5.3): 0 or absent is "now", -60 a minute ago. Times are
//     rounded to the millisecond; before 1970 is refused.
//   - Fields ending in '_' must be understood (RFC 8428 section 4.4): a record with
//     one is refused. Other unknown fields are skipped.
//   - Each record stands alone: a record that makes no valid reading (any of the
//     refusals above, a missing name or value, a failed validation) is refused with
//     its reason and the others are read. Base fields a refused record sets still
//     apply to the records after it. A syntax error anywhere spoils the whole pack.

// senmlRelative is the bound below which a SenML time is relative to now.
const senmlRelative = 1 << 28

// maxSeconds bounds a SenML time as reading.Time bounds Unix milliseconds (1e15 ms).
const maxSeconds = 1e12

// senmlVersion is the highest SenML version understood.
const senmlVersion = 10

type senmlBase struct {
	name  []byte
	unit  []byte
	time  float64
	value float64
}

// senmlRecord is one record's own fields.
type senmlRecord struct {
	name, unit []byte
	value      float64
	time       float64
	hasName    bool
	hasUnit    bool
	hasValue   bool
	hasBool    bool
	seen       uint32 // bit per field, to refuse a field given twice
}

var openBrace = []byte{'{'}

// decodeSenML reads a pack. Each record stands alone: one that makes no valid
// reading goes to the Invalid list with its reason and a payload of its own, the
// others are read. The error is for what spoils the whole pack (syntax, no records,
// too many).
func decodeSenML(body []byte, base reading.Reading, now time.Time) ([]reading.Reading, []Invalid, error) {
	s := scanner{b: body}
	if !s.eat('[') {
		return nil, nil, s.syntax()
	}
	if s.eat(']') {
		if err := s.end(); err != nil {
			return nil, nil, err
		}
		return nil, nil, fmt.Errorf("SenML pack has no records")
	}
	rs := make([]reading.Reading, 0, min(bytes.Count(body, openBrace), MaxReadings))
	var (
		b   senmlBase
		bad []Invalid
	)
	for idx := 0; ; idx++ {
		if idx == MaxReadings {
			return nil, nil, fmt.Errorf("more than %d records in one SenML pack", MaxReadings)
		}
		s.peek()
		start, inherited := s.i, b
		rec, err := readRecord(&s, &b, idx)
		if err != nil && !isPart(err) {
			return nil, nil, err
		}
		r := base
		if err == nil {
			r, err = resolve(rec, &b, base, now, idx)
		}
		if err == nil {
			if why := check(&r, now); why != "" {
				err = fmt.Errorf("SenML record %d: %s", idx, why)
			}
		}
		if err != nil {
			bad = append(bad, Invalid{Reading: r, Reason: err.Error(), Payload: senmlPart(body[start:s.i], inherited, rec.seen)})
		} else {
			rs = append(rs, r)
		}
		if s.eat(',') {
			continue
		}
		if s.eat(']') {
			break
		}
		return nil, nil, s.syntax()
	}
	if err := s.end(); err != nil {
		return nil, nil, err
	}
	if len(rs) == 0 {
		rs = nil
	}
	return rs, bad, nil
}

// senmlPart is one record of a pack as a pack of its own: the record as sent, with
// the base fields it inherited from the records before it (those it does not set
// itself) added in front of its own fields.
func senmlPart(raw []byte, b senmlBase, seen uint32) []byte {
	if len(raw) < 2 || raw[0] != '{' {
		return append(append([]byte{'['}, raw...), ']')
	}
	p := []byte("[{")
	add := func(name string, v []byte) {
		if len(p) > 2 {
			p = append(p, ',')
		}
		p = append(append(append(append(p, '"'), name...), '"', ':'), v...)
	}
	if len(b.name) > 0 && seen&fieldBit("bn") == 0 {
		add("bn", quote(b.name))
	}
	if b.time != 0 && seen&fieldBit("bt") == 0 {
		add("bt", jsonNumber(b.time))
	}
	if len(b.unit) > 0 && seen&fieldBit("bu") == 0 {
		add("bu", quote(b.unit))
	}
	if b.value != 0 && seen&fieldBit("bv") == 0 {
		add("bv", jsonNumber(b.value))
	}
	if inner := bytes.TrimSpace(raw[1 : len(raw)-1]); len(inner) > 0 {
		if len(p) > 2 {
			p = append(p, ',')
		}
		p = append(p, inner...)
	}
	return append(p, '}', ']')
}

// jsonNumber writes f as JSON, without an exponent below 1e21 (as JavaScript does),
// so a base time reads as the seconds it is.
func jsonNumber(f float64) []byte {
	if math.Abs(f) < 1e21 {
		return strconv.AppendFloat(nil, f, 'f', -1, 64)
	}
	return strconv.AppendFloat(nil, f, 'g', -1, 64)
}

// quote is text as a JSON string.
func quote(text []byte) []byte {
	q, _ := json.Marshal(string(text)) // a string always marshals
	return q
}

// senmlFields are the fields the agent reads, each with its bit in senmlRecord.seen.
var senmlFields = [...]string{"bn", "bt", "bu", "bv", "bs", "bver", "n", "u", "v", "vs", "vb", "vd", "s", "t", "ut"}

// field returns the field's name (shared, not a copy of key) and bit.
func field(key []byte) (string, uint32, bool) {
	for i, f := range senmlFields {
		if string(key) == f {
			return f, 1 << i, true
		}
	}
	return "", 0, false
}

// fieldBit is the bit of a field name in senmlRecord.seen.
func fieldBit(name string) uint32 {
	_, bit, _ := field([]byte(name))
	return bit
}

// readRecord reads one record object, updating the base fields it redefines. A
// problem confined to the record (a partError) still reads the record to its end,
// so the base fields it sets apply to the records after it and the pack goes on;
// any other error is a syntax error that spoils the pack.
func readRecord(s *scanner, b *senmlBase, idx int) (senmlRecord, error) {
	var rec senmlRecord
	if c := s.peek(); c != '{' {
		if c == 0 {
			return rec, s.syntax()
		}
		err := fmt.Errorf("SenML record %d: must be an object, got %s", idx, kind(c))
		if s.skip(0) != nil {
			return rec, err
		}
		return rec, &partError{err.Error()}
	}
	s.i++
	if s.eat('}') {
		return rec, nil
	}
	var first error // the first problem of the record
	for {
		key, err := s.str()
		if err != nil {
			return rec, err
		}
		if !s.eat(':') {
			return rec, s.syntax()
		}
		s.peek()
		value := s.i
		name, bit, known := field(key)
		switch {
		case !known:
			if len(key) > 0 && key[len(key)-1] == '_' {
				err = partErrorf("SenML record %d: field %q must be understood and is not supported", idx, clip(string(key), 40))
			}
			if err := s.skip(0); err != nil {
				return rec, err
			}
		case rec.seen&bit != 0:
			err = partErrorf("SenML record %d: field %q given twice", idx, name)
			if err := s.skip(0); err != nil {
				return rec, err
			}
		default:
			rec.seen |= bit
			err = readField(s, b, &rec, name, idx)
			if err != nil && !isPart(err) {
				return rec, err
			}
			if err != nil { // read over the value the field could not use
				s.i = value
				if err := s.skip(0); err != nil {
					return rec, err
				}
			}
		}
		if first == nil {
			first = err
		}
		if s.eat(',') {
			continue
		}
		if s.eat('}') {
			return rec, first
		}
		return rec, s.syntax()
	}
}

func readField(s *scanner, b *senmlBase, rec *senmlRecord, key string, idx int) error {
	c := s.peek()
	switch key {
	case "vs", "vd":
		return partErrorf("SenML record %d: %q is not a number: Atrium readings are numeric, use v", idx, key)
	case "vb":
		switch {
		case s.literal("true"):
			rec.value = 1
		case s.literal("false"):
			rec.value = 0
		default:
			return partErrorf("SenML record %d: \"vb\" must be a boolean, got %s", idx, kind(c))
		}
		rec.hasBool = true
		return nil
	case "bn", "bu", "n", "u":
		if c != '"' {
			return partErrorf("SenML record %d: %q must be a string, got %s", idx, key, kind(c))
		}
		text, err := s.str()
		if err != nil {
			return err
		}
		switch key {
		case "bn":
			b.name = text
		case "bu":
			b.unit = text
		case "n":
			rec.name, rec.hasName = text, true
		case "u":
			rec.unit, rec.hasUnit = text, true
		}
		return nil
	}
	// Every other field is a number.
	raw, ok := s.number()
	if !ok {
		return partErrorf("SenML record %d: %q must be a number, got %s", idx, key, kind(c))
	}
	f, ok := parseFloat(raw)
	if !ok {
		return partErrorf("SenML record %d: %q must be a finite number", idx, key)
	}
	switch key {
	case "bt":
		b.time = f
	case "bv":
		b.value = f
	case "bver":
		if f > senmlVersion {
			return partErrorf("SenML record %d: version %g is not supported (at most %d)", idx, f, senmlVersion)
		}
	case "v":
		rec.value, rec.hasValue = f, true
	case "t":
		rec.time = f
	}
	return nil // bs, s, ut: read, not used
}

// resolve turns a record and the base fields in force into a reading.
func resolve(rec senmlRecord, b *senmlBase, base reading.Reading, now time.Time, idx int) (reading.Reading, error) {
	name := rec.name
	if len(name) == 0 {
		name = b.name
		if i := bytes.LastIndexAny(name, "/:"); i >= 0 {
			name = name[i+1:]
		}
	}
	if len(name) == 0 {
		return base, partErrorf("SenML record %d: no name: set n (the reading type) or bn", idx)
	}
	if !reading.ValidType(string(name)) {
		full := string(b.name) + string(rec.name)
		return base, partErrorf("SenML record %d: name %q: the type %q must be lowercase a-z 0-9 _", idx, clip(full, 60), clip(string(name), 40))
	}
	r := base
	r.Type = internType(name)

	switch {
	case rec.hasValue && rec.hasBool:
		return base, partErrorf("SenML record %d (%q): both v and vb given", idx, r.Type)
	case rec.hasValue:
		r.Value = b.value + rec.value
	case rec.hasBool:
		r.Value = rec.value
	default:
		return base, partErrorf("SenML record %d (%q): no numeric value (v)", idx, r.Type)
	}

	unit := b.unit
	if rec.hasUnit {
		unit = rec.unit
	}
	if len(unit) > 0 {
		r.Unit = internUnit(unit)
	}

	t := b.time + rec.time
	var ms int64
	switch {
	case math.IsInf(t, 0) || t > maxSeconds || t < -maxSeconds:
		return base, partErrorf("SenML record %d (%q): time %g is out of range", idx, r.Type, t)
	case t >= senmlRelative:
		ms = int64(math.Round(t * 1000))
	default:
		ms = now.UnixMilli() + int64(math.Round(t*1000))
	}
	if ms < 0 {
		return base, partErrorf("SenML record %d (%q): time %g is before 1970", idx, r.Type, t)
	}
	r.Timestamp = time.UnixMilli(ms).UTC()
	return r, nil
}

// internUnit returns the shared string of a known unit, or a copy of u.
func internUnit(u []byte) string {
	if s, ok := interned[string(u)]; ok {
		return s
	}
	return string(u)
}
