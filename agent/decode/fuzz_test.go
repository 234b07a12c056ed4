package decode

import (
	"reflect"
	"strings"
	"testing"

	"github.com/atrium-iot/atrium/internal/reading"
)

// FuzzDecode checks that no topic or payload makes Decode panic, that a failure
// yields nothing, that every refused part has a reason and a payload that decodes
// on its own, and that every reading it returns is one the cloud accepts and the
// spool can write and read back unchanged. Seeds: testdata/fuzz/FuzzDecode and the
// TestDecode table.
func FuzzDecode(f *testing.F) {
	for _, tc := range decodeCases {
		f.Add(tc.topic, []byte(tc.payload))
	}
	f.Fuzz(func(t *testing.T, topic string, payload []byte) {
		res, err := Decode(topic, payload, "hq", testNow)
		if err != nil {
			if !reflect.DeepEqual(res, Result{}) {
				t.Fatalf("error %q came with a result: %+v", err, res)
			}
			if err.Error() == "" {
				t.Fatal("empty error text: a dead letter needs a reason")
			}
			return
		}
		parts := strings.Split(topic, "/")
		switch res.Form {
		case FormStatus:
			if res.Status == nil || len(res.Readings) != 0 {
				t.Fatalf("status result %+v", res)
			}
			if res.Status.RoomID != parts[1] || res.Status.SensorID != parts[2] {
				t.Fatalf("status %+v does not match topic %q", res.Status, topic)
			}
			return
		case FormJSON, FormSenML, FormPlain:
			for _, bad := range res.Invalid {
				if bad.Reason == "" {
					t.Fatal("an invalid reading without a reason")
				}
				// A refused part stands alone: decoded again on the same topic, it is
				// exactly one reading or one refused part, never a broken message.
				again, err := Decode(topic, bad.Payload, "hq", testNow)
				if err != nil || len(again.Readings)+len(again.Invalid) != 1 || again.Form != res.Form {
					t.Fatalf("refused part %q (%s) decoded again: %+v, %v", bad.Payload, bad.Reason, again, err)
				}
			}
			if res.Ignored < 0 || (res.Ignored > 0 && res.Form != FormJSON) {
				t.Fatalf("%s result ignoring %d fields", res.Form, res.Ignored)
			}
			if res.Status != nil || len(res.Readings)+len(res.Invalid) == 0 || len(res.Readings) > MaxReadings {
				t.Fatalf("%s result with %d readings and status %v", res.Form, len(res.Readings), res.Status)
			}
		default:
			t.Fatalf("unknown form %q", res.Form)
		}
		for i, r := range res.Readings {
			if r.RoomID != parts[1] || r.SensorID != parts[2] || r.Site != "hq" {
				t.Fatalf("reading %d %+v does not match topic %q", i, r, topic)
			}
			again := r
			if err := reading.Validate(&again, testNow); err != nil {
				t.Fatalf("reading %d %+v fails validation: %v", i, r, err)
			}
			if again != r {
				t.Fatalf("validating reading %d again changed it: %+v → %+v", i, r, again)
			}
			b, err := r.MarshalJSON()
			if err != nil {
				t.Fatalf("reading %d: marshal: %v", i, err)
			}
			var back reading.Reading
			if err := back.UnmarshalJSON(b); err != nil {
				t.Fatalf("reading %d: %s does not read back: %v", i, b, err)
			}
			if back.SensorID != r.SensorID || back.RoomID != r.RoomID || back.Site != r.Site || back.Type != r.Type ||
				back.Value != r.Value || back.Unit != r.Unit || !back.Timestamp.Equal(r.Timestamp) {
				t.Fatalf("reading %d: round trip through %s: %+v → %+v", i, b, r, back)
			}
		}
	})
}
