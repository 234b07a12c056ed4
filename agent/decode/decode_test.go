package decode

import (
	"errors"
	"reflect"
	"testing"
	"time"

	"github.com/atrium-iot/atrium/internal/reading"
)

// testNow is the agent's clock in every test: 30.25 s after testTS.
var (
	testNow = time.Date(2025, 11, 25, 12, 0, 30, 250e6, time.UTC)
	testTS  = time.Date(2025, 11, 25, 12, 0, 0, 0, time.UTC) // 1764072000000 ms
)

// rd builds an expected reading of sensor s1 in room room-101 at site hq.
func rd(typ string, v float64, unit string, at time.Time) reading.Reading {
	return reading.Reading{SensorID: "s1", RoomID: "room-101", Site: "hq", Type: typ, Value: v, Unit: unit, Timestamp: at}
}

type decodeCase struct {
	name    string
	topic   string
	payload string
	want    Result
	wantErr string // exact error text; empty when the message is valid
}

var decodeCases = []decodeCase{
	// JSON object of metrics.
	{name: "json two metrics with ts", topic: "atrium/room-101/s1",
		payload: `{"temperature":21.5,"humidity":40,"ts":1764072000000}`,
		want: Result{Form: FormJSON, Readings: []reading.Reading{
			rd("temperature", 21.5, "Cel", testTS), rd("humidity", 40, "%RH", testTS)}}},
	{name: "json ts first and whitespace", topic: "atrium/room-101/s1",
		payload: " \n{ \"ts\" : 1764072000123 ,\t\"co2\" : 612 }\r\n",
		want:    Result{Form: FormJSON, Readings: []reading.Reading{rd("co2", 612, "ppm", testTS.Add(123*time.Millisecond))}}},
	{name: "json timestamp rfc3339", topic: "atrium/room-101/s1",
		payload: `{"timestamp":"2025-11-25T13:00:00.5+01:00","light":350.25}`,
		want:    Result{Form: FormJSON, Readings: []reading.Reading{rd("light", 350.25, "lx", testTS.Add(500*time.Millisecond))}}},
	{name: "json timestamp ms as text", topic: "atrium/room-101/s1",
		payload: `{"timestamp":"1764072000000","noise":41}`,
		want:    Result{Form: FormJSON, Readings: []reading.Reading{rd("noise", 41, "dB", testTS)}}},
	{name: "json no time takes the agent clock", topic: "atrium/room-101/s1",
		payload: `{"occupancy":3}`,
		want:    Result{Form: FormJSON, Readings: []reading.Reading{rd("occupancy", 3, "count", testNow)}}},
	{name: "json ts null takes the agent clock", topic: "atrium/room-101/s1",
		payload: `{"pir":0,"ts":null}`,
		want:    Result{Form: FormJSON, Readings: []reading.Reading{rd("pir", 0, "", testNow)}}},
	{name: "json unknown type kept as is", topic: "atrium/room-101/s1",
		payload: `{"battery":3.7,"rssi":-71e0,"ts":1764072000000}`,
		want:    Result{Form: FormJSON, Readings: []reading.Reading{rd("battery", 3.7, "", testTS), rd("rssi", -71, "", testTS)}}},
	{name: "json escaped key", topic: "atrium/room-101/s1",
		payload: `{"temp\u0065rature":-0.5,"ts":1764072000000}`,
		want:    Result{Form: FormJSON, Readings: []reading.Reading{rd("temperature", -0.5, "Cel", testTS)}}},

	// SenML.
	{name: "senml base name and base time", topic: "atrium/room-101/s1",
		payload: `[{"bn":"dev-senml/","bt":1764072000,"n":"co2","u":"ppm","v":612},{"n":"temperature","u":"Cel","v":21.5,"t":1.5}]`,
		want: Result{Form: FormSenML, Readings: []reading.Reading{
			rd("co2", 612, "ppm", testTS), rd("temperature", 21.5, "Cel", testTS.Add(1500*time.Millisecond))}}},
	{name: "senml relative times", topic: "atrium/room-101/s1",
		payload: `[{"n":"humidity","v":41},{"n":"humidity","v":40,"t":-60}]`,
		want: Result{Form: FormSenML, Readings: []reading.Reading{
			rd("humidity", 41, "%RH", testNow), rd("humidity", 40, "%RH", testNow.Add(-time.Minute))}}},
	{name: "senml base value base unit and alias unit", topic: "atrium/room-101/s1",
		payload: `[{"bn":"urn:dev:mac:0024befffe804ff1:","bt":1764072000.25,"bu":"°C","bv":20,"n":"temperature","v":1.5},{"n":"temperature","v":-1,"t":60}]`,
		want: Result{Form: FormSenML, Readings: []reading.Reading{
			rd("temperature", 21.5, "Cel", testTS.Add(250*time.Millisecond)),
			rd("temperature", 19, "Cel", testTS.Add(60250*time.Millisecond))}}},
	{name: "senml name from the base name alone", topic: "atrium/room-101/s1",
		payload: `[{"bn":"urn:dev:ow:10e2073a01080063:co2","v":800,"bt":1764072000}]`,
		want:    Result{Form: FormSenML, Readings: []reading.Reading{rd("co2", 800, "ppm", testTS)}}},
	{name: "senml boolean value", topic: "atrium/room-101/s1",
		payload: `[{"n":"motion","vb":true,"bt":1764072000},{"n":"motion","vb":false,"t":1}]`,
		want: Result{Form: FormSenML, Readings: []reading.Reading{
			rd("motion", 1, "", testTS), rd("motion", 0, "", testTS.Add(time.Second))}}},
	{name: "senml unknown fields skipped", topic: "atrium/room-101/s1",
		payload: `[{"bver":10,"x":{"deep":[1,{"a":null},"s"]},"n":"voc","v":120,"s":9,"ut":60,"bs":0}]`,
		want:    Result{Form: FormSenML, Readings: []reading.Reading{rd("voc", 120, "ppb", testNow)}}},

	// Plain numbers.
	{name: "plain number", topic: "atrium/room-101/s1/temperature", payload: "21.5\n",
		want: Result{Form: FormPlain, Readings: []reading.Reading{rd("temperature", 21.5, "Cel", testNow)}}},
	{name: "plain negative exponent", topic: "atrium/room-101/s1/pressure", payload: " 1.01325e3 ",
		want: Result{Form: FormPlain, Readings: []reading.Reading{rd("pressure", 1013.25, "hPa", testNow)}}},

	// Status.
	{name: "status online", topic: "atrium/room-101/s1/status", payload: "online",
		want: Result{Form: FormStatus, Status: &Status{SensorID: "s1", RoomID: "room-101", Online: true}}},
	{name: "status offline any case", topic: "atrium/room-101/s1/status", payload: " OFFLINE\n",
		want: Result{Form: FormStatus, Status: &Status{SensorID: "s1", RoomID: "room-101", Online: false}}},

	// Topics.
	{name: "topic not atrium", topic: "home/room-101/s1", payload: "1",
		wantErr: `topic "home/room-101/s1": does not start with atrium/`},
	{name: "topic without sensor", topic: "atrium/room-101", payload: "1",
		wantErr: `topic "atrium/room-101": want atrium/<room_id>/<sensor_id>[/<type>|/status]`},
	{name: "topic too deep", topic: "atrium/room-101/s1/temperature/x", payload: "1",
		wantErr: `topic "atrium/room-101/s1/temperature/x": want atrium/<room_id>/<sensor_id>[/<type>|/status]`},
	{name: "topic trailing slash", topic: "atrium/room-101/s1/", payload: "1",
		wantErr: `topic "atrium/room-101/s1/": want atrium/<room_id>/<sensor_id>[/<type>|/status]`},
	{name: "topic bad room id", topic: "atrium/room 101/s1", payload: `{"co2":1}`,
		wantErr: `topic "atrium/room 101/s1": room_id "room 101" must be 1-128 characters of A-Z a-z 0-9 . _ : -`},
	{name: "topic empty sensor id", topic: "atrium/room-101//co2", payload: "1",
		wantErr: `topic "atrium/room-101//co2": sensor_id "" must be 1-128 characters of A-Z a-z 0-9 . _ : -`},
	{name: "topic bad type", topic: "atrium/room-101/s1/Temp", payload: "1",
		wantErr: `topic "atrium/room-101/s1/Temp": type "Temp" must be lowercase a-z 0-9 _`},

	// JSON object errors.
	{name: "json string value", topic: "atrium/room-101/s1", payload: `{"temperature":21.5,"co2":"612"}`,
		wantErr: `value of "co2": must be a finite number, got a string`},
	{name: "json null value", topic: "atrium/room-101/s1", payload: `{"co2":null}`,
		wantErr: `value of "co2": must be a finite number, got null`},
	{name: "json overflowing value", topic: "atrium/room-101/s1", payload: `{"co2":1e400}`,
		wantErr: `value of "co2": must be a finite number`},
	{name: "json out of range is all or nothing", topic: "atrium/room-101/s1", payload: `{"humidity":40,"temperature":120}`,
		wantErr: `value of "temperature": 120 is outside the plausible range of temperature (-40…85 Cel)`},
	{name: "json unknown key", topic: "atrium/room-101/s1", payload: `{"Temperature":21}`,
		wantErr: `key "Temperature" is neither ts, timestamp nor a reading type (lowercase a-z 0-9 _)`},
	{name: "json metric twice", topic: "atrium/room-101/s1", payload: `{"co2":1,"co2":2}`,
		wantErr: `metric "co2" given twice`},
	{name: "json empty object", topic: "atrium/room-101/s1", payload: `{}`,
		wantErr: `no metrics in the object: want e.g. {"temperature":21.5}`},
	{name: "json only a time", topic: "atrium/room-101/s1", payload: `{"ts":1764072000000}`,
		wantErr: `no metrics in the object: want e.g. {"temperature":21.5}`},
	{name: "json bad ts", topic: "atrium/room-101/s1", payload: `{"co2":1,"ts":-5}`,
		wantErr: `ts: must be RFC 3339 or Unix milliseconds`},
	{name: "json ts object", topic: "atrium/room-101/s1", payload: `{"co2":1,"ts":{}}`,
		wantErr: `ts: must be RFC 3339 or Unix milliseconds, got an object`},
	{name: "json bad timestamp text", topic: "atrium/room-101/s1", payload: `{"co2":1,"timestamp":"yesterday"}`,
		wantErr: `timestamp: "yesterday" is neither RFC 3339 nor Unix milliseconds`},
	{name: "json ts and timestamp", topic: "atrium/room-101/s1", payload: `{"ts":1764072000000,"co2":1,"timestamp":"2025-11-25T12:00:00Z"}`,
		wantErr: `"timestamp" given after "ts": send one time`},
	{name: "json future", topic: "atrium/room-101/s1", payload: `{"co2":1,"ts":1764075600000}`,
		wantErr: `timestamp of "co2": 2025-11-25T13:00:00.000Z is more than 5m0s in the future`},
	{name: "json trailing data", topic: "atrium/room-101/s1", payload: `{"co2":1} x`,
		wantErr: `invalid JSON: data after the end of the value at byte 10`},
	{name: "json truncated", topic: "atrium/room-101/s1", payload: `{"co2":1`,
		wantErr: `invalid JSON: unexpected end of payload at byte 8`},
	{name: "json leading zero", topic: "atrium/room-101/s1", payload: `{"co2":012}`,
		wantErr: `invalid JSON: unexpected '1' at byte 8`},
	{name: "json control char in key", topic: "atrium/room-101/s1", payload: "{\"co\n2\":1}",
		wantErr: `invalid JSON: unexpected '\n' at byte 4`},
	{name: "empty payload", topic: "atrium/room-101/s1", payload: " ",
		wantErr: `empty payload: want a JSON object of metrics or a SenML array`},
	{name: "number on the object topic", topic: "atrium/room-101/s1", payload: "21.5",
		wantErr: `payload starting with '2' is neither a JSON object of metrics nor a SenML array`},

	// SenML errors.
	{name: "senml empty pack", topic: "atrium/room-101/s1", payload: `[]`,
		wantErr: `SenML pack has no records`},
	{name: "senml record not an object", topic: "atrium/room-101/s1", payload: `[{"n":"co2","v":1},2]`,
		wantErr: `SenML record 1: must be an object, got a number`},
	{name: "senml string value", topic: "atrium/room-101/s1", payload: `[{"n":"co2","vs":"high"}]`,
		wantErr: `SenML record 0: "vs" is not a number: Atrium readings are numeric, use v`},
	{name: "senml data value", topic: "atrium/room-101/s1", payload: `[{"n":"co2","vd":"aGk"}]`,
		wantErr: `SenML record 0: "vd" is not a number: Atrium readings are numeric, use v`},
	{name: "senml no value", topic: "atrium/room-101/s1", payload: `[{"n":"co2","u":"ppm"}]`,
		wantErr: `SenML record 0 ("co2"): no numeric value (v)`},
	{name: "senml v and vb", topic: "atrium/room-101/s1", payload: `[{"n":"pir","v":1,"vb":true}]`,
		wantErr: `SenML record 0 ("pir"): both v and vb given`},
	{name: "senml no name", topic: "atrium/room-101/s1", payload: `[{"v":1}]`,
		wantErr: `SenML record 0: no name: set n (the reading type) or bn`},
	{name: "senml bad type name", topic: "atrium/room-101/s1", payload: `[{"bn":"dev/","n":"CO2","v":1}]`,
		wantErr: `SenML record 0: name "dev/CO2": the type "CO2" must be lowercase a-z 0-9 _`},
	{name: "senml must understand", topic: "atrium/room-101/s1", payload: `[{"n":"co2","v":1,"crit_":1}]`,
		wantErr: `SenML record 0: field "crit_" must be understood and is not supported`},
	{name: "senml future version", topic: "atrium/room-101/s1", payload: `[{"bver":11,"n":"co2","v":1}]`,
		wantErr: `SenML record 0: version 11 is not supported (at most 10)`},
	{name: "senml field twice", topic: "atrium/room-101/s1", payload: `[{"n":"co2","v":1,"v":2}]`,
		wantErr: `SenML record 0: field "v" given twice`},
	{name: "senml wrong field type", topic: "atrium/room-101/s1", payload: `[{"n":"co2","v":"1"}]`,
		wantErr: `SenML record 0: "v" must be a number, got a string`},
	{name: "senml before 1970", topic: "atrium/room-101/s1", payload: `[{"n":"co2","v":1,"t":-1e10}]`,
		wantErr: `SenML record 0 ("co2"): time -1e+10 is before 1970`},
	{name: "senml time out of range", topic: "atrium/room-101/s1", payload: `[{"n":"co2","v":1,"bt":1e300}]`,
		wantErr: `SenML record 0 ("co2"): time 1e+300 is out of range`},
	{name: "senml invalid value is all or nothing", topic: "atrium/room-101/s1", payload: `[{"n":"co2","v":400},{"n":"co2","v":20000}]`,
		wantErr: `SenML record 1: value of "co2": 20000 is outside the plausible range of co2 (0…10000 ppm)`},
	{name: "senml wrong unit", topic: "atrium/room-101/s1", payload: `[{"n":"pressure","u":"Pa","v":101325}]`,
		wantErr: `SenML record 0: unit of "pressure": "Pa" is not a unit of pressure (want hPa)`},
	{name: "senml future", topic: "atrium/room-101/s1", payload: `[{"n":"co2","v":1,"t":301}]`,
		wantErr: `SenML record 0: timestamp of "co2": 2025-11-25T12:05:31.250Z is more than 5m0s in the future`},
	{name: "senml trailing comma", topic: "atrium/room-101/s1", payload: `[{"n":"co2","v":1},]`,
		wantErr: `SenML record 1: must be an object, got ']'`},

	// Plain and status errors.
	{name: "plain not a number", topic: "atrium/room-101/s1/temperature", payload: "NaN",
		wantErr: `value of "temperature": must be a finite number, got "NaN"`},
	{name: "plain two numbers", topic: "atrium/room-101/s1/temperature", payload: "21 22",
		wantErr: `value of "temperature": must be a finite number, got "21 22"`},
	{name: "plain empty", topic: "atrium/room-101/s1/temperature", payload: "",
		wantErr: `value of "temperature": empty payload, want a number`},
	{name: "plain out of range", topic: "atrium/room-101/s1/humidity", payload: "101",
		wantErr: `value of "humidity": 101 is outside the plausible range of humidity (0…100 %RH)`},
	{name: "status unknown", topic: "atrium/room-101/s1/status", payload: "maybe",
		wantErr: `status must be "online" or "offline", got "maybe"`},
}

func TestDecode(t *testing.T) {
	for _, tc := range decodeCases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Decode(tc.topic, []byte(tc.payload), "hq", testNow)
			if err == nil && len(got.Invalid) > 0 && tc.wantErr != "" {
				// a reading that decoded but failed validation: reported per reading
				if got.Invalid[0].Reason != tc.wantErr {
					t.Fatalf("invalid reading reason\n got: %s\nwant: %s", got.Invalid[0].Reason, tc.wantErr)
				}
				return
			}
			if tc.wantErr != "" {
				if err == nil || err.Error() != tc.wantErr {
					t.Fatalf("error\n got: %v\nwant: %s", err, tc.wantErr)
				}
				if !reflect.DeepEqual(got, Result{}) {
					t.Fatalf("a failed message must yield nothing, got %+v", got)
				}
				return
			}
			if err != nil {
				t.Fatalf("unexpected error: %v", err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("result\n got: %+v\nwant: %+v", got, tc.want)
			}
		})
	}
}

func TestDecodeTopicErrorsAreMarked(t *testing.T) {
	tests := []struct {
		topic, payload string
		isTopic        bool
	}{
		{"home/a/b", "1", true},
		{"atrium/a b/c", "1", true},
		{"atrium/a/b", "{", false},
		{"atrium/a/b/co2", "x", false},
	}
	for _, tc := range tests {
		t.Run(tc.topic, func(t *testing.T) {
			_, err := Decode(tc.topic, []byte(tc.payload), "", testNow)
			if err == nil {
				t.Fatal("want an error")
			}
			if errors.Is(err, ErrTopic) != tc.isTopic {
				t.Fatalf("errors.Is(%v, ErrTopic) = %v, want %v", err, !tc.isTopic, tc.isTopic)
			}
		})
	}
}

func TestDecodeMaxReadings(t *testing.T) {
	tests := []struct {
		name    string
		n       int
		senml   bool
		wantErr string
	}{
		{"json at the limit", MaxReadings, false, ""},
		{"json over the limit", MaxReadings + 1, false, "more than 1000 metrics in one message"},
		{"senml at the limit", MaxReadings, true, ""},
		{"senml over the limit", MaxReadings + 1, true, "more than 1000 records in one SenML pack"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var p []byte
			if tc.senml {
				p = append(p, '[')
				for i := range tc.n {
					if i > 0 {
						p = append(p, ',')
					}
					p = append(p, `{"n":"m`...)
					p = appendInt(p, i)
					p = append(p, `","v":1}`...)
				}
				p = append(p, ']')
			} else {
				p = append(p, '{')
				for i := range tc.n {
					if i > 0 {
						p = append(p, ',')
					}
					p = append(p, `"m`...)
					p = appendInt(p, i)
					p = append(p, `":1`...)
				}
				p = append(p, '}')
			}
			res, err := Decode("atrium/r/s", p, "", testNow)
			if tc.wantErr != "" {
				if err == nil || err.Error() != tc.wantErr {
					t.Fatalf("error = %v, want %s", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(res.Readings) != tc.n {
				t.Fatalf("got %d readings, want %d", len(res.Readings), tc.n)
			}
		})
	}
}

func appendInt(b []byte, i int) []byte {
	if i >= 10 {
		b = appendInt(b, i/10)
	}
	return append(b, byte('0'+i%10))
}

func BenchmarkDecode(b *testing.B) {
	benches := []struct{ name, topic, payload string }{
		{"json", "atrium/room-101/sensor_001", `{"temperature":21.5,"humidity":40,"co2":612,"ts":1764072000000}`},
		{"json-rfc3339", "atrium/room-101/sensor_001", `{"temperature":21.5,"humidity":40,"timestamp":"2025-11-25T12:00:00.000Z"}`},
		{"senml", "atrium/room-101/sensor_001", `[{"bn":"sensor_001/","bt":1764072000,"n":"temperature","u":"Cel","v":21.5},{"n":"humidity","u":"%RH","v":40},{"n":"co2","u":"ppm","v":612}]`},
		{"plain", "atrium/room-101/sensor_001/temperature", "21.5"},
		{"status", "atrium/room-101/sensor_001/status", "online"},
	}
	for _, bc := range benches {
		b.Run(bc.name, func(b *testing.B) {
			payload := []byte(bc.payload)
			if _, err := Decode(bc.topic, payload, "hq", testNow); err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			b.SetBytes(int64(len(payload)))
			for b.Loop() {
				if _, err := Decode(bc.topic, payload, "hq", testNow); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func TestDecodeKeepsValidReadingsOfAMessage(t *testing.T) {
	got, err := Decode("atrium/room-101/s1", []byte(`{"temperature":120,"humidity":40,"co2":700}`), "hq", testNow)
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Readings) != 2 || got.Readings[0].Type != "humidity" || got.Readings[1].Type != "co2" {
		t.Fatalf("valid readings: %+v", got.Readings)
	}
	if len(got.Invalid) != 1 || got.Invalid[0].Reading.Type != "temperature" ||
		got.Invalid[0].Reason != `value of "temperature": 120 is outside the plausible range of temperature (-40…85 Cel)` {
		t.Fatalf("invalid readings: %+v", got.Invalid)
	}
}
