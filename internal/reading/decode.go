package reading

import "bytes"

// A hand-written decoder for the bodies the sensor service receives most: an
// array of reading objects, and the batch object {"batch_id", "site",
// "readings"}. encoding/json spends most of its time on reflection and on
// calling each field's UnmarshalJSON; this scanner walks the bytes once.
//
// It is a fast path, never a second definition of the format: it gives up
// (ok == false) on anything it does not handle exactly as encoding/json would
// (unknown or repeated keys, keys spelled in another case or with escapes,
// nested objects or arrays as field values, malformed JSON), and the caller
// then decodes the same bytes with encoding/json. Whatever it does decode, it
// decodes through the same UnmarshalJSON methods, so the result is the one
// encoding/json gives; FuzzFastDecode holds it to that.

// BatchInput is a JSON object body: either a batch {"batch_id": ..., "site":
// ..., "readings": [...]} or a single reading, whose fields are in Input.
type BatchInput struct {
	BatchID Text
	// Readings is nil unless the object has a non-null "readings" member.
	Readings *[]Input
	Input
}

// DecodeInputs decodes a JSON array of reading objects as json.Unmarshal into
// a []Input would. ok is false when the fast path does not apply: decode b with
// encoding/json then (it also reports what is wrong with malformed JSON).
func DecodeInputs(b []byte) (ins []Input, ok bool) {
	d := decoder{b: b}
	d.skipSpace()
	ins, ok = d.inputs()
	if !ok {
		return nil, false
	}
	d.skipSpace()
	return ins, d.i == len(d.b)
}

// DecodeBatch decodes a JSON object body as json.Unmarshal into BatchInput
// would. ok is false when the fast path does not apply: decode b with
// encoding/json then.
func DecodeBatch(b []byte) (bi BatchInput, ok bool) {
	d := decoder{b: b}
	d.skipSpace()
	ok = d.object(func(key []byte, seen *uint16) bool {
		switch string(key) {
		case "batch_id":
			return d.once(seen, 1<<8) && d.text(&bi.BatchID)
		case "readings":
			if !d.once(seen, 1<<9) {
				return false
			}
			if d.literal("null") {
				bi.Readings = nil
				return true
			}
			ins, ok := d.inputs()
			bi.Readings = &ins
			return ok
		}
		return d.field(&bi.Input, key, seen)
	})
	if !ok {
		return BatchInput{}, false
	}
	d.skipSpace()
	return bi, d.i == len(d.b)
}

// decoder is a cursor over one JSON text.
type decoder struct {
	b []byte
	i int
	// interned holds the strings already made from this text, so a batch's
	// many readings of one sensor share one sensor_id string.
	interned map[string]string
}

func (d *decoder) skipSpace() {
	for d.i < len(d.b) {
		switch d.b[d.i] {
		case ' ', '\t', '\n', '\r':
			d.i++
		default:
			return
		}
	}
}

// consume skips space and then c, reporting whether c was there.
func (d *decoder) consume(c byte) bool {
	d.skipSpace()
	if d.i < len(d.b) && d.b[d.i] == c {
		d.i++
		return true
	}
	return false
}

// literal skips space and then lit, if it is there and not followed by more
// letters.
func (d *decoder) literal(lit string) bool {
	d.skipSpace()
	end := d.i + len(lit)
	if end > len(d.b) || string(d.b[d.i:end]) != lit {
		return false
	}
	if end < len(d.b) && isLetterOrDigit(d.b[end]) {
		return false
	}
	d.i = end
	return true
}

func isLetterOrDigit(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
}

// inputs decodes an array of reading objects.
func (d *decoder) inputs() ([]Input, bool) {
	if !d.consume('[') {
		return nil, false
	}
	// Every reading is an object: counting the braces left sizes the slice
	// once, close to exactly.
	ins := make([]Input, 0, bytes.Count(d.b[d.i:], []byte{'{'}))
	if d.consume(']') {
		return ins, true
	}
	for {
		ins = append(ins, Input{})
		in := &ins[len(ins)-1]
		ok := d.object(func(key []byte, seen *uint16) bool { return d.field(in, key, seen) })
		if !ok {
			return nil, false
		}
		if d.consume(']') {
			return ins, true
		}
		if !d.consume(',') {
			return nil, false
		}
	}
}

// object decodes an object, calling member for each key with the cursor on
// its value; member consumes the value. seen is a bit set members use to
// refuse a repeated key: encoding/json would merge the two values.
func (d *decoder) object(member func(key []byte, seen *uint16) bool) bool {
	if !d.consume('{') {
		return false
	}
	if d.consume('}') {
		return true
	}
	var seen uint16
	for {
		d.skipSpace()
		key, ok := d.stringToken()
		if !ok || !d.consume(':') {
			return false
		}
		// A key with an escape is compared escaped: it then matches no field
		// name and the fast path gives up, as it should.
		if !member(key[1:len(key)-1], &seen) {
			return false
		}
		if d.consume('}') {
			return true
		}
		if !d.consume(',') {
			return false
		}
	}
}

// once marks bit in seen and reports whether it was clear.
func (d *decoder) once(seen *uint16, bit uint16) bool {
	if *seen&bit != 0 {
		return false
	}
	*seen |= bit
	return true
}

// field decodes the value of a reading's member key into in. Keys encoding/json
// would match only case-insensitively, or would ignore, end the fast path.
func (d *decoder) field(in *Input, key []byte, seen *uint16) bool {
	switch string(key) {
	case "sensor_id":
		return d.once(seen, 1<<0) && d.text(&in.SensorID)
	case "room_id":
		return d.once(seen, 1<<1) && d.text(&in.RoomID)
	case "site":
		return d.once(seen, 1<<2) && d.text(&in.Site)
	case "type":
		return d.once(seen, 1<<3) && d.text(&in.Type)
	case "unit":
		return d.once(seen, 1<<4) && d.text(&in.Unit)
	case "value":
		raw, ok := d.scalar()
		return ok && d.once(seen, 1<<5) && in.Value.UnmarshalJSON(raw) == nil
	case "timestamp":
		raw, ok := d.scalar()
		return ok && d.once(seen, 1<<6) && in.Timestamp.UnmarshalJSON(raw) == nil
	}
	return false
}

// text decodes a Text member. A plain string is interned; anything else goes
// through Text.UnmarshalJSON with the raw value, as encoding/json would.
func (d *decoder) text(t *Text) bool {
	raw, ok := d.scalar()
	if !ok {
		return false
	}
	if inner, plain := plainString(raw); plain {
		*t = Text{S: d.intern(inner), Set: true}
		return true
	}
	return t.UnmarshalJSON(raw) == nil
}

// intern returns the string of b, the same string every time.
func (d *decoder) intern(b []byte) string {
	if s, ok := d.interned[string(b)]; ok {
		return s
	}
	if d.interned == nil {
		d.interned = make(map[string]string)
	}
	s := string(b)
	d.interned[s] = s
	return s
}

// scalar returns the raw bytes of a string, number, true, false or null value.
// Objects and arrays are left to encoding/json.
func (d *decoder) scalar() ([]byte, bool) {
	d.skipSpace()
	if d.i >= len(d.b) {
		return nil, false
	}
	switch c := d.b[d.i]; {
	case c == '"':
		return d.stringToken()
	case c == '-' || c >= '0' && c <= '9':
		return d.number()
	default:
		start := d.i
		for _, lit := range []string{"true", "false", "null"} {
			if d.literal(lit) {
				return d.b[start:d.i], true
			}
		}
		return nil, false
	}
}

// stringToken returns the raw bytes of the string at the cursor, quotes
// included, after checking them against the JSON grammar.
func (d *decoder) stringToken() ([]byte, bool) {
	if d.i >= len(d.b) || d.b[d.i] != '"' {
		return nil, false
	}
	start := d.i
	for i := d.i + 1; i < len(d.b); i++ {
		switch c := d.b[i]; {
		case c == '"':
			d.i = i + 1
			return d.b[start:d.i], true
		case c < 0x20:
			return nil, false
		case c == '\\':
			i++
			if i >= len(d.b) {
				return nil, false
			}
			switch d.b[i] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
			case 'u':
				if i+4 >= len(d.b) {
					return nil, false
				}
				for _, h := range d.b[i+1 : i+5] {
					if !(h >= '0' && h <= '9' || h >= 'a' && h <= 'f' || h >= 'A' && h <= 'F') {
						return nil, false
					}
				}
				i += 4
			default:
				return nil, false
			}
		}
	}
	return nil, false
}

// number returns the raw bytes of the number at the cursor, checked against
// the JSON grammar: -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?
func (d *decoder) number() ([]byte, bool) {
	b, i := d.b, d.i
	digits := func() bool {
		n := i
		for i < len(b) && b[i] >= '0' && b[i] <= '9' {
			i++
		}
		return i > n
	}
	if i < len(b) && b[i] == '-' {
		i++
	}
	switch {
	case i < len(b) && b[i] == '0':
		i++
	case !digits():
		return nil, false
	}
	if i < len(b) && b[i] == '.' {
		i++
		if !digits() {
			return nil, false
		}
	}
	if i < len(b) && (b[i] == 'e' || b[i] == 'E') {
		i++
		if i < len(b) && (b[i] == '+' || b[i] == '-') {
			i++
		}
		if !digits() {
			return nil, false
		}
	}
	start := d.i
	d.i = i
	return b[start:i], true
}

// plainString returns the inside of a quoted JSON string that needs no
// decoding: printable ASCII without escapes. encoding/json decodes such a
// string to exactly these bytes.
func plainString(raw []byte) ([]byte, bool) {
	if len(raw) < 2 || raw[0] != '"' || raw[len(raw)-1] != '"' {
		return nil, false
	}
	inner := raw[1 : len(raw)-1]
	for _, c := range inner {
		if c < 0x20 || c > 0x7e || c == '"' || c == '\\' {
			return nil, false
		}
	}
	return inner, true
}
