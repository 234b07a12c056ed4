package agent

import (
	"fmt"
	"testing"
)

func TestIgnoredFieldSeriesAreBounded(t *testing.T) {
	var d devices
	for i := range maxDeviceSeries + 5 {
		d.ignore(fmt.Sprintf("dev-%04d", i), "r", 2)
	}
	d.ignore("dev-0000", "r", 1)                                 // has a series: it grows
	d.ignore(fmt.Sprintf("dev-%04d", maxDeviceSeries+1), "r", 1) // past the bound: _other grows
	got := d.ignoredSeries()
	if len(got) != maxDeviceSeries+1 {
		t.Fatalf("%d series, want %d devices and %s", len(got), maxDeviceSeries, otherDevices)
	}
	if got["dev-0000"] != 3 || got[otherDevices] != 5*2+1 {
		t.Errorf("dev-0000 = %d, %s = %d; want 3 and 11", got["dev-0000"], otherDevices, got[otherDevices])
	}
	if _, ok := got[fmt.Sprintf("dev-%04d", maxDeviceSeries)]; ok {
		t.Error("a device past the bound has a series of its own")
	}
	// /devices still counts every device's own fields.
	for _, dev := range d.list() {
		want := int64(2)
		if dev.ID == "dev-0000" || dev.ID == fmt.Sprintf("dev-%04d", maxDeviceSeries+1) {
			want = 3
		}
		if dev.IgnoredFields != want {
			t.Errorf("%s: ignored_fields = %d, want %d", dev.ID, dev.IgnoredFields, want)
		}
	}
}
