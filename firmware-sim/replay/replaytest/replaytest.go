// Package replaytest reads recorded CSV files for tests that check what the replay
// package makes of them by their own reading of the same rows.
package replaytest

import (
	"encoding/csv"
	"os"
	"testing"
)

// Records returns every record of the CSV file at path, header first, rows of any
// length; it fails the test if the file cannot be read.
func Records(tb testing.TB, path string) [][]string {
	tb.Helper()
	f, err := os.Open(path)
	if err != nil {
		tb.Fatal(err)
	}
	defer f.Close()
	r := csv.NewReader(f)
	r.FieldsPerRecord = -1
	recs, err := r.ReadAll()
	if err != nil {
		tb.Fatalf("%s: %v", path, err)
	}
	return recs
}
