package sensor

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"math"

	"github.com/atrium-iot/atrium/internal/reading"
)

// fingerprintVersion starts every fingerprinted encoding, so that a change of
// the encoding cannot make two different requests look alike.
const fingerprintVersion = "atrium.sensor.batch.v1\x00"

// Fingerprint is the hex SHA-256 of a canonical encoding of a request's decoded
// content: the batch's site, then every reading in order, each field as it was
// decoded (its value, or what was wrong with it). The batch id is not part of it.
//
// It depends on what the request says, not on how it was written: gzip or not,
// whitespace, key order, the body form (batch object, array, one reading),
// `21.50` or `21.5`, a timestamp in RFC 3339 or Unix milliseconds, an empty or a
// missing text field all fingerprint alike. Nor does it depend on the receiver's
// clock: a reading without a timestamp, or one rejected as too far in the future,
// fingerprints the same when it is resent later.
func Fingerprint(site string, inputs []reading.Input) string {
	h := sha256.New()
	buf := make([]byte, 0, fingerprintChunk+1024)
	buf = append(buf, fingerprintVersion...)
	buf = appendString(buf, site)
	buf = binary.AppendUvarint(buf, uint64(len(inputs)))
	for i := range inputs {
		in := &inputs[i]
		buf = appendText(buf, in.SensorID)
		buf = appendText(buf, in.RoomID)
		buf = appendText(buf, in.Site)
		buf = appendText(buf, in.Type)
		buf = appendNumber(buf, in.Value)
		buf = appendText(buf, in.Unit)
		buf = appendTime(buf, in.Timestamp)
		if len(buf) >= fingerprintChunk {
			h.Write(buf)
			buf = buf[:0]
		}
	}
	h.Write(buf)
	return hex.EncodeToString(h.Sum(nil))
}

// fingerprintChunk is how much of the encoding is hashed at a time.
const fingerprintChunk = 8 << 10

// Tags of a field's state in the encoding.
const (
	tagAbsent = 0
	tagValue  = 1
	tagBad    = 2
)

func appendString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

// appendText encodes a text field; missing, null and "" mean the same and encode
// alike.
func appendText(b []byte, t reading.Text) []byte {
	if t.BadType != "" {
		return appendString(append(b, tagBad), t.BadType)
	}
	return appendString(append(b, tagValue), t.S)
}

// appendTag encodes the tag of a field that has a problem or is set: it
// encodes a bad or absent field whole and says so, else the tag of a value,
// which the caller encodes next.
func appendTag(b []byte, problem string, set bool) ([]byte, bool) {
	switch {
	case problem != "":
		return appendString(append(b, tagBad), problem), true
	case !set:
		return append(b, tagAbsent), true
	}
	return append(b, tagValue), false
}

func appendNumber(b []byte, n reading.Number) []byte {
	b, done := appendTag(b, n.Problem, n.Set)
	if done {
		return b
	}
	f := n.F
	if f == 0 {
		f = 0 // -0 is 0
	}
	return binary.BigEndian.AppendUint64(b, math.Float64bits(f))
}

func appendTime(b []byte, t reading.Time) []byte {
	b, done := appendTag(b, t.Problem, t.Set)
	if done {
		return b
	}
	b = binary.AppendVarint(b, t.T.Unix())
	return binary.AppendUvarint(b, uint64(t.T.Nanosecond()))
}
