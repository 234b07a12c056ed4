package sqlitestore

import (
	"bytes"
	"math"
	"testing"
	"time"

	"github.com/atrium-iot/atrium/internal/reading"
	"github.com/atrium-iot/atrium/services/sensor"
)

func TestCompactEventRoundTrip(t *testing.T) {
	tests := []struct {
		name string
		site string
		rs   []reading.Reading
	}{
		{"one reading", "hq", []reading.Reading{
			{SensorID: "s-1", RoomID: "room-1", Site: "hq", Type: "temperature", Value: 21.5, Unit: "Cel", Timestamp: base},
		}},
		{"no site, times going back and forth", "", []reading.Reading{
			{SensorID: "s-1", Type: "co2", Value: 640, Unit: "ppm", Timestamp: base.Add(time.Hour)},
			{SensorID: "s-2", RoomID: "r", Site: "other", Type: "x", Value: math.Copysign(0, -1), Timestamp: base},
			{SensorID: "s-1", Type: "co2", Value: -1e-300, Unit: "µg/\"m3\"", Timestamp: time.UnixMilli(0).UTC()},
			{SensorID: "s-3", Type: "light", Value: math.MaxFloat64, Unit: "lx", Timestamp: base.Add(-10000 * time.Hour)},
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			want := sensor.EventBody("batch-1", tc.site, tc.rs)
			event := encodeEvent(tc.site, tc.rs)
			if len(event) >= len(want) {
				t.Errorf("compact entry is %d bytes, the JSON body %d", len(event), len(want))
			}
			got, err := eventBody("batch-1", event)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("rebuilt body\n got %s\nwant %s", got, want)
			}
			// Every truncation is refused, never misread.
			for n := range len(event) {
				if _, err := eventBody("batch-1", event[:n]); err == nil {
					t.Fatalf("truncated to %d bytes: no error", n)
				}
			}
		})
	}
}

func TestEventBodyKeepsJSONRows(t *testing.T) {
	// Outbox rows written before the compact form hold the JSON body itself.
	want := sensor.EventBody("b", "hq", []reading.Reading{{SensorID: "s", Type: "co2", Value: 1, Unit: "ppm", Timestamp: base}})
	got, err := eventBody("b", want)
	if err != nil || !bytes.Equal(got, want) {
		t.Fatalf("eventBody of a JSON row = %s, %v", got, err)
	}
}
