package sensor_test

import (
	"errors"
	"testing"

	"github.com/atrium-iot/atrium/internal/paging"
	"github.com/atrium-iot/atrium/services/sensor"
)

func TestReadingQueryAfter(t *testing.T) {
	asc := sensor.ReadingCursor{TS: 1764072000000, Type: "co2"}
	desc := sensor.ReadingCursor{TS: 1764072000000, Type: "co2", Desc: true}
	tests := []struct {
		name    string
		q       sensor.ReadingQuery
		want    sensor.ReadingCursor
		wantOK  bool
		wantErr bool
	}{
		{"first page", sensor.ReadingQuery{}, sensor.ReadingCursor{}, false, false},
		{"ascending", sensor.ReadingQuery{Cursor: paging.EncodeCursor(asc)}, asc, true, false},
		{"descending", sensor.ReadingQuery{Desc: true, Cursor: paging.EncodeCursor(desc)}, desc, true, false},
		{"other order", sensor.ReadingQuery{Cursor: paging.EncodeCursor(desc)}, sensor.ReadingCursor{}, false, true},
		{"malformed", sensor.ReadingQuery{Cursor: "!!!"}, sensor.ReadingCursor{}, false, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, ok, err := tc.q.After()
			if tc.wantErr {
				if !errors.Is(err, sensor.ErrBadCursor) || ok {
					t.Fatalf("After() = %+v, %v, %v; want ErrBadCursor", c, ok, err)
				}
				return
			}
			if err != nil || ok != tc.wantOK || c != tc.want {
				t.Fatalf("After() = %+v, %v, %v; want %+v, %v", c, ok, err, tc.want, tc.wantOK)
			}
		})
	}
}

func TestSensorQueryAfter(t *testing.T) {
	tests := map[string]struct {
		cursor, want string
		ok, bad      bool
	}{
		"first page": {"", "", false, false},
		"an id":      {paging.EncodeCursor(sensor.SensorCursor{ID: "s1"}), "s1", true, false},
		"no id":      {paging.EncodeCursor(sensor.SensorCursor{}), "", false, true},
		"malformed":  {"eyJ9", "", false, true},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			c, ok, err := sensor.SensorQuery{Cursor: tc.cursor}.After()
			if tc.bad {
				if !errors.Is(err, sensor.ErrBadCursor) || ok {
					t.Fatalf("After() = %+v, %v, %v; want ErrBadCursor", c, ok, err)
				}
				return
			}
			if err != nil || ok != tc.ok || c.ID != tc.want {
				t.Fatalf("After() = %+v, %v, %v; want %q, %v", c, ok, err, tc.want, tc.ok)
			}
		})
	}
}
