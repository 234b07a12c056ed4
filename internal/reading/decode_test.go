package reading_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"

	"github.com/atrium-iot/atrium/internal/reading"
)

// jsonBatch is the shape DecodeBatch stands in for, decoded by encoding/json.
type jsonBatch struct {
	BatchID  reading.Text     `json:"batch_id"`
	Readings *[]reading.Input `json:"readings"`
	reading.Input
}

// outcomes is what the service makes of inputs: each reading or its rejection.
func outcomes(ins []reading.Input) []string {
	out := make([]string, len(ins))
	for i := range ins {
		r, err := ins[i].Reading(now)
		if err != nil {
			var fe *reading.FieldError
			if !errors.As(err, &fe) {
				out[i] = "error " + err.Error()
				continue
			}
			out[i] = "rejected " + fe.Field + ": " + fe.Reason
			continue
		}
		out[i] = fmt.Sprintf("accepted %+v", r)
	}
	return out
}

// checkSame fails unless the fast decoders, where they accept b, give exactly
// what encoding/json gives, and the same readings and rejections follow.
func checkSame(t *testing.T, b []byte) (arrayFast, batchFast bool) {
	t.Helper()
	if fast, ok := reading.DecodeInputs(b); ok {
		var slow []reading.Input
		if err := json.Unmarshal(b, &slow); err != nil {
			t.Fatalf("DecodeInputs accepted %q, encoding/json rejects it: %v", b, err)
		}
		if !reflect.DeepEqual(fast, slow) {
			t.Fatalf("DecodeInputs(%q)\n got %+v\nwant %+v", b, fast, slow)
		}
		if f, s := outcomes(fast), outcomes(slow); !reflect.DeepEqual(f, s) {
			t.Fatalf("DecodeInputs(%q) outcomes\n got %q\nwant %q", b, f, s)
		}
		arrayFast = true
	}
	if fast, ok := reading.DecodeBatch(b); ok {
		var slow jsonBatch
		if err := json.Unmarshal(b, &slow); err != nil {
			t.Fatalf("DecodeBatch accepted %q, encoding/json rejects it: %v", b, err)
		}
		want := reading.BatchInput{BatchID: slow.BatchID, Readings: slow.Readings, Input: slow.Input}
		if !reflect.DeepEqual(fast, want) {
			t.Fatalf("DecodeBatch(%q)\n got %+v\nwant %+v", b, fast, want)
		}
		if fast.Readings != nil {
			if f, s := outcomes(*fast.Readings), outcomes(*want.Readings); !reflect.DeepEqual(f, s) {
				t.Fatalf("DecodeBatch(%q) outcomes\n got %q\nwant %q", b, f, s)
			}
		}
		if f, s := outcomes([]reading.Input{fast.Input}), outcomes([]reading.Input{want.Input}); !reflect.DeepEqual(f, s) {
			t.Fatalf("DecodeBatch(%q) outcome\n got %q\nwant %q", b, f, s)
		}
		batchFast = true
	}
	return arrayFast, batchFast
}

const fullReading = `{"sensor_id":"s-1","room_id":"room-1","site":"hq","type":"temperature","value":21.5,"unit":"Cel","timestamp":"2026-11-25T11:59:00.000Z"}`

func TestFastDecode(t *testing.T) {
	tests := []struct {
		name  string
		in    string
		array bool // DecodeInputs takes the fast path
		batch bool // DecodeBatch takes the fast path
	}{
		{"array", `[` + fullReading + `,{"sensor_id":"s-2","type":"co2","value":640,"timestamp":1764071940000}]`, true, false},
		{"empty array", ` [ ] `, true, false},
		{"spaces everywhere", "[ {\n\"sensor_id\" : \"a\" ,\t\"type\":\"co2\" , \"value\" : -1.5e+2 } ]\r\n", true, false},
		{"rejections are kept", `[{"sensor_id":1,"type":"co2","value":"NaN"},{"sensor_id":"a","value":null},{"timestamp":true}]`, true, false},
		{"escaped strings", `[{"sensor_id":"a\u0062","unit":"\u00b5g/m3","type":"pm25","value":1,"timestamp":"2026-11-25T11:59:00Z"}]`, true, false},
		{"batch", `{"batch_id":"b-1","site":"hq","readings":[` + fullReading + `]}`, false, true},
		{"batch readings first", `{"readings":[],"batch_id":"b-1"}`, false, true},
		{"batch null readings is a single reading", `{"readings":null,"sensor_id":"a","type":"co2","value":1}`, false, true},
		{"single reading", fullReading, false, true},
		{"empty object", `{}`, false, true},
		{"unknown key declines", `[{"sensor_id":"a","extra":1}]`, false, false},
		{"key in other case declines", `[{"Sensor_ID":"a"}]`, false, false},
		{"repeated key declines", `[{"sensor_id":"a","sensor_id":"b"}]`, false, false},
		{"nested value declines", `[{"value":{"v":1}}]`, false, false},
		{"null element declines", `[null]`, false, false},
		{"malformed declines", `[{"sensor_id":"a"`, false, false},
		{"leading zero declines", `[{"value":01}]`, false, false},
		{"trailing data declines", `[]x`, false, false},
		{"readings not an array declines", `{"readings":{}}`, false, false},
		{"control character declines", "[{\"sensor_id\":\"a\x01\"}]", false, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			array, batch := checkSame(t, []byte(tc.in))
			if array != tc.array || batch != tc.batch {
				t.Errorf("fast path taken: array %v batch %v, want %v %v", array, batch, tc.array, tc.batch)
			}
		})
	}
}

// FuzzFastDecode: the fast decoders agree with encoding/json on every input they
// accept: same fields, same readings, same rejections with the same reasons.
func FuzzFastDecode(f *testing.F) {
	for _, s := range []string{
		`[` + fullReading + `]`,
		`{"batch_id":"b","site":"hq","readings":[{"sensor_id":"a","type":"co2","value":1,"timestamp":1764072000000}]}`,
		`[{"sensor_id":"a","type":"x","value":"NaN","timestamp":"1764072000000"},{"value":1e999,"unit":"\u00b0C"}]`,
		`{"sensor_id":"a","type":"temperature","value":true,"timestamp":-1}`,
		`[{"sensor_id":"` + strings.Repeat("a", 129) + `","type":"co2","value":1}]`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		checkSame(t, b)
	})
}

// BenchmarkDecode decodes a 500-reading batch body with the fast decoder and
// with encoding/json, the path it replaces.
func BenchmarkDecode(b *testing.B) {
	var sb strings.Builder
	sb.WriteString(`{"batch_id":"bench","readings":[`)
	for i := range 500 {
		if i > 0 {
			sb.WriteByte(',')
		}
		fmt.Fprintf(&sb, `{"sensor_id":"sensor_%03d","room_id":"room-%d","type":"temperature","value":%d.%d,"unit":"Cel","timestamp":%d}`,
			i%100, i%10, 18+i%6, i%10, 1764072000000+i)
	}
	sb.WriteString(`]}`)
	body := []byte(sb.String())
	b.Run("fast", func(b *testing.B) {
		b.SetBytes(int64(len(body)))
		b.ReportAllocs()
		for b.Loop() {
			if bi, ok := reading.DecodeBatch(body); !ok || len(*bi.Readings) != 500 {
				b.Fatal("fast path declined")
			}
		}
	})
	b.Run("encoding-json", func(b *testing.B) {
		b.SetBytes(int64(len(body)))
		b.ReportAllocs()
		for b.Loop() {
			var jb jsonBatch
			if err := json.Unmarshal(body, &jb); err != nil || len(*jb.Readings) != 500 {
				b.Fatal(err)
			}
		}
	})
}
