package events

import (
	"fmt"
	"time"

	"github.com/atrium-iot/atrium/internal/reading"
)

// RoomTypeMetrics is the state of one reading type in a room.
type RoomTypeMetrics struct {
	// Value is the room's current value: the mean of the latest value of each
	// sensor of the type, over the sensors whose latest reading is at most Window
	// older than the newest one (Window in package room) (a silent sensor does not hold the value back).
	Value float64 `json:"value"`
	Unit  string  `json:"unit,omitempty"`
	// Timestamp is the time of the newest of those readings.
	Timestamp time.Time `json:"timestamp"`
	// Sensors is how many sensors Value is the mean of.
	Sensors int `json:"sensors"`
	// Mean5m, Min5m, Max5m and Count5m summarise every reading of the type in the
	// window (null when there was none).
	Mean5m  *float64 `json:"mean_5m"`
	Min5m   *float64 `json:"min_5m"`
	Max5m   *float64 `json:"max_5m"`
	Count5m int64    `json:"count_5m"`
}

// Comfort says whether temperature and humidity are in the comfort band, and
// which bound is broken if not.
type Comfort struct {
	Status string   `json:"status"`
	Issues []string `json:"issues"`
}

// TimeRange is a half-open span of time.
type TimeRange struct {
	From time.Time `json:"from"`
	To   time.Time `json:"to"`
}

// RoomMetrics are a room's current metrics: the body of GET /rooms/{id}/metrics and
// of room.metrics.updated.
type RoomMetrics struct {
	RoomID  string                     `json:"room_id"`
	At      time.Time                  `json:"at"`
	Window  TimeRange                  `json:"window"`
	Metrics map[string]RoomTypeMetrics `json:"metrics"`
	// Occupied is true when the current occupancy count is above 0, or when an
	// occupancy, pir or motion reading above 0 arrived in the window; null when the
	// room has none of those sensors.
	Occupied *bool `json:"occupied"`
	// OccupiedSource says where Occupied comes from: "sensor" (an occupancy, pir
	// or motion sensor of the room) or "estimate" (the occupancy estimate from
	// the room's co2, temperature, humidity and light); null with Occupied null.
	OccupiedSource *string `json:"occupied_source"`
	// OccupiedProbability is the estimate's probability (0–1) that the room is
	// occupied, from its newest minute; Occupied is then probability ≥ 0.5. Null
	// when a sensor decides or there is no estimate.
	OccupiedProbability *float64 `json:"occupied_probability"`
	// OccupiedEstimatedAt is the minute of that estimate (reading time).
	OccupiedEstimatedAt *time.Time `json:"occupied_estimated_at,omitempty"`
	// OccupancyRatio is the current occupancy count over the capacity.
	OccupancyRatio *float64 `json:"occupancy_ratio"`
	// AirQuality classifies the current co2 value.
	AirQuality *string `json:"air_quality"`
	Comfort    Comfort `json:"comfort"`
}

// EncodeRoomMetrics returns the body of room.metrics.updated.
func EncodeRoomMetrics(m RoomMetrics) ([]byte, error) {
	return encodeJSON(RoomMetricsSubject, m)
}

// DecodeRoomMetrics reads a room.metrics.updated body. A body that is not one
// (not JSON, no valid room_id, no at) fails with an error wrapping
// ErrMalformed. A type whose value is not finite cannot be in a body
// (encoding/json writes none), so every value read is a number.
func DecodeRoomMetrics(body []byte) (RoomMetrics, error) {
	return decodeValid(RoomMetricsSubject, body, func(m *RoomMetrics) string {
		switch {
		case !reading.ValidID(m.RoomID):
			return "room_id must be 1-128 characters of A-Z a-z 0-9 . _ : -"
		case m.At.IsZero():
			return "at is required"
		}
		for typ := range m.Metrics {
			if !reading.ValidType(typ) {
				return fmt.Sprintf("metric %q is not a reading type", typ)
			}
		}
		m.At = m.At.UTC()
		return ""
	})
}
