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
	want    Result // all but Invalid, which bad gives
	bad     []part // the parts refused, in order
	wantErr string // exact error text; empty when the message is (partly) usable
}

// part is a refused part of a message: its reason and its own payload.
type part struct{ reason, payload string }

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
	// JSON object fields that are not readings: ignored (extras) or refused alone.
	{name: "json extras are ignored and counted", topic: "atrium/room-101/s1",
		payload: `{"temperature":21.7,"fw":"1.0.3","ok":true,"off":false,"cfg":{"a":[1,{"b":null}]},"tags":["x",2],"err":null,"ts":1764072000000}`,
		want:    Result{Form: FormJSON, Readings: []reading.Reading{rd("temperature", 21.7, "Cel", testTS)}, Ignored: 6}},
	{name: "json extras with invalid key names are ignored", topic: "atrium/room-101/s1",
		payload: `{"FW-Version":"1.0.3","co2":612,"Status":"ok"}`,
		want:    Result{Form: FormJSON, Readings: []reading.Reading{rd("co2", 612, "ppm", testNow)}, Ignored: 2}},
	{name: "json null of a known type is ignored", topic: "atrium/room-101/s1", payload: `{"co2":null,"humidity":40}`,
		want: Result{Form: FormJSON, Readings: []reading.Reading{rd("humidity", 40, "%RH", testNow)}, Ignored: 1}},
	{name: "json string value of a known type", topic: "atrium/room-101/s1", payload: `{"temperature":21.5,"co2":"612"}`,
		want: Result{Form: FormJSON, Readings: []reading.Reading{rd("temperature", 21.5, "Cel", testNow)}},
		bad:  []part{{`value of "co2": must be a finite number, got a string`, `{"co2":"612"}`}}},
	{name: "json boolean value of a known type", topic: "atrium/room-101/s1", payload: `{"motion":true,"co2":500,"ts":1764072000000}`,
		want: Result{Form: FormJSON, Readings: []reading.Reading{rd("co2", 500, "ppm", testTS)}},
		bad:  []part{{`value of "motion": must be a finite number, got a boolean`, `{"motion":true,"ts":1764072000000}`}}},
	{name: "json overflowing value", topic: "atrium/room-101/s1", payload: `{"co2":1e400}`,
		want: Result{Form: FormJSON},
		bad:  []part{{`value of "co2": must be a finite number`, `{"co2":1e400}`}}},
	{name: "json out of range refuses that field alone", topic: "atrium/room-101/s1", payload: `{"humidity":40, "temperature" : 120 }`,
		want: Result{Form: FormJSON, Readings: []reading.Reading{rd("humidity", 40, "%RH", testNow)}},
		bad:  []part{{`value of "temperature": 120 is outside the plausible range of temperature (-40…85 Cel)`, `{"temperature" : 120}`}}},
	{name: "json every field refused, time first", topic: "atrium/room-101/s1", payload: `{"ts":1764072000000,"humidity":140,"co2":-5}`,
		want: Result{Form: FormJSON},
		bad: []part{
			{`value of "humidity": 140 is outside the plausible range of humidity (0…100 %RH)`, `{"humidity":140,"ts":1764072000000}`},
			{`value of "co2": -5 is outside the plausible range of co2 (0…10000 ppm)`, `{"co2":-5,"ts":1764072000000}`}}},
	{name: "json numeric field with a key that is not a type", topic: "atrium/room-101/s1", payload: `{"Temperature":21,"RSSI":-71,"temperature":21}`,
		want: Result{Form: FormJSON, Readings: []reading.Reading{rd("temperature", 21, "Cel", testNow)}},
		bad: []part{
			{`key "Temperature" is neither ts, timestamp nor a reading type (lowercase a-z 0-9 _)`, `{"Temperature":21}`},
			{`key "RSSI" is neither ts, timestamp nor a reading type (lowercase a-z 0-9 _)`, `{"RSSI":-71}`}}},
	{name: "json metric twice keeps the first", topic: "atrium/room-101/s1", payload: `{"co2":1,"co2":2}`,
		want: Result{Form: FormJSON, Readings: []reading.Reading{rd("co2", 1, "ppm", testNow)}},
		bad:  []part{{`metric "co2" given twice`, `{"co2":2}`}}},
	{name: "json future", topic: "atrium/room-101/s1", payload: `{"co2":1,"ts":1764075600000}`,
		want: Result{Form: FormJSON},
		bad:  []part{{`timestamp of "co2": 2025-11-25T13:00:00.000Z is more than 5m0s in the future`, `{"co2":1,"ts":1764075600000}`}}},
	{name: "json escaped key refused with its escapes", topic: "atrium/room-101/s1", payload: `{"hum\u0069dity":101,"light":1}`,
		want: Result{Form: FormJSON, Readings: []reading.Reading{rd("light", 1, "lx", testNow)}},
		bad:  []part{{`value of "humidity": 101 is outside the plausible range of humidity (0…100 %RH)`, `{"hum\u0069dity":101}`}}},

	// JSON object errors: nothing in the message is usable.
	{name: "json only extras", topic: "atrium/room-101/s1", payload: `{"fw":"1.0.3","ok":true}`,
		wantErr: `no numeric metrics in the object, only 2 non-numeric field(s), which are ignored: want e.g. {"temperature":21.5}`},
	{name: "json null value alone", topic: "atrium/room-101/s1", payload: `{"co2":null}`,
		wantErr: `no numeric metrics in the object, only 1 non-numeric field(s), which are ignored: want e.g. {"temperature":21.5}`},
	{name: "json syntax error after a refused field", topic: "atrium/room-101/s1", payload: `{"co2":"x","temperature":`,
		wantErr: `invalid JSON: unexpected end of payload at byte 25`},
	{name: "json syntax error inside an ignored value", topic: "atrium/room-101/s1", payload: `{"co2":1,"cfg":{"a":tru}}`,
		wantErr: `invalid JSON: unexpected 't' at byte 20`},
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

	// SenML records that make no valid reading: refused alone, the others are read.
	{name: "senml record not an object", topic: "atrium/room-101/s1", payload: `[{"n":"co2","v":1},2]`,
		want: Result{Form: FormSenML, Readings: []reading.Reading{rd("co2", 1, "ppm", testNow)}},
		bad:  []part{{`SenML record 1: must be an object, got a number`, `[2]`}}},
	{name: "senml string value", topic: "atrium/room-101/s1", payload: `[{"n":"co2","vs":"high"}]`,
		want: Result{Form: FormSenML},
		bad:  []part{{`SenML record 0: "vs" is not a number: Atrium readings are numeric, use v`, `[{"n":"co2","vs":"high"}]`}}},
	{name: "senml data value", topic: "atrium/room-101/s1", payload: `[{"n":"co2","vd":"aGk"}]`,
		want: Result{Form: FormSenML},
		bad:  []part{{`SenML record 0: "vd" is not a number: Atrium readings are numeric, use v`, `[{"n":"co2","vd":"aGk"}]`}}},
	{name: "senml no value", topic: "atrium/room-101/s1", payload: `[{"n":"co2","u":"ppm"}]`,
		want: Result{Form: FormSenML},
		bad:  []part{{`SenML record 0 ("co2"): no numeric value (v)`, `[{"n":"co2","u":"ppm"}]`}}},
	{name: "senml v and vb", topic: "atrium/room-101/s1", payload: `[{"n":"pir","v":1,"vb":true}]`,
		want: Result{Form: FormSenML},
		bad:  []part{{`SenML record 0 ("pir"): both v and vb given`, `[{"n":"pir","v":1,"vb":true}]`}}},
	{name: "senml no name", topic: "atrium/room-101/s1", payload: `[{"v":1}]`,
		want: Result{Form: FormSenML},
		bad:  []part{{`SenML record 0: no name: set n (the reading type) or bn`, `[{"v":1}]`}}},
	{name: "senml bad type name", topic: "atrium/room-101/s1", payload: `[{"bn":"dev/","n":"CO2","v":1}]`,
		want: Result{Form: FormSenML},
		bad:  []part{{`SenML record 0: name "dev/CO2": the type "CO2" must be lowercase a-z 0-9 _`, `[{"bn":"dev/","n":"CO2","v":1}]`}}},
	{name: "senml must understand", topic: "atrium/room-101/s1", payload: `[{"n":"co2","v":1,"crit_":1}]`,
		want: Result{Form: FormSenML},
		bad:  []part{{`SenML record 0: field "crit_" must be understood and is not supported`, `[{"n":"co2","v":1,"crit_":1}]`}}},
	{name: "senml future version", topic: "atrium/room-101/s1", payload: `[{"bver":11,"n":"co2","v":1}]`,
		want: Result{Form: FormSenML},
		bad:  []part{{`SenML record 0: version 11 is not supported (at most 10)`, `[{"bver":11,"n":"co2","v":1}]`}}},
	{name: "senml field twice", topic: "atrium/room-101/s1", payload: `[{"n":"co2","v":1,"v":2}]`,
		want: Result{Form: FormSenML},
		bad:  []part{{`SenML record 0: field "v" given twice`, `[{"n":"co2","v":1,"v":2}]`}}},
	{name: "senml wrong field type", topic: "atrium/room-101/s1", payload: `[{"n":"co2","v":"1"}]`,
		want: Result{Form: FormSenML},
		bad:  []part{{`SenML record 0: "v" must be a number, got a string`, `[{"n":"co2","v":"1"}]`}}},
	{name: "senml before 1970", topic: "atrium/room-101/s1", payload: `[{"n":"co2","v":1,"t":-1e10}]`,
		want: Result{Form: FormSenML},
		bad:  []part{{`SenML record 0 ("co2"): time -1e+10 is before 1970`, `[{"n":"co2","v":1,"t":-1e10}]`}}},
	{name: "senml time out of range", topic: "atrium/room-101/s1", payload: `[{"n":"co2","v":1,"bt":1e300}]`,
		want: Result{Form: FormSenML},
		bad:  []part{{`SenML record 0 ("co2"): time 1e+300 is out of range`, `[{"n":"co2","v":1,"bt":1e300}]`}}},
	{name: "senml invalid record refused alone", topic: "atrium/room-101/s1", payload: `[{"n":"co2","v":400},{"n":"co2","v":20000}]`,
		want: Result{Form: FormSenML, Readings: []reading.Reading{rd("co2", 400, "ppm", testNow)}},
		bad:  []part{{`SenML record 1: value of "co2": 20000 is outside the plausible range of co2 (0…10000 ppm)`, `[{"n":"co2","v":20000}]`}}},
	{name: "senml wrong unit", topic: "atrium/room-101/s1", payload: `[{"n":"pressure","u":"Pa","v":101325}]`,
		want: Result{Form: FormSenML},
		bad:  []part{{`SenML record 0: unit of "pressure": "Pa" is not a unit of pressure (want hPa)`, `[{"n":"pressure","u":"Pa","v":101325}]`}}},
	{name: "senml future", topic: "atrium/room-101/s1", payload: `[{"n":"co2","v":1,"t":301}]`,
		want: Result{Form: FormSenML},
		bad:  []part{{`SenML record 0: timestamp of "co2": 2025-11-25T12:05:31.250Z is more than 5m0s in the future`, `[{"n":"co2","v":1,"t":301}]`}}},
	{name: "senml refused record keeps the base fields in force", topic: "atrium/room-101/s1",
		payload: `[{"bn":"urn:dev:s1:","bt":1764072000,"bu":"Cel","bv":20,"n":"temperature","v":1.5},{"n":"temperature","v":70,"t":1},{"bu":"%RH","bv":0,"n":"humidity","v":40,"t":2}]`,
		want: Result{Form: FormSenML, Readings: []reading.Reading{
			rd("temperature", 21.5, "Cel", testTS), rd("humidity", 40, "%RH", testTS.Add(2*time.Second))}},
		bad: []part{{`SenML record 1: value of "temperature": 90 is outside the plausible range of temperature (-40…85 Cel)`,
			`[{"bn":"urn:dev:s1:","bt":1764072000,"bu":"Cel","bv":20,"n":"temperature","v":70,"t":1}]`}}},
	{name: "senml base fields of a refused record apply after it", topic: "atrium/room-101/s1",
		payload: `[{"bt":1764072000,"n":"co2","vs":"x","bu":"ppm"},{"n":"co2","v":500}]`,
		want:    Result{Form: FormSenML, Readings: []reading.Reading{rd("co2", 500, "ppm", testTS)}},
		bad:     []part{{`SenML record 0: "vs" is not a number: Atrium readings are numeric, use v`, `[{"bt":1764072000,"n":"co2","vs":"x","bu":"ppm"}]`}}},
	{name: "senml escaped base name in a refused record", topic: "atrium/room-101/s1",
		payload: `[{"bn":"d\"1/","n":"co2","v":1},{"n":"co2","v":-1,"t":1}]`,
		want:    Result{Form: FormSenML, Readings: []reading.Reading{rd("co2", 1, "ppm", testNow)}},
		bad: []part{{`SenML record 1: value of "co2": -1 is outside the plausible range of co2 (0…10000 ppm)`,
			`[{"bn":"d\"1/","n":"co2","v":-1,"t":1}]`}}},

	// SenML errors: nothing in the pack is usable.
	{name: "senml empty pack", topic: "atrium/room-101/s1", payload: `[]`,
		wantErr: `SenML pack has no records`},
	{name: "senml trailing comma", topic: "atrium/room-101/s1", payload: `[{"n":"co2","v":1},]`,
		wantErr: `SenML record 1: must be an object, got ']'`},
	{name: "senml syntax error after a refused record", topic: "atrium/room-101/s1", payload: `[{"n":"co2","vs":"x"},{"n":"co2","v":1}`,
		wantErr: `invalid JSON: unexpected end of payload at byte 39`},
	{name: "senml syntax error inside a refused record", topic: "atrium/room-101/s1", payload: `[{"n":"co2","v":"1,"t":1}]`,
		wantErr: `invalid JSON: unexpected 't' at byte 20`},

	// Plain and status errors.
	{name: "plain not a number", topic: "atrium/room-101/s1/temperature", payload: "NaN",
		wantErr: `value of "temperature": must be a finite number, got "NaN"`},
	{name: "plain two numbers", topic: "atrium/room-101/s1/temperature", payload: "21 22",
		wantErr: `value of "temperature": must be a finite number, got "21 22"`},
	{name: "plain empty", topic: "atrium/room-101/s1/temperature", payload: "",
		wantErr: `value of "temperature": empty payload, want a number`},
	{name: "plain out of range", topic: "atrium/room-101/s1/humidity", payload: " 101\n",
		want: Result{Form: FormPlain},
		bad:  []part{{`value of "humidity": 101 is outside the plausible range of humidity (0…100 %RH)`, "101"}}},
	{name: "status unknown", topic: "atrium/room-101/s1/status", payload: "maybe",
		wantErr: `status must be "online" or "offline", got "maybe"`},
}

func TestDecode(t *testing.T) {
	for _, tc := range decodeCases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Decode(tc.topic, []byte(tc.payload), "hq", testNow)
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
			var bad []part
			for _, b := range got.Invalid {
				bad = append(bad, part{b.Reason, string(b.Payload)})
			}
			if !reflect.DeepEqual(bad, tc.bad) {
				t.Errorf("refused parts\n got: %q\nwant: %q", bad, tc.bad)
			}
			got.Invalid = nil
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
