package analytics

import (
	"bytes"
	"encoding/json"
	"errors"
	"math"
	"strconv"
	"time"

	"github.com/atrium-iot/atrium/internal/reading"
)

// DecodeEvent reads the readings of a sensor.data.received body. Bodies in the
// exact shape the sensor service writes (reading.AppendJSON, no escapes) take a
// fast path, several times quicker than encoding/json; anything else is read by
// encoding/json with the reading model's checks.
func DecodeEvent(body []byte) ([]reading.Reading, error) {
	if rs, ok := decodeFast(body); ok {
		return rs, nil
	}
	var ev struct {
		Readings []reading.Reading `json:"readings"`
	}
	if err := json.Unmarshal(body, &ev); err != nil {
		return nil, err
	}
	return ev.Readings, nil
}

var (
	readingsKey = []byte(`"readings":[`)
	errShape    = errors.New("unexpected shape")
)

// decodeFast parses the readings array of a body written by the sensor service.
// ok is false when the body is not in that shape.
func decodeFast(body []byte) (rs []reading.Reading, ok bool) {
	if bytes.IndexByte(body, '\\') >= 0 {
		return nil, false
	}
	i := bytes.Index(body, readingsKey)
	if i < 0 {
		return nil, false
	}
	p := &parser{b: body, i: i + len(readingsKey)}
	rs = make([]reading.Reading, 0, bytes.Count(body[p.i:], []byte(`"sensor_id"`)))
	if p.peek() == ']' {
		return rs, true
	}
	for {
		r, err := p.reading()
		if err != nil {
			return nil, false
		}
		rs = append(rs, r)
		switch p.next() {
		case ',':
		case ']':
			return rs, true
		default:
			return nil, false
		}
	}
}

type parser struct {
	b []byte
	i int
}

func (p *parser) peek() byte {
	if p.i < len(p.b) {
		return p.b[p.i]
	}
	return 0
}

func (p *parser) next() byte {
	c := p.peek()
	p.i++
	return c
}

// str reads a string without escapes (the caller made sure there are none).
func (p *parser) str() (string, error) {
	if p.next() != '"' {
		return "", errShape
	}
	j := bytes.IndexByte(p.b[p.i:], '"')
	if j < 0 {
		return "", errShape
	}
	s := string(p.b[p.i : p.i+j])
	p.i += j + 1
	return s, nil
}

func (p *parser) reading() (reading.Reading, error) {
	var r reading.Reading
	if p.next() != '{' {
		return r, errShape
	}
	var hasValue, hasTime bool
	for {
		key, err := p.str()
		if err != nil || p.next() != ':' {
			return r, errShape
		}
		switch key {
		case "value":
			j := p.i
			for j < len(p.b) && p.b[j] != ',' && p.b[j] != '}' {
				j++
			}
			v, err := strconv.ParseFloat(string(p.b[p.i:j]), 64)
			if err != nil || math.IsNaN(v) || math.IsInf(v, 0) {
				return r, errShape
			}
			r.Value, hasValue, p.i = v, true, j
		default:
			s, err := p.str()
			if err != nil {
				return r, errShape
			}
			switch key {
			case "sensor_id":
				r.SensorID = s
			case "room_id":
				r.RoomID = s
			case "site":
				r.Site = s
			case "type":
				r.Type = s
			case "unit":
				r.Unit = s
			case "timestamp":
				t, err := time.Parse(time.RFC3339Nano, s)
				if err != nil {
					return r, errShape
				}
				r.Timestamp, hasTime = t.UTC(), true
			default:
				return r, errShape
			}
		}
		switch p.next() {
		case ',':
		case '}':
			if r.SensorID == "" || r.Type == "" || !hasValue || !hasTime {
				return r, errShape
			}
			return r, nil
		default:
			return r, errShape
		}
	}
}
