// Package decode turns one MQTT publish received by the edge agent into readings.
//
// The topic says who published and what the payload holds:
//
//	atrium/<room_id>/<sensor_id>          a JSON object of several metrics, or a SenML pack
//	atrium/<room_id>/<sensor_id>/<type>   a plain number
//	atrium/<room_id>/<sensor_id>/status   "online" or "offline" (the device's last will)
//
// Every reading takes its room and sensor ids from the topic and the agent's site,
// then passes reading.Validate, the same rules the cloud applies.
//
// A message is used as far as it can be. Each field of a JSON object and each record
// of a SenML pack stands alone:
//
//   - A numeric field or a record that yields a reading passing validation is kept.
//   - One that cannot be used (out of range, in the future, a wrong unit, a key that
//     is not a reading type, a record without a value, a string where a known type
//     needs a number) is returned in Result.Invalid with its reason and a payload of
//     its own, so the caller dead-letters that part alone and keeps the others.
//   - A JSON field whose value is not a number (a string, a boolean, null, an object
//     or an array) and whose key is not a known reading type is ignored and counted
//     in Result.Ignored: firmware adds versions, flags and names ("fw":"1.0.3",
//     "ok":true). A null is "no value" and is ignored under any key.
//
// Decode returns an error, and nothing else, only when nothing in the message can be
// read as readings: a bad topic, a plain value that is not a number, a status that is
// neither "online" nor "offline", a payload that is not JSON of the right shape (one
// syntax error anywhere spoils the whole message), an unusable time for the whole
// object, more than MaxReadings parts, a SenML pack without records, or an object
// with no field but ignored ones. The caller dead-letters such a message whole. Error texts and reasons are written
// to be a dead letter's reason: they name the key, record or field that is wrong.
//
// Decode runs on every publish, so it reads JSON with a small scanner of its own
// instead of reflection: a valid message costs one allocation for its readings, and
// ignoring fields costs none.
package decode

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/atrium-iot/atrium/internal/reading"
)

// The forms a message can take, as reported in Result.Form.
const (
	FormJSON   = "json"   // atrium/<room>/<sensor>: {"temperature":21.5,"ts":…}
	FormSenML  = "senml"  // atrium/<room>/<sensor>: [{"bn":…,"n":…,"v":…}, …] (RFC 8428)
	FormPlain  = "plain"  // atrium/<room>/<sensor>/<type>: 21.5
	FormStatus = "status" // atrium/<room>/<sensor>/status: online | offline
)

// TopicPrefix is the first level of every topic the agent decodes.
const TopicPrefix = "atrium/"

// MaxReadings is the most readings one message may carry; a longer message is rejected.
const MaxReadings = 1000

// ErrTopic is wrapped by every error about the topic itself (as opposed to the
// payload), so a caller can tell a publish that is not for Atrium from a bad one.
var ErrTopic = errors.New("topic")

// Result is what one message holds: readings, or for a status topic a Status.
type Result struct {
	Form     string // FormJSON, FormSenML, FormPlain or FormStatus
	Readings []reading.Reading
	Status   *Status
	// Invalid are the parts of the message that could not be used: readings that
	// failed validation (out of range, in the future, a wrong unit), JSON fields and
	// SenML records that do not make a reading. The readings of the same message are
	// in Readings: one bad part does not spoil the others.
	Invalid []Invalid
	// Ignored counts the fields of a JSON object that were not numbers and not
	// readings (a firmware version, a flag), left out on purpose.
	Ignored int
}

// Invalid is one part of a message that could not be used, and why.
type Invalid struct {
	// Reading is the reading as far as it was read: complete when it failed
	// validation, only the ids and perhaps the type when the part did not decode.
	Reading reading.Reading
	Reason  string
	// Payload is the part alone as a payload for the same topic: the JSON field with
	// the object's time, the SenML record with the base fields in force, or the whole
	// payload of a plain number. Decoded again it gives the same reading or reason.
	Payload []byte
}

// Status is a device's announcement that it is online or offline.
type Status struct {
	SensorID, RoomID string
	Online           bool
}

// Decode reads one MQTT publish. site is the agent's site, stamped on every reading;
// now is the agent's clock: it stamps readings without a time, anchors SenML relative
// times and bounds the future. An error means nothing in the message could be read as
// readings (topic, syntax, the object's time, no numeric field) and the Result is
// empty; otherwise the parts that cannot be used are in Result.Invalid next to the
// readings, and a non-error Result always holds at least one of either.
func Decode(topic string, payload []byte, site string, now time.Time) (Result, error) {
	room, sensor, typ, err := parseTopic(topic)
	if err != nil {
		return Result{}, err
	}
	now = now.Truncate(time.Millisecond).UTC()
	base := reading.Reading{SensorID: sensor, RoomID: room, Site: site}
	body := bytes.TrimSpace(payload)

	switch {
	case typ == "status":
		online, err := parseStatus(body)
		if err != nil {
			return Result{}, err
		}
		return Result{Form: FormStatus, Status: &Status{SensorID: sensor, RoomID: room, Online: online}}, nil

	case typ != "":
		r := base
		r.Type = typ
		r.Timestamp = now
		v, err := parsePlain(body, r.Type)
		if err != nil {
			return Result{}, err
		}
		r.Value = v
		rs, bad := validate([]reading.Reading{r}, now, nil, func(reading.Reading) []byte { return bytes.Clone(body) })
		return Result{Form: FormPlain, Readings: rs, Invalid: bad}, nil
	}

	if len(body) == 0 {
		return Result{}, errors.New("empty payload: want a JSON object of metrics or a SenML array")
	}
	switch body[0] {
	case '{':
		obj, err := decodeObject(body, base, now)
		if err != nil {
			return Result{}, err
		}
		rs, bad := validate(obj.readings, now, obj.bad, func(r reading.Reading) []byte { return obj.part(r.Type) })
		return Result{Form: FormJSON, Readings: rs, Invalid: bad, Ignored: obj.ignored}, nil
	case '[':
		rs, bad, err := decodeSenML(body, base, now)
		if err != nil {
			return Result{}, err
		}
		return Result{Form: FormSenML, Readings: rs, Invalid: bad}, nil
	}
	return Result{}, fmt.Errorf("payload starting with %q is neither a JSON object of metrics nor a SenML array", body[0])
}

// parseTopic splits atrium/<room>/<sensor>[/<type>] and checks the ids.
func parseTopic(topic string) (room, sensor, typ string, err error) {
	rest, ok := strings.CutPrefix(topic, TopicPrefix)
	if !ok {
		return "", "", "", fmt.Errorf("%w %q: does not start with %s", ErrTopic, clip(topic, 80), TopicPrefix)
	}
	room, rest, ok = strings.Cut(rest, "/")
	if !ok {
		return "", "", "", fmt.Errorf("%w %q: want atrium/<room_id>/<sensor_id>[/<type>|/status]", ErrTopic, clip(topic, 80))
	}
	sensor, typ, hasType := strings.Cut(rest, "/")
	if hasType && (typ == "" || strings.IndexByte(typ, '/') >= 0) {
		return "", "", "", fmt.Errorf("%w %q: want atrium/<room_id>/<sensor_id>[/<type>|/status]", ErrTopic, clip(topic, 80))
	}
	if !reading.ValidID(room) {
		return "", "", "", fmt.Errorf("%w %q: room_id %q must be 1-%d characters of A-Z a-z 0-9 . _ : -", ErrTopic, clip(topic, 80), clip(room, 40), reading.MaxIDLen)
	}
	if !reading.ValidID(sensor) {
		return "", "", "", fmt.Errorf("%w %q: sensor_id %q must be 1-%d characters of A-Z a-z 0-9 . _ : -", ErrTopic, clip(topic, 80), clip(sensor, 40), reading.MaxIDLen)
	}
	if hasType && typ != "status" && !reading.ValidType(typ) {
		return "", "", "", fmt.Errorf("%w %q: type %q must be lowercase a-z 0-9 _", ErrTopic, clip(topic, 80), clip(typ, 40))
	}
	return room, sensor, typ, nil
}

func parseStatus(body []byte) (online bool, err error) {
	switch {
	case bytes.EqualFold(body, []byte("online")):
		return true, nil
	case bytes.EqualFold(body, []byte("offline")):
		return false, nil
	}
	return false, fmt.Errorf("status must be \"online\" or \"offline\", got %q", clip(string(body), 32))
}

// parsePlain reads a payload that is one JSON number, nothing else.
func parsePlain(body []byte, typ string) (float64, error) {
	if len(body) == 0 {
		return 0, fmt.Errorf("value of %q: empty payload, want a number", typ)
	}
	s := scanner{b: body}
	raw, ok := s.number()
	if !ok || s.i != len(body) {
		return 0, fmt.Errorf("value of %q: must be a finite number, got %q", typ, clip(string(body), 32))
	}
	v, ok := parseFloat(raw)
	if !ok {
		return 0, fmt.Errorf("value of %q: must be a finite number", typ)
	}
	return v, nil
}

// validate runs the shared rules on every reading and names the one that fails;
// the invalid ones are added to invalid, each with the payload part gives it.
func validate(rs []reading.Reading, now time.Time, invalid []Invalid, part func(reading.Reading) []byte) ([]reading.Reading, []Invalid) {
	valid := rs[:0]
	for i := range rs {
		r := rs[i]
		if reason := check(&r, now); reason != "" {
			invalid = append(invalid, Invalid{Reading: r, Reason: reason, Payload: part(r)})
			continue
		}
		valid = append(valid, r)
	}
	if len(valid) == 0 {
		valid = nil
	}
	return valid, invalid
}

// check validates r and returns the reason it fails, or "".
func check(r *reading.Reading, now time.Time) string {
	err := reading.Validate(r, now)
	if err == nil {
		return ""
	}
	var fe *reading.FieldError
	if errors.As(err, &fe) {
		return fmt.Sprintf("%s of %q: %s", fe.Field, r.Type, fe.Reason)
	}
	return err.Error()
}

// partError is a problem confined to one field of an object or one record of a
// pack: that part is dead-lettered, the rest of the message is used.
type partError struct{ msg string }

func (e *partError) Error() string { return e.msg }

func partErrorf(format string, args ...any) error {
	return &partError{fmt.Sprintf(format, args...)}
}

// isPart reports whether err is confined to one part of the message.
func isPart(err error) bool {
	var pe *partError
	return errors.As(err, &pe)
}

// interned holds the strings readings share, so a known type or unit taken from a
// payload costs no allocation.
var interned = func() map[string]string {
	m := make(map[string]string, 2*len(reading.Known))
	for name, k := range reading.Known {
		m[name] = name
		if k.Unit != "" {
			m[k.Unit] = k.Unit
		}
	}
	return m
}()

func internType(b []byte) string {
	if s, ok := interned[string(b)]; ok {
		return s
	}
	return string(b)
}

// clip shortens s for an error message.
func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
