package storetest

import (
	"context"
	"reflect"
	"testing"
	"time"

	"github.com/atrium-iot/atrium/services/sensor"
)

// testStatusMarks: a mark replaces the sensor's previous one, marks are listed
// by sensor id with millisecond times, and they survive a reopen.
func testStatusMarks(t *testing.T, h *harness) {
	ctx := context.Background()
	if ms, err := h.S.StatusMarks(ctx); err != nil || len(ms) != 0 {
		t.Fatalf("marks of a new store = %+v, %v", ms, err)
	}
	for _, m := range []sensor.StatusMark{
		{SensorID: "s2", Status: sensor.StatusOnline, At: at(time.Minute)},
		{SensorID: "s1", Status: sensor.StatusOnline, At: at(0)},
		{SensorID: "s2", Status: sensor.StatusOffline, At: at(6*time.Minute + 123*time.Millisecond)},
	} {
		if err := h.S.MarkStatus(ctx, m); err != nil {
			t.Fatalf("mark %+v: %v", m, err)
		}
	}
	want := []sensor.StatusMark{
		{SensorID: "s1", Status: sensor.StatusOnline, At: at(0)},
		{SensorID: "s2", Status: sensor.StatusOffline, At: at(6*time.Minute + 123*time.Millisecond)},
	}
	check := func(what string) {
		t.Helper()
		ms, err := h.S.StatusMarks(ctx)
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		for i := range ms {
			ms[i].At = ms[i].At.UTC()
		}
		if !reflect.DeepEqual(ms, want) {
			t.Fatalf("%s: marks %+v, want %+v", what, ms, want)
		}
	}
	check("marks")
	if err := h.S.MarkStatus(ctx, sensor.StatusMark{Status: sensor.StatusOnline, At: at(0)}); err == nil {
		t.Error("a mark without a sensor id was recorded")
	}
	h.Reopen()
	check("marks after a reopen")
}
