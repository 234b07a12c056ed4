package reading_test

import (
	"encoding/json"
	"errors"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/atrium-iot/atrium/internal/reading"
)

var now = time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)

func TestInputReading(t *testing.T) {
	tests := []struct {
		name  string
		in    string
		want  reading.Reading
		field string // the field a rejection names; "" means valid
	}{
		{"full", `{"sensor_id":"sensor_001","room_id":"room-101","type":"temperature","value":21.5,"unit":"Cel","timestamp":"2026-11-25T11:59:00.000Z"}`,
			reading.Reading{SensorID: "sensor_001", RoomID: "room-101", Type: "temperature", Value: 21.5, Unit: "Cel", Timestamp: now.Add(-time.Minute)}, ""},
		{"unix ms and default unit", `{"sensor_id":"s","type":"co2","value":640,"timestamp":1764071940000}`,
			reading.Reading{SensorID: "s", Type: "co2", Value: 640, Unit: "ppm", Timestamp: time.UnixMilli(1764071940000).UTC()}, ""},
		{"ms string", `{"sensor_id":"s","type":"co2","value":640,"timestamp":"1764071940000"}`,
			reading.Reading{SensorID: "s", Type: "co2", Value: 640, Unit: "ppm", Timestamp: time.UnixMilli(1764071940000).UTC()}, ""},
		{"no timestamp: receiver clock", `{"sensor_id":"s","type":"light","value":0}`,
			reading.Reading{SensorID: "s", Type: "light", Value: 0, Unit: "lx", Timestamp: now}, ""},
		{"offset time normalised to UTC ms", `{"sensor_id":"s","type":"x1","value":-3,"timestamp":"2026-11-25T13:00:00.1234+02:00"}`,
			reading.Reading{SensorID: "s", Type: "x1", Value: -3, Timestamp: time.Date(2026, 11, 25, 11, 0, 0, 123e6, time.UTC)}, ""},
		{"unit alias", `{"sensor_id":"s","type":"humidity","value":40,"unit":"%"}`,
			reading.Reading{SensorID: "s", Type: "humidity", Value: 40, Unit: "%RH", Timestamp: now}, ""},
		{"pir analog level", `{"sensor_id":"s","type":"pir","value":512}`,
			reading.Reading{SensorID: "s", Type: "pir", Value: 512, Timestamp: now}, ""},
		{"4:59 in the future is fine", `{"sensor_id":"s","type":"co2","value":1,"timestamp":"2026-11-25T12:04:59Z"}`,
			reading.Reading{SensorID: "s", Type: "co2", Value: 1, Unit: "ppm", Timestamp: now.Add(299 * time.Second)}, ""},
		{"value string", `{"sensor_id":"s","type":"co2","value":"640"}`, reading.Reading{}, "value"},
		{"value NaN string", `{"sensor_id":"s","type":"co2","value":"NaN"}`, reading.Reading{}, "value"},
		{"value Infinity string", `{"sensor_id":"s","type":"co2","value":"-Infinity"}`, reading.Reading{}, "value"},
		{"value overflow", `{"sensor_id":"s","type":"x","value":1e999}`, reading.Reading{}, "value"},
		{"value bool", `{"sensor_id":"s","type":"co2","value":true}`, reading.Reading{}, "value"},
		{"value missing", `{"sensor_id":"s","type":"co2"}`, reading.Reading{}, "value"},
		{"value null", `{"sensor_id":"s","type":"co2","value":null}`, reading.Reading{}, "value"},
		{"temperature too hot", `{"sensor_id":"s","type":"temperature","value":85.01}`, reading.Reading{}, "value"},
		{"temperature too cold", `{"sensor_id":"s","type":"temperature","value":-40.5}`, reading.Reading{}, "value"},
		{"humidity over 100", `{"sensor_id":"s","type":"humidity","value":100.1}`, reading.Reading{}, "value"},
		{"co2 negative", `{"sensor_id":"s","type":"co2","value":-1}`, reading.Reading{}, "value"},
		{"light too bright", `{"sensor_id":"s","type":"light","value":200001}`, reading.Reading{}, "value"},
		{"occupancy negative", `{"sensor_id":"s","type":"occupancy","value":-1}`, reading.Reading{}, "value"},
		{"motion negative", `{"sensor_id":"s","type":"motion","value":-0.5}`, reading.Reading{}, "value"},
		{"wrong unit", `{"sensor_id":"s","type":"temperature","value":70,"unit":"F"}`, reading.Reading{}, "unit"},
		{"sensor missing", `{"type":"co2","value":1}`, reading.Reading{}, "sensor_id"},
		{"sensor number", `{"sensor_id":12,"type":"co2","value":1}`, reading.Reading{}, "sensor_id"},
		{"sensor too long", `{"sensor_id":"` + strings.Repeat("a", 129) + `","type":"co2","value":1}`, reading.Reading{}, "sensor_id"},
		{"sensor bad char", `{"sensor_id":"a/b","type":"co2","value":1}`, reading.Reading{}, "sensor_id"},
		{"sensor space", `{"sensor_id":"a b","type":"co2","value":1}`, reading.Reading{}, "sensor_id"},
		{"room bad char", `{"sensor_id":"a","room_id":"r#1","type":"co2","value":1}`, reading.Reading{}, "room_id"},
		{"type upper", `{"sensor_id":"a","type":"CO2","value":1}`, reading.Reading{}, "type"},
		{"type missing", `{"sensor_id":"a","value":1}`, reading.Reading{}, "type"},
		{"future 1h", `{"sensor_id":"a","type":"co2","value":1,"timestamp":"2026-11-25T13:00:00Z"}`, reading.Reading{}, "timestamp"},
		{"timestamp garbage", `{"sensor_id":"a","type":"co2","value":1,"timestamp":"noon"}`, reading.Reading{}, "timestamp"},
		{"timestamp negative", `{"sensor_id":"a","type":"co2","value":1,"timestamp":-5}`, reading.Reading{}, "timestamp"},
		{"timestamp object", `{"sensor_id":"a","type":"co2","value":1,"timestamp":{}}`, reading.Reading{}, "timestamp"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var in reading.Input
			if err := json.Unmarshal([]byte(tc.in), &in); err != nil {
				t.Fatalf("decoding must not fail on field problems: %v", err)
			}
			got, err := in.Reading(now)
			if tc.field != "" {
				fe, ok := err.(*reading.FieldError)
				if !ok || fe.Field != tc.field || fe.Reason == "" {
					t.Fatalf("want a rejection of %s, got %v", tc.field, err)
				}
				return
			}
			if err != nil {
				t.Fatalf("unexpected rejection: %v", err)
			}
			if !got.Timestamp.Equal(tc.want.Timestamp) {
				t.Errorf("timestamp %v, want %v", got.Timestamp, tc.want.Timestamp)
			}
			got.Timestamp, tc.want.Timestamp = time.Time{}, time.Time{}
			if got != tc.want {
				t.Errorf("got %+v, want %+v", got, tc.want)
			}
		})
	}
}

func TestMarshalRoundTrip(t *testing.T) {
	r := reading.Reading{SensorID: "s1", RoomID: "r1", Site: "hq", Type: "co2", Value: 612.5, Unit: "ppm", Timestamp: time.Date(2026, 11, 25, 12, 0, 0, 5e6, time.UTC)}
	b, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"sensor_id":"s1","room_id":"r1","site":"hq","type":"co2","value":612.5,"unit":"ppm","timestamp":"2026-11-25T12:00:00.005Z"}`
	if string(b) != want {
		t.Fatalf("got  %s\nwant %s", b, want)
	}
	var back reading.Reading
	if err := json.Unmarshal(b, &back); err != nil || back != r {
		t.Fatalf("round trip: %+v %v", back, err)
	}
}

// FuzzInput: decoding never fails on a JSON object, never panics, and whatever is
// accepted is valid, finite and survives a marshal round trip.
func FuzzInput(f *testing.F) {
	for _, s := range []string{
		`{"sensor_id":"a","type":"co2","value":1}`,
		`{"sensor_id":"a","room_id":"r","type":"temperature","value":21.5,"unit":"Cel","timestamp":"2026-11-25T12:00:00Z"}`,
		`{"sensor_id":"a","type":"x","value":"NaN","timestamp":1764072000000}`,
		`{"sensor_id":"a","type":"x","value":1e308,"timestamp":"1764072000000"}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		var in reading.Input
		if err := json.Unmarshal(b, &in); err != nil {
			return
		}
		r, err := in.Reading(now)
		if err != nil {
			return
		}
		if math.IsNaN(r.Value) || math.IsInf(r.Value, 0) || !reading.ValidID(r.SensorID) || !reading.ValidType(r.Type) {
			t.Fatalf("accepted an invalid reading %+v", r)
		}
		if r.Timestamp.After(now.Add(reading.MaxFuture)) {
			t.Fatalf("accepted a future reading %v", r.Timestamp)
		}
		out, err := json.Marshal(r)
		if err != nil {
			t.Fatal(err)
		}
		var back reading.Reading
		if err := json.Unmarshal(out, &back); err != nil || back.Value != r.Value || !back.Timestamp.Equal(r.Timestamp) {
			t.Fatalf("round trip of %s: %+v %v", out, back, err)
		}
	})
}

func TestAppendJSONMatchesEncodingJSON(t *testing.T) {
	for _, v := range []float64{0, math.Copysign(0, -1), 1, -1.5, 1e20, 1e21, 1e-6, 1e-7, 123456789.125, math.MaxFloat64, math.SmallestNonzeroFloat64} {
		for _, s := range []string{"plain", "quote\"", "ctl\x01", "<tag>&", "ünï"} {
			r := reading.Reading{SensorID: "s", Type: "x", Value: v, Unit: s, Site: s, Timestamp: now}
			got := r.AppendJSON(nil)
			var back map[string]any
			if err := json.Unmarshal(got, &back); err != nil {
				t.Fatalf("%s: %v", got, err)
			}
			want, _ := json.Marshal(v)
			if !strings.Contains(string(got), `"value":`+string(want)+`,`) || back["unit"] != s {
				t.Errorf("AppendJSON %s: value or unit differs from encoding/json (%s)", got, want)
			}
		}
	}
}

// A timestamp before 2000 is a device clock that was never set: it is rejected
// with that reason, whether it comes as RFC 3339, as Unix milliseconds or is the
// zero time, and on both paths (the sensor service's Input, the agent's Validate).
func TestTimestampBefore2000(t *testing.T) {
	now := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	tests := []struct {
		ts     string
		reason string // "": accepted
	}{
		{`"0001-01-01T00:00:00Z"`, "0001-01-01T00:00:00.000Z is before 2000-01-01"},
		{`"1999-12-31T23:59:59.999Z"`, "1999-12-31T23:59:59.999Z is before 2000-01-01"},
		{`"2000-01-01T01:00:00+02:00"`, "1999-12-31T23:00:00.000Z is before 2000-01-01"},
		{`0`, "1970-01-01T00:00:00.000Z is before 2000-01-01"},
		{`"946684799999"`, "1999-12-31T23:59:59.999Z is before 2000-01-01"},
		{`"2000-01-01T00:00:00Z"`, ""},
		{`946684800000`, ""},
	}
	for _, tc := range tests {
		t.Run(tc.ts, func(t *testing.T) {
			var in reading.Input
			if err := json.Unmarshal([]byte(`{"sensor_id":"s","type":"co2","value":1,"timestamp":`+tc.ts+`}`), &in); err != nil {
				t.Fatal(err)
			}
			_, err := in.Reading(now)
			check := func(path string, err error) {
				t.Helper()
				if tc.reason == "" {
					if err != nil {
						t.Fatalf("%s: rejected: %v", path, err)
					}
					return
				}
				var fe *reading.FieldError
				if !errors.As(err, &fe) || fe.Field != "timestamp" || fe.Reason != tc.reason {
					t.Fatalf("%s: got %v, want timestamp: %s", path, err, tc.reason)
				}
			}
			check("Input.Reading", err)
			r := reading.Reading{SensorID: "s", Type: "co2", Value: 1, Timestamp: in.Timestamp.T}
			check("Validate", reading.Validate(&r, now))
		})
	}
}
