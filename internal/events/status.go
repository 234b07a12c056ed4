package events

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/atrium-iot/atrium/internal/reading"
)

// Sensor statuses of sensor.status.changed.
const (
	StatusOnline  = "online"
	StatusOffline = "offline"
)

// SensorStatus is the body of sensor.status.changed: the sensor service saw a
// sensor go offline (silent longer than its -offline-after) or come online
// (first seen, or reporting again after being offline).
type SensorStatus struct {
	SensorID string `json:"sensor_id"`
	RoomID   string `json:"room_id,omitempty"`
	Site     string `json:"site,omitempty"`
	// Types are the reading types the sensor has reported, sorted.
	Types []string `json:"types,omitempty"`
	// Status is StatusOnline or StatusOffline.
	Status string `json:"status"`
	// Previous is the status published before this one, "" when none was:
	// an online with no Previous is a sensor seen for the first time.
	Previous string `json:"previous,omitempty"`
	// LastSeen is when the sensor service last received a reading of the sensor.
	LastSeen time.Time `json:"last_seen"`
	// Since is when the status began: LastSeen for online, LastSeen plus the
	// offline delay for offline.
	Since time.Time `json:"since"`
}

// EncodeSensorStatus returns the body of sensor.status.changed.
func EncodeSensorStatus(ev SensorStatus) ([]byte, error) {
	return encodeJSON(SensorStatusSubject, ev)
}

// DecodeSensorStatus reads a sensor.status.changed body. A body that is not
// one (not JSON, no valid sensor_id, a status other than online and offline,
// no last_seen) fails with an error wrapping ErrMalformed.
func DecodeSensorStatus(body []byte) (SensorStatus, error) {
	return decodeValid(SensorStatusSubject, body, func(ev *SensorStatus) string {
		switch {
		case !reading.ValidID(ev.SensorID):
			return "sensor_id must be 1-128 characters of A-Z a-z 0-9 . _ : -"
		case ev.RoomID != "" && !reading.ValidID(ev.RoomID):
			return "room_id must be 1-128 characters of A-Z a-z 0-9 . _ : -"
		case ev.Status != StatusOnline && ev.Status != StatusOffline:
			return "status must be online or offline"
		case ev.Previous != "" && ev.Previous != StatusOnline && ev.Previous != StatusOffline:
			return "previous must be online, offline or absent"
		case ev.LastSeen.IsZero():
			return "last_seen is required"
		}
		if ev.Since.IsZero() {
			ev.Since = ev.LastSeen
		}
		ev.LastSeen, ev.Since = ev.LastSeen.UTC(), ev.Since.UTC()
		return ""
	})
}

// Subjects named in the errors of this package. They equal the bus subjects
// (package bus), which this package does not import.
const (
	SensorDataSubject   = "sensor.data.received"
	SensorStatusSubject = "sensor.status.changed"
	RoomMetricsSubject  = "room.metrics.updated"
	AlertSubject        = "alert.raised/alert.resolved"
)

// decodeValid reads body into a T and holds it to check, which says why it is
// not a body of subject ("" when it is one) and may normalise it. A body that
// is not that JSON, or that check refuses, is malformed.
func decodeValid[T any](subject string, body []byte, check func(*T) string) (T, error) {
	var v, zero T
	if err := json.Unmarshal(body, &v); err != nil {
		return zero, malformed(subject, err.Error())
	}
	if why := check(&v); why != "" {
		return zero, malformed(subject, why)
	}
	return v, nil
}

func malformed(subject, why string) error {
	return fmt.Errorf("events: decode %s: %w: %s", subject, ErrMalformed, why)
}

// encodeJSON writes v as JSON. It fails only on what JSON cannot hold: a
// number that is not finite (a mean of huge values of an unknown type can
// overflow) or a time outside years 0-9999.
func encodeJSON(subject string, v any) ([]byte, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("events: encode %s: %w", subject, err)
	}
	return b, nil
}
