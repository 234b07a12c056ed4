package events_test

import (
	"encoding/json"
	"errors"
	"math"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/atrium-iot/atrium/internal/events"
	"github.com/atrium-iot/atrium/internal/reading"
)

var ts = time.Date(2026, 11, 25, 12, 0, 0, 123e6, time.UTC)

func sample() []reading.Reading {
	return []reading.Reading{
		{SensorID: "s1", RoomID: "r1", Site: "hq", Type: "temperature", Value: 21.5, Unit: "Cel", Timestamp: ts},
		{SensorID: "s2", Type: "vibration", Value: 1e-7, Timestamp: ts.Add(time.Second)},
		{SensorID: "s3", RoomID: "r2", Type: "radon", Value: 12, Unit: "Bq&m3", Timestamp: ts}, // escaped: not the fast path
		{SensorID: "s1", RoomID: "r1", Type: "co2", Value: 0, Unit: "ppm", Timestamp: ts.Add(-time.Hour)},
	}
}

// TestSensorDataRoundTrip: what AppendSensorData writes, DecodeSensorData reads
// back exactly, through the fast path and through encoding/json.
func TestSensorDataRoundTrip(t *testing.T) {
	for _, tc := range []struct {
		name string
		ev   events.SensorData
	}{
		{"plain", events.SensorData{BatchID: "key:agent-hq/b-1", Site: "hq", Readings: sample()[:2]}},
		{"no site", events.SensorData{BatchID: "key:agent-hq/b-2", Readings: sample()[3:]}},
		{"escapes", events.SensorData{BatchID: "key:a<b>/c", Site: "hq", Readings: sample()}},
		{"empty", events.SensorData{BatchID: "b", Readings: []reading.Reading{}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			body := events.EncodeSensorData(tc.ev.BatchID, tc.ev.Site, tc.ev.Readings)
			if !json.Valid(body) {
				t.Fatalf("not JSON: %s", body)
			}
			if !strings.HasPrefix(string(body), `{"batch_id":`) {
				t.Errorf("body %s does not start with batch_id", body)
			}
			got, skipped, err := events.DecodeSensorData(body)
			if err != nil || skipped != 0 {
				t.Fatalf("decode = %d skipped, %v", skipped, err)
			}
			if !reflect.DeepEqual(got, tc.ev) {
				t.Errorf("decoded %+v\nwant    %+v", got, tc.ev)
			}
			// The fast path takes every body without escapes; the general path agrees.
			if _, _, ok := events.DecodeFast(body); ok == strings.Contains(string(body), `\`) {
				t.Errorf("fast path took it: %v, body %s", ok, body)
			}
			if gen, _, err := events.DecodeGeneral(body); err != nil || !reflect.DeepEqual(gen, tc.ev) {
				t.Errorf("general path %+v, %v", gen, err)
			}
			// The same body reformatted (spaces, other key order) takes encoding/json.
			var generic any
			_ = json.Unmarshal(body, &generic)
			spaced, _ := json.MarshalIndent(generic, "", "  ")
			slow, skipped, err := events.DecodeSensorData(spaced)
			if err != nil || skipped != 0 {
				t.Fatalf("decode spaced = %d skipped, %v", skipped, err)
			}
			if !reflect.DeepEqual(slow, tc.ev) {
				t.Errorf("decoded spaced %+v\nwant           %+v", slow, tc.ev)
			}
		})
	}
}

// TestSensorDataSkipsInvalid: an invalid reading is left out and counted, the
// rest of the event stands; the fast and the encoding/json path agree.
func TestSensorDataSkipsInvalid(t *testing.T) {
	good := `{"sensor_id":"s1","type":"temperature","value":21.5,"unit":"Cel","timestamp":"2026-11-25T12:00:00.123Z"}`
	// The bad readings written in the sensor service's shape, for the fast path.
	inShape := map[string]bool{"room id": true, "out of range": true, "wrong unit": true}
	for _, tc := range []struct {
		name string
		bad  string
	}{
		{"room id", `{"sensor_id":"s1","room_id":"a b","type":"co2","value":5,"timestamp":"2026-11-25T12:00:00.123Z"}`},
		{"value a string", `{"sensor_id":"s1","type":"temperature","value":"x","timestamp":"2026-11-25T12:00:00.123Z"}`},
		{"out of range", `{"sensor_id":"s1","type":"temperature","value":500,"timestamp":"2026-11-25T12:00:00.123Z"}`},
		{"no timestamp", `{"sensor_id":"s1","type":"temperature","value":20}`},
		{"no sensor", `{"type":"temperature","value":20,"timestamp":"2026-11-25T12:00:00.123Z"}`},
		{"before 2000", `{"sensor_id":"s1","type":"temperature","value":20,"timestamp":0}`},
		{"wrong unit", `{"sensor_id":"s1","type":"temperature","value":20,"unit":"ppm","timestamp":"2026-11-25T12:00:00.123Z"}`},
		{"not an object", `7`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fast := `{"batch_id":"key:p/b","readings":[` + good + `,` + tc.bad + `,` + good + `]}`
			slow := "{ \"readings\" : [\n" + good + ",\n" + tc.bad + ",\n" + good + "], \"batch_id\": \"key:p/b\" }"
			if _, skipped, ok := events.DecodeFast([]byte(fast)); inShape[tc.name] && (!ok || skipped != 1) {
				t.Errorf("fast path: ok %v, %d skipped", ok, skipped)
			}
			for _, body := range []string{fast, slow} {
				ev, skipped, err := events.DecodeSensorData([]byte(body))
				if tc.name == "not an object" {
					// An array element that is no object is not a reading list: the event is malformed.
					if !errors.Is(err, events.ErrMalformed) {
						t.Fatalf("err = %v, want ErrMalformed", err)
					}
					continue
				}
				if err != nil {
					t.Fatalf("decode %s: %v", body, err)
				}
				if skipped != 1 || len(ev.Readings) != 2 || ev.BatchID != "key:p/b" {
					t.Errorf("decode %s = %d readings, %d skipped, batch %q; want 2, 1, key:p/b", body, len(ev.Readings), skipped, ev.BatchID)
				}
			}
		})
	}
}

// TestSensorDataMalformed: a body that is no event fails, wrapping ErrMalformed.
func TestSensorDataMalformed(t *testing.T) {
	for _, body := range []string{
		``, `{`, `[]`, `"x"`, `{"readings":{}}`, `{"readings":[{`, `{"batch_id":7,"readings":[]}`, `{"site":["hq"],"readings":[]}`,
	} {
		if _, _, err := events.DecodeSensorData([]byte(body)); !errors.Is(err, events.ErrMalformed) {
			t.Errorf("decode %q: err = %v, want ErrMalformed", body, err)
		}
	}
	// No readings member is an event with no readings.
	ev, skipped, err := events.DecodeSensorData([]byte(`{"batch_id":"b"}`))
	if err != nil || skipped != 0 || len(ev.Readings) != 0 || ev.BatchID != "b" {
		t.Errorf("decode without readings = %+v, %d, %v", ev, skipped, err)
	}
}

// FuzzDecodeSensorData: decoding never panics; what it accepts are valid
// readings only, and encoding them again decodes to the same event.
func FuzzDecodeSensorData(f *testing.F) {
	f.Add(events.EncodeSensorData("key:agent-hq/b-1", "hq", sample()))
	f.Add(events.EncodeSensorData("key:agent-hq/b-2", "", sample()[:2]))
	f.Add([]byte(`{"batch_id":"b","readings":[{"sensor_id":"s1","type":"temperature","value":500,"timestamp":1764072000000},{"sensor_id":"s1","type":"co2","value":1,"timestamp":"1764072000000"}]}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		if fast, fskipped, ok := events.DecodeFast(body); ok {
			gen, gskipped, err := events.DecodeGeneral(body)
			if err != nil || fskipped != gskipped || !reflect.DeepEqual(fast, gen) {
				t.Fatalf("fast path %+v (%d skipped), general path %+v (%d skipped, %v)", fast, fskipped, gen, gskipped, err)
			}
		}
		ev, skipped, err := events.DecodeSensorData(body)
		if err != nil {
			if !errors.Is(err, events.ErrMalformed) {
				t.Fatalf("error %v does not wrap ErrMalformed", err)
			}
			return
		}
		if skipped < 0 {
			t.Fatalf("skipped = %d", skipped)
		}
		for i := range ev.Readings {
			r := ev.Readings[i]
			if err := reading.Validate(&r, time.Time{}); err != nil || math.IsNaN(r.Value) {
				t.Fatalf("reading %d %+v accepted but invalid: %v", i, ev.Readings[i], err)
			}
		}
		again, skipped, err := events.DecodeSensorData(events.AppendSensorData(nil, ev))
		if err != nil || skipped != 0 {
			t.Fatalf("re-decode: %d skipped, %v", skipped, err)
		}
		if len(again.Readings) != len(ev.Readings) || again.BatchID != ev.BatchID || again.Site != ev.Site {
			t.Fatalf("re-decode %+v, want %+v", again, ev)
		}
		for i := range ev.Readings {
			a, b := again.Readings[i], ev.Readings[i]
			if a.SensorID != b.SensorID || a.RoomID != b.RoomID || a.Site != b.Site || a.Type != b.Type || a.Unit != b.Unit ||
				a.Value != b.Value || !a.Timestamp.Equal(b.Timestamp) {
				t.Fatalf("re-decode reading %d = %+v, want %+v", i, a, b)
			}
		}
	})
}

// BenchmarkDecodeSensorData decodes the sensor service's body of 1,000 readings.
func BenchmarkDecodeSensorData(b *testing.B) {
	rs := make([]reading.Reading, 1000)
	for i := range rs {
		rs[i] = reading.Reading{SensorID: "sensor-123", RoomID: "room-7", Site: "hq", Type: "temperature", Value: 21.5 + float64(i%10)/10, Unit: "Cel", Timestamp: time.Now().Add(time.Duration(i) * time.Second)}
	}
	benchDecode(b, rs)
	b.ReportMetric(float64(b.N*len(rs))/b.Elapsed().Seconds(), "readings/s")
}

// benchDecode decodes the body of rs b.N times.
func benchDecode(b *testing.B, rs []reading.Reading) {
	body := events.EncodeSensorData("b", "hq", rs)
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		if ev, skipped, err := events.DecodeSensorData(body); err != nil || skipped != 0 || len(ev.Readings) != len(rs) {
			b.Fatal(err, skipped)
		}
	}
}

// BenchmarkDecodeSensorDataFleet decodes a body of 1,000 readings of 500 sensors
// in 50 rooms, as analytics' ingest benchmark publishes.
func BenchmarkDecodeSensorDataFleet(b *testing.B) {
	rs := make([]reading.Reading, 1000)
	base := time.Now().Add(-time.Hour).Truncate(time.Millisecond)
	for k := range rs {
		rs[k] = reading.Reading{SensorID: "s" + strconv.Itoa(1000 + k%500)[1:], RoomID: "room-" + strconv.Itoa(100 + k%500/10)[1:], Type: "temperature", Value: 20 + float64(k%50)/10, Timestamp: base.Add(time.Duration(k/500) * time.Millisecond)}
	}
	benchDecode(b, rs)
}
