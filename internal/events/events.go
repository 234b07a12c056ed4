// Package events holds the bodies of the events Atrium's services exchange on the
// bus and their one codec. The subjects are in package bus; a producer encodes
// with this package and every consumer decodes with it, under one policy: a
// reading inside an event that is not valid is skipped and counted, it never
// fails the event (a redelivery would carry the same reading again).
package events

import (
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/atrium-iot/atrium/internal/reading"
)

// SensorData is the body of sensor.data.received: the readings one batch stored.
type SensorData struct {
	// BatchID is the batch's caller-scoped key (e.g. "key:agent-hq/b-1"): the
	// same for every redelivery and every replay of the batch, so consumers
	// can apply it once.
	BatchID string
	// Site is the batch's site, "" when the batch named none.
	Site     string
	Readings []reading.Reading
}

// AppendSensorData appends the JSON body of ev to b:
//
//	{"batch_id":"…","site":"…","readings":[{reading}, …]}
//
// site is left out when empty; each reading is reading.AppendJSON.
func AppendSensorData(b []byte, ev SensorData) []byte {
	b = append(b, `{"batch_id":`...)
	b = appendString(b, ev.BatchID)
	if ev.Site != "" {
		b = append(b, `,"site":`...)
		b = appendString(b, ev.Site)
	}
	b = append(b, `,"readings":[`...)
	for i := range ev.Readings {
		if i > 0 {
			b = append(b, ',')
		}
		b = ev.Readings[i].AppendJSON(b)
	}
	return append(b, "]}"...)
}

// EncodeSensorData returns the body of sensor.data.received for the readings a
// batch stored.
func EncodeSensorData(batchID, site string, rs []reading.Reading) []byte {
	return AppendSensorData(make([]byte, 0, 64+len(rs)*160), SensorData{BatchID: batchID, Site: site, Readings: rs})
}

func appendString(b []byte, s string) []byte {
	q, _ := json.Marshal(s) // a string always marshals
	return append(b, q...)
}

// ErrMalformed is wrapped by DecodeSensorData's error for a body that is not a
// sensor.data.received event at all; redelivering it cannot help.
var ErrMalformed = errors.New("malformed event")

// DecodeSensorData reads a sensor.data.received body. Readings that are not
// valid (reading.Validate, without a bound on the future: the sensor service
// checked that against its clock) are left out and counted in skipped. err is
// non-nil only when the body itself is not an event: not a JSON object, a
// "readings" that is not an array of objects, a batch_id or site that is not
// a string.
//
// Bodies exactly as AppendSensorData writes them take a scanner made for them
// (decodeFast); any other JSON is read into the lenient reading.Input, by
// reading.DecodeBatch or encoding/json. Every path gives the same readings and
// the same skips.
func DecodeSensorData(body []byte) (ev SensorData, skipped int, err error) {
	if ev, skipped, ok := decodeFast(body); ok {
		return ev, skipped, nil
	}
	return decodeGeneral(body)
}

// decodeGeneral is DecodeSensorData for any JSON: reading.DecodeBatch, then
// encoding/json, into the lenient reading.Input.
func decodeGeneral(body []byte) (ev SensorData, skipped int, err error) {
	var batchID, site reading.Text
	var ins []reading.Input
	if bi, ok := reading.DecodeBatch(body); ok {
		batchID, site = bi.BatchID, bi.Site
		if bi.Readings != nil {
			ins = *bi.Readings
		}
	} else {
		var jb struct {
			BatchID  reading.Text    `json:"batch_id"`
			Site     reading.Text    `json:"site"`
			Readings []reading.Input `json:"readings"`
		}
		if err := json.Unmarshal(body, &jb); err != nil {
			return SensorData{}, 0, fmt.Errorf("events: decode %s: %w: %w", SensorDataSubject, ErrMalformed, err)
		}
		batchID, site, ins = jb.BatchID, jb.Site, jb.Readings
	}
	if batchID.BadType != "" || site.BadType != "" {
		return SensorData{}, 0, fmt.Errorf("events: decode %s: %w: batch_id and site must be strings", SensorDataSubject, ErrMalformed)
	}
	ev = SensorData{BatchID: batchID.S, Site: site.S, Readings: make([]reading.Reading, 0, len(ins))}
	for i := range ins {
		r, err := ins[i].Reading(time.Time{})
		if err != nil {
			skipped++
			continue
		}
		ev.Readings = append(ev.Readings, r)
	}
	return ev, skipped, nil
}
