package replaytest

import "testing"

// TestRecords reads the shipped UCI Occupancy Detection excerpt: a quoted header of
// seven names over data rows of eight cells, led by a row index.
func TestRecords(t *testing.T) {
	recs := Records(t, "../../testdata/uci_occupancy_detection.txt")
	if len(recs) < 2 {
		t.Fatalf("%d records, want a header and rows", len(recs))
	}
	if got := recs[0][1]; got != "Temperature" || len(recs[0]) != 7 {
		t.Errorf("header %q, want seven names with Temperature second", recs[0])
	}
	if got := recs[1]; len(got) != 8 || got[0] != "1" || got[1] != "2015-02-04 17:51:00" {
		t.Errorf("first row %q, want eight cells led by index 1 and its time", got)
	}
}
