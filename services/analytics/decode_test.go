package analytics_test

import (
	"math"
	"testing"
	"time"

	"github.com/atrium-iot/atrium/internal/reading"
	"github.com/atrium-iot/atrium/services/analytics"
	"github.com/atrium-iot/atrium/services/sensor"
)

func TestDecodeEvent(t *testing.T) {
	ts := time.Date(2026, 11, 25, 12, 0, 0, 123e6, time.UTC)
	rs := []reading.Reading{
		{SensorID: "s1", RoomID: "r1", Site: "hq", Type: "temperature", Value: 21.5, Unit: "Cel", Timestamp: ts},
		{SensorID: "s2", Type: "vibration", Value: 1e-7, Timestamp: ts.Add(time.Second)},
		{SensorID: "s3", RoomID: "r2", Type: "radon", Value: 12, Unit: "Bq&m3", Timestamp: ts}, // escaped by AppendJSON: slow path
	}
	tests := []struct {
		name string
		body string
		want []reading.Reading
		err  bool
	}{
		{"sensor service body", string(sensor.EventBody("b1", "hq", rs[:2])), rs[:2], false},
		{"with escapes", string(sensor.EventBody("b1", "", rs)), rs, false},
		{"empty", `{"batch_id":"b","readings":[]}`, []reading.Reading{}, false},
		{"spaced (slow path)", `{ "readings" : [ {"sensor_id":"s1","type":"temperature","value":21.5,"unit":"Cel","timestamp":"2026-11-25T12:00:00.123Z","room_id":"r1","site":"hq"} ] }`, rs[:1], false},
		{"not json", `{"readings":[{`, nil, true},
		{"invalid room id (slow path checks)", `{"readings":[{"sensor_id":"s1","room_id":"a\u003cb","type":"co2","value":5,"timestamp":"2026-11-25T12:00:00.123Z"}]}`, nil, true},
		{"bad value", `{"readings":[{"sensor_id":"s1","type":"temperature","value":"x","timestamp":"2026-11-25T12:00:00.123Z"}]}`, nil, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := analytics.DecodeEvent([]byte(tc.body))
			if (err != nil) != tc.err {
				t.Fatalf("err = %v, want error %v", err, tc.err)
			}
			if tc.err {
				return
			}
			if len(got) != len(tc.want) {
				t.Fatalf("got %d readings, want %d: %+v", len(got), len(tc.want), got)
			}
			for i := range got {
				g, w := got[i], tc.want[i]
				if g.SensorID != w.SensorID || g.RoomID != w.RoomID || g.Type != w.Type || g.Value != w.Value || !g.Timestamp.Equal(w.Timestamp) || math.IsNaN(g.Value) {
					t.Errorf("reading %d = %+v, want %+v", i, g, w)
				}
			}
		})
	}
}

func BenchmarkDecodeEvent(b *testing.B) {
	rs := make([]reading.Reading, 1000)
	for i := range rs {
		rs[i] = reading.Reading{SensorID: "sensor-123", RoomID: "room-7", Site: "hq", Type: "temperature", Value: 21.5 + float64(i%10)/10, Unit: "Cel", Timestamp: time.Now().Add(time.Duration(i) * time.Second)}
	}
	body := sensor.EventBody("b", "hq", rs)
	b.SetBytes(int64(len(body)))
	for b.Loop() {
		if _, err := analytics.DecodeEvent(body); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N*len(rs))/b.Elapsed().Seconds(), "readings/s")
}
