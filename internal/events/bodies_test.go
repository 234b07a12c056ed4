package events_test

import (
	"encoding/json"
	"errors"
	"math"
	"reflect"
	"testing"
	"time"

	"github.com/atrium-iot/atrium/internal/events"
)

// TestSensorStatusContract: what EncodeSensorStatus writes, DecodeSensorStatus
// reads back; a body that is no status change fails with ErrMalformed.
func TestSensorStatusContract(t *testing.T) {
	for _, ev := range []events.SensorStatus{
		{SensorID: "s1", RoomID: "r1", Site: "hq", Types: []string{"co2", "temperature"}, Status: events.StatusOffline,
			Previous: events.StatusOnline, LastSeen: ts, Since: ts.Add(5 * time.Minute)},
		{SensorID: "s2", Status: events.StatusOnline, LastSeen: ts, Since: ts},
	} {
		got, err := events.DecodeSensorStatus(must(events.EncodeSensorStatus(ev)))
		if err != nil || !reflect.DeepEqual(got, ev) {
			t.Errorf("round trip of %+v = %+v, %v", ev, got, err)
		}
	}
	// since defaults to last_seen; times come back in UTC.
	got, err := events.DecodeSensorStatus([]byte(`{"sensor_id":"s","status":"online","last_seen":"2026-11-25T13:00:00+01:00"}`))
	if err != nil || !got.Since.Equal(ts.Truncate(time.Second)) || got.LastSeen.Location() != time.UTC {
		t.Errorf("no since: %+v, %v", got, err)
	}
	for _, body := range []string{
		``, `[]`, `{"sensor_id":"s","status":"online"}`, `{"sensor_id":"a b","status":"online","last_seen":"2026-11-25T12:00:00Z"}`,
		`{"sensor_id":"s","status":"gone","last_seen":"2026-11-25T12:00:00Z"}`, `{"status":"online","last_seen":"2026-11-25T12:00:00Z"}`,
		`{"sensor_id":"s","room_id":"a/b","status":"online","last_seen":"2026-11-25T12:00:00Z"}`,
		`{"sensor_id":"s","status":"online","previous":"maybe","last_seen":"2026-11-25T12:00:00Z"}`,
	} {
		if _, err := events.DecodeSensorStatus([]byte(body)); !errors.Is(err, events.ErrMalformed) {
			t.Errorf("decode %q: err = %v, want ErrMalformed", body, err)
		}
	}
}

// TestRoomMetricsContract: the room service's metrics survive the bus as they
// are; a body that is no room's metrics fails with ErrMalformed.
func TestRoomMetricsContract(t *testing.T) {
	mean, ratio, occ, air := 1210.5, 0.75, true, "poor"
	m := events.RoomMetrics{RoomID: "room-101", At: ts, Window: events.TimeRange{From: ts.Add(-4 * time.Minute), To: ts},
		Metrics: map[string]events.RoomTypeMetrics{
			"co2":       {Value: 1200, Unit: "ppm", Timestamp: ts, Sensors: 2, Mean5m: &mean, Min5m: &mean, Max5m: &mean, Count5m: 3},
			"occupancy": {Value: 6, Unit: "count", Timestamp: ts, Sensors: 1},
		},
		Occupied: &occ, OccupancyRatio: &ratio, AirQuality: &air, Comfort: events.Comfort{Status: "unknown", Issues: []string{}}}
	body := must(events.EncodeRoomMetrics(m))
	got, err := events.DecodeRoomMetrics(body)
	if err != nil || !reflect.DeepEqual(got, m) {
		t.Errorf("round trip = %+v, %v\nwant %+v", got, err, m)
	}
	var generic map[string]any
	if err := json.Unmarshal(body, &generic); err != nil || generic["occupancy_ratio"] != 0.75 || generic["room_id"] != "room-101" {
		t.Errorf("body %s", body)
	}
	// A value JSON cannot hold is an error, not a panic.
	huge := m
	huge.Metrics = map[string]events.RoomTypeMetrics{"radon": {Value: math.Inf(1)}}
	if _, err := events.EncodeRoomMetrics(huge); err == nil {
		t.Error("a room metric of +Inf encoded")
	}
	for _, body := range []string{
		``, `7`, `{"at":"2026-11-25T12:00:00Z"}`, `{"room_id":"r","metrics":{}}`,
		`{"room_id":"r","at":"2026-11-25T12:00:00Z","metrics":{"CO2!":{"value":1}}}`,
		`{"room_id":"r","at":"2026-11-25T12:00:00Z","metrics":{"co2":{"value":"high"}}}`,
	} {
		if _, err := events.DecodeRoomMetrics([]byte(body)); !errors.Is(err, events.ErrMalformed) {
			t.Errorf("decode %q: err = %v, want ErrMalformed", body, err)
		}
	}
}

// TestAlertContract: an alert survives the bus; one without id or raise time
// fails with ErrMalformed.
func TestAlertContract(t *testing.T) {
	resolved := ts.Add(time.Hour)
	for _, a := range []events.Alert{
		{ID: "a1", RuleID: "default-co2-warning", RoomID: "r1", SensorID: "s1", Type: "co2", Severity: "warning", State: "active", Value: 1234, RaisedAt: ts},
		{ID: "a2", RuleID: "silent", SensorID: "s2", Severity: "warning", State: "resolved", RaisedAt: ts, ResolvedAt: &resolved, Message: "back"},
	} {
		got, err := events.DecodeAlert(must(events.EncodeAlert(a)))
		if err != nil || !reflect.DeepEqual(got, a) {
			t.Errorf("round trip of %+v = %+v, %v", a, got, err)
		}
	}
	for _, body := range []string{``, `[]`, `{"raised_at":"2026-11-25T12:00:00Z"}`, `{"id":"a"}`, `{"id":7,"raised_at":"2026-11-25T12:00:00Z"}`} {
		if _, err := events.DecodeAlert([]byte(body)); !errors.Is(err, events.ErrMalformed) {
			t.Errorf("decode %q: err = %v, want ErrMalformed", body, err)
		}
	}
}

func must(b []byte, err error) []byte {
	if err != nil {
		panic(err)
	}
	return b
}
