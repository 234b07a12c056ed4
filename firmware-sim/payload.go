package sim

import (
	"bytes"
	"strconv"
	"time"

	"github.com/atrium-iot/atrium/firmware-sim/replay"
	"github.com/atrium-iot/atrium/internal/reading"
)

// Form is how a device writes its readings.
type Form string

// The payload forms of the MQTT contract.
const (
	// FormJSON is one JSON object of several metrics with "ts" in Unix ms on atrium/<room>/<sensor>.
	FormJSON Form = "json"
	// FormSenML is a SenML pack (bn "<sensor>/", bt in seconds, n/u/v) on atrium/<room>/<sensor>.
	FormSenML Form = "senml"
	// FormPlain is one bare number per message on atrium/<room>/<sensor>/<type>, without a timestamp.
	FormPlain Form = "plain"
)

// message is one MQTT publish and what it carries.
type message struct {
	topic     string
	payload   []byte
	form      Form
	malformed bool
	// readings are the readings a decoder gets from the payload; a plain message's
	// have no timestamp (the receiver stamps them).
	readings []reading.Reading
	// duplicate marks the second copy of a duplicated message.
	duplicate bool
	// mayHaveArrived marks a message whose publish was cut after it was written:
	// the broker may have it, and sending it again counts as a resend.
	mayHaveArrived bool
}

// Topic returns the data topic of a device, or of one of its metrics when typ is set.
func Topic(room, sensor, typ string) string {
	t := "atrium/" + room + "/" + sensor
	if typ != "" {
		t += "/" + typ
	}
	return t
}

// StatusTopic is where a device says online or offline.
func StatusTopic(room, sensor string) string { return Topic(room, sensor, "status") }

func formatValue(v float64) string { return strconv.FormatFloat(v, 'f', -1, 64) }

// encode writes a frame as the messages of a form. ts is the frame's timestamp.
func encode(form Form, room, sensor string, ts time.Time, ms []replay.Metric) []*message {
	ts = ts.Truncate(time.Millisecond).UTC()
	rs := make([]reading.Reading, len(ms))
	for i, m := range ms {
		rs[i] = reading.Reading{SensorID: sensor, RoomID: room, Type: m.Type, Value: m.Value, Unit: m.Unit, Timestamp: ts}
	}
	var b bytes.Buffer
	switch form {
	case FormPlain:
		out := make([]*message, len(ms))
		for i, m := range ms {
			r := rs[i]
			r.Timestamp = time.Time{}
			out[i] = &message{topic: Topic(room, sensor, m.Type), payload: []byte(formatValue(m.Value)), form: form, readings: []reading.Reading{r}}
		}
		return out
	case FormSenML:
		b.WriteString(`[`)
		for i, m := range ms {
			if i == 0 {
				b.WriteString(`{"bn":`)
				b.WriteString(strconv.Quote(sensor + "/"))
				b.WriteString(`,"bt":`)
				b.WriteString(formatValue(float64(ts.UnixMilli()) / 1000))
				b.WriteString(`,`)
			} else {
				b.WriteString(`,{`)
			}
			b.WriteString(`"n":`)
			b.WriteString(strconv.Quote(m.Type))
			if m.Unit != "" {
				b.WriteString(`,"u":`)
				b.WriteString(strconv.Quote(m.Unit))
			}
			b.WriteString(`,"v":`)
			b.WriteString(formatValue(m.Value))
			b.WriteString(`}`)
		}
		b.WriteString(`]`)
	default:
		b.WriteString(`{`)
		for _, m := range ms {
			b.WriteString(strconv.Quote(m.Type))
			b.WriteString(`:`)
			b.WriteString(formatValue(m.Value))
			b.WriteString(`,`)
		}
		b.WriteString(`"ts":`)
		b.WriteString(strconv.FormatInt(ts.UnixMilli(), 10))
		b.WriteString(`}`)
	}
	return []*message{{topic: Topic(room, sensor, ""), payload: b.Bytes(), form: form, readings: rs}}
}

// breakPayload makes m undecodable: a JSON or SenML payload is cut in half (a strict
// prefix of a JSON object or array is never valid JSON), a plain number becomes "n/a".
func breakPayload(m *message) {
	m.malformed = true
	m.readings = nil
	if m.form == FormPlain {
		m.payload = []byte("n/a")
		return
	}
	m.payload = m.payload[:len(m.payload)/2]
}
