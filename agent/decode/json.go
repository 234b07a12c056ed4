package decode

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/atrium-iot/atrium/internal/reading"
)

// maxDepth bounds the nesting of values the scanner skips over.
const maxDepth = 32

// scanner reads JSON straight from the payload: just the grammar the agent's forms
// need, strictly (RFC 8259), without reflection and without allocating unless a
// string holds escapes.
type scanner struct {
	b []byte
	i int
}

func (s *scanner) syntax() error {
	if s.i >= len(s.b) {
		return fmt.Errorf("invalid JSON: unexpected end of payload at byte %d", s.i)
	}
	return fmt.Errorf("invalid JSON: unexpected %q at byte %d", s.b[s.i], s.i)
}

// peek skips whitespace and returns the next byte, or 0 at the end.
func (s *scanner) peek() byte {
	for s.i < len(s.b) {
		switch c := s.b[s.i]; c {
		case ' ', '\t', '\n', '\r':
			s.i++
		default:
			return c
		}
	}
	return 0
}

// eat consumes c if it is the next byte after whitespace.
func (s *scanner) eat(c byte) bool {
	if s.peek() == c {
		s.i++
		return true
	}
	return false
}

// rawString reads a string at s.i (which must be '"') and returns what is between
// the quotes, and whether it holds escapes.
func (s *scanner) rawString() (raw []byte, escaped bool, err error) {
	start := s.i + 1
	for i := start; i < len(s.b); i++ {
		switch c := s.b[i]; {
		case c == '"':
			s.i = i + 1
			return s.b[start:i], escaped, nil
		case c == '\\':
			escaped = true
			i++
		case c < 0x20:
			s.i = i
			return nil, false, s.syntax()
		}
	}
	s.i = len(s.b)
	return nil, false, s.syntax()
}

// str reads a string and returns its text: a slice of the payload when it holds no
// escapes, a fresh copy when it does.
func (s *scanner) str() ([]byte, error) {
	if s.peek() != '"' {
		return nil, s.syntax()
	}
	start := s.i
	raw, escaped, err := s.rawString()
	if err != nil {
		return nil, err
	}
	if escaped {
		var text string
		if err := json.Unmarshal(s.b[start:s.i], &text); err != nil {
			return nil, fmt.Errorf("invalid JSON string at byte %d", start)
		}
		raw = []byte(text)
	}
	if !utf8.Valid(raw) {
		return nil, fmt.Errorf("invalid UTF-8 in the string at byte %d", start)
	}
	return raw, nil
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

// number reads a JSON number at s.i and returns its text.
func (s *scanner) number() ([]byte, bool) {
	b, i, start := s.b, s.i, s.i
	if i < len(b) && b[i] == '-' {
		i++
	}
	switch {
	case i < len(b) && b[i] == '0':
		i++
	case i < len(b) && b[i] >= '1' && b[i] <= '9':
		for i < len(b) && isDigit(b[i]) {
			i++
		}
	default:
		return nil, false
	}
	if i < len(b) && b[i] == '.' {
		i++
		if i >= len(b) || !isDigit(b[i]) {
			return nil, false
		}
		for i < len(b) && isDigit(b[i]) {
			i++
		}
	}
	if i < len(b) && (b[i] == 'e' || b[i] == 'E') {
		i++
		if i < len(b) && (b[i] == '+' || b[i] == '-') {
			i++
		}
		if i >= len(b) || !isDigit(b[i]) {
			return nil, false
		}
		for i < len(b) && isDigit(b[i]) {
			i++
		}
	}
	s.i = i
	return b[start:i], true
}

// parseFloat converts a JSON number; false when it does not fit a finite float64.
func parseFloat(raw []byte) (float64, bool) {
	f, err := strconv.ParseFloat(string(raw), 64)
	if err != nil || math.IsInf(f, 0) || math.IsNaN(f) {
		return 0, false
	}
	return f, true
}

// literal consumes word (true, false, null) at s.i.
func (s *scanner) literal(word string) bool {
	if len(s.b)-s.i >= len(word) && string(s.b[s.i:s.i+len(word)]) == word {
		s.i += len(word)
		return true
	}
	return false
}

// skip reads over any JSON value.
func (s *scanner) skip(depth int) error {
	if depth > maxDepth {
		return fmt.Errorf("invalid JSON: nested deeper than %d levels", maxDepth)
	}
	switch c := s.peek(); {
	case c == '"':
		_, _, err := s.rawString()
		return err
	case c == '-' || isDigit(c):
		if _, ok := s.number(); !ok {
			return s.syntax()
		}
	case c == 't':
		if !s.literal("true") {
			return s.syntax()
		}
	case c == 'f':
		if !s.literal("false") {
			return s.syntax()
		}
	case c == 'n':
		if !s.literal("null") {
			return s.syntax()
		}
	case c == '[':
		s.i++
		if s.eat(']') {
			return nil
		}
		for {
			if err := s.skip(depth + 1); err != nil {
				return err
			}
			if s.eat(',') {
				continue
			}
			if s.eat(']') {
				return nil
			}
			return s.syntax()
		}
	case c == '{':
		s.i++
		if s.eat('}') {
			return nil
		}
		for {
			if s.peek() != '"' {
				return s.syntax()
			}
			if _, _, err := s.rawString(); err != nil {
				return err
			}
			if !s.eat(':') {
				return s.syntax()
			}
			if err := s.skip(depth + 1); err != nil {
				return err
			}
			if s.eat(',') {
				continue
			}
			if s.eat('}') {
				return nil
			}
			return s.syntax()
		}
	default:
		return s.syntax()
	}
	return nil
}

// end checks that nothing but whitespace follows the value just read.
func (s *scanner) end() error {
	if s.peek() != 0 {
		return fmt.Errorf("invalid JSON: data after the end of the value at byte %d", s.i)
	}
	return nil
}

// kind names the JSON value starting with c, for error messages.
func kind(c byte) string {
	switch {
	case c == '"':
		return "a string"
	case c == '{':
		return "an object"
	case c == '[':
		return "an array"
	case c == 't' || c == 'f':
		return "a boolean"
	case c == 'n':
		return "null"
	case c == '-' || isDigit(c):
		return "a number"
	case c == 0:
		return "nothing"
	}
	return fmt.Sprintf("%q", c)
}

// object is what decodeObject read of a JSON object of metrics.
type object struct {
	body     []byte
	readings []reading.Reading // the numeric fields of reading types, not yet validated
	bad      []Invalid         // the fields that make no reading, each with its reason and payload
	ignored  int               // non-numeric fields that are not reading types
	ts       span              // the ts or timestamp field, empty when there is none
}

// span is a part of the payload, body[start:end].
type span struct{ start, end int }

// decodeObject reads {"temperature":21.5,"humidity":40,"ts":1764072000000}: every
// key but ts/timestamp is a reading type with a numeric value. A field that cannot be
// used goes to object.bad and a non-numeric extra is counted in object.ignored (see
// the package doc); the error is for what spoils the whole object.
func decodeObject(body []byte, base reading.Reading, now time.Time) (object, error) {
	d := objectDecoder{obj: object{body: body}, s: scanner{b: body}, base: base}
	if !d.s.eat('{') {
		return d.obj, d.s.syntax()
	}
	if !d.s.eat('}') {
		// One slice for all readings: there are at most as many as commas plus one.
		d.rs = make([]reading.Reading, 0, min(bytes.Count(body, comma)+1, MaxReadings))
		if err := d.fields(); err != nil {
			return d.obj, err
		}
	}
	if err := d.s.end(); err != nil {
		return d.obj, err
	}
	return d.finish(now)
}

// objectDecoder is decodeObject's state while it reads the fields of one object.
type objectDecoder struct {
	obj     object
	s       scanner
	base    reading.Reading
	ts      reading.Time
	tsKey   string // "ts" or "timestamp" once one was read
	rs      []reading.Reading
	badAt   []span // the fields of obj.bad, for their payloads
	reasons []error
}

// fields reads "key":value pairs up to and including the closing brace.
func (d *objectDecoder) fields() error {
	for {
		if err := d.field(); err != nil {
			return err
		}
		if d.s.eat(',') {
			continue
		}
		if d.s.eat('}') {
			return nil
		}
		return d.s.syntax()
	}
}

// field reads one "key":value pair.
func (d *objectDecoder) field() error {
	d.s.peek()
	at := span{start: d.s.i}
	key, err := d.s.str()
	if err != nil {
		return err
	}
	if !d.s.eat(':') {
		return d.s.syntax()
	}
	switch string(key) {
	case "ts", "timestamp":
		return d.time(key, at)
	default:
		return d.metric(key, at)
	}
}

// time reads the value of the ts or timestamp field that starts at at.
func (d *objectDecoder) time(key []byte, at span) error {
	if d.tsKey != "" {
		return fmt.Errorf("%q given after %q: send one time", string(key), d.tsKey)
	}
	d.tsKey = "ts"
	if len(key) > 2 {
		d.tsKey = "timestamp"
	}
	start := d.s.peek()
	from := d.s.i
	switch {
	case start == '"':
		raw, escaped, err := d.s.rawString()
		if err != nil {
			return err
		}
		if !escaped { // the common case, without reflection
			t, err := reading.ParseTime(string(raw))
			if err != nil {
				return fmt.Errorf("%s: %w", d.tsKey, err)
			}
			d.ts = reading.Time{T: t, Set: true}
			d.obj.ts = span{at.start, d.s.i}
			return nil
		}
	case start == '-' || isDigit(start) || start == 'n':
		if err := d.s.skip(0); err != nil {
			return err
		}
	default:
		return fmt.Errorf("%s: must be RFC 3339 or Unix milliseconds, got %s", d.tsKey, kind(start))
	}
	_ = d.ts.UnmarshalJSON(d.s.b[from:d.s.i]) // never fails: problems are kept in ts
	if d.ts.Problem != "" {
		return fmt.Errorf("%s: %s", d.tsKey, d.ts.Problem)
	}
	d.obj.ts = span{at.start, d.s.i}
	return nil
}

// metric reads the value of a field that is not a time: a reading, a field that
// makes no reading (kept with its reason), or an ignored extra.
func (d *objectDecoder) metric(key []byte, at span) error {
	if len(d.rs)+len(d.reasons) == MaxReadings {
		return fmt.Errorf("more than %d metrics in one message", MaxReadings)
	}
	c := d.s.peek()
	if c != '-' && !isDigit(c) {
		return d.notNumber(key, at, c)
	}
	raw, ok := d.s.number()
	if !ok {
		return d.s.syntax()
	}
	at.end = d.s.i
	if err := numericField(&d.rs, key, raw, d.base); err != nil {
		d.bad(at, err)
	}
	return nil
}

// notNumber skips a value that starts with c, not a number: an extra the firmware
// sends (ignored), or a reading type's value in the wrong form (that field is
// dead-lettered).
func (d *objectDecoder) notNumber(key []byte, at span, c byte) error {
	if err := d.s.skip(0); err != nil {
		return err
	}
	if _, known := reading.Known[string(key)]; !known || c == 'n' {
		d.obj.ignored++
		return nil
	}
	at.end = d.s.i
	d.bad(at, fmt.Errorf("value of %q: must be a finite number, got %s", internType(key), kind(c)))
	return nil
}

func (d *objectDecoder) bad(at span, reason error) {
	d.reasons = append(d.reasons, reason)
	d.badAt = append(d.badAt, at)
}

// finish gives every reading and every unusable field the object's time.
func (d *objectDecoder) finish(now time.Time) (object, error) {
	obj := d.obj
	if len(d.rs) == 0 && len(d.reasons) == 0 {
		if obj.ignored > 0 {
			return obj, fmt.Errorf("no numeric metrics in the object, only %d non-numeric field(s), which are ignored: want e.g. {\"temperature\":21.5}", obj.ignored)
		}
		return obj, fmt.Errorf("no metrics in the object: want e.g. {\"temperature\":21.5}")
	}
	at := now
	if d.ts.Set {
		at = d.ts.T.Truncate(time.Millisecond).UTC()
	}
	for i := range d.rs {
		d.rs[i].Timestamp = at
	}
	if len(d.rs) > 0 {
		obj.readings = d.rs
	}
	for i, err := range d.reasons {
		r := d.base
		r.Timestamp = at
		obj.bad = append(obj.bad, Invalid{Reading: r, Reason: err.Error(), Payload: obj.payload(d.badAt[i])})
	}
	return obj, nil
}

// numericField adds the reading of key with the number raw to *rs, or says why the
// field makes no reading.
func numericField(rs *[]reading.Reading, key, raw []byte, base reading.Reading) error {
	if !reading.ValidType(string(key)) {
		return fmt.Errorf("key %q is neither ts, timestamp nor a reading type (lowercase a-z 0-9 _)", clip(string(key), 40))
	}
	typ := internType(key)
	v, ok := parseFloat(raw)
	if !ok {
		return fmt.Errorf("value of %q: must be a finite number", typ)
	}
	for _, r := range *rs {
		if r.Type == typ {
			return fmt.Errorf("metric %q given twice", typ)
		}
	}
	r := base
	r.Type, r.Value = typ, v
	*rs = append(*rs, r)
	return nil
}

// payload is one field of the object as an object of its own, with the object's time.
func (o object) payload(field span) []byte {
	p := make([]byte, 0, 2+field.end-field.start+1+o.ts.end-o.ts.start)
	p = append(p, '{')
	p = append(p, o.body[field.start:field.end]...)
	if o.ts.end > 0 {
		p = append(p, ',')
		p = append(p, o.body[o.ts.start:o.ts.end]...)
	}
	return append(p, '}')
}

// part is the payload of the field that gave the reading of type typ: the object
// was read without errors, so its fields are found again by scanning it.
func (o object) part(typ string) []byte {
	s := scanner{b: o.body}
	s.eat('{')
	for s.peek() == '"' {
		start := s.i
		key, err := s.str()
		if err != nil || !s.eat(':') || s.skip(0) != nil {
			break
		}
		if string(key) == typ {
			return o.payload(span{start, s.i})
		}
		if !s.eat(',') {
			break
		}
	}
	return bytes.Clone(o.body) // not reached for a reading decodeObject returned
}

var comma = []byte{','}
