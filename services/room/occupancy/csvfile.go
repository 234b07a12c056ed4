package occupancy

import (
	"encoding/csv"
	"errors"
	"fmt"
	"io"
)

// readCSV reads a CSV file with a header row holding at least the columns
// need (header names passed through key first), and calls row for each data
// row with its line number and the index of each column by key.
func readCSV(r io.Reader, key func(string) string, need []string, row func(line int, rec []string, col map[string]int) error) error {
	c := csv.NewReader(r)
	c.FieldsPerRecord = -1
	head, err := c.Read()
	if err != nil {
		return fmt.Errorf("occupancy: read header: %w", err)
	}
	col := map[string]int{}
	for i, h := range head {
		col[key(h)] = i
	}
	for _, n := range need {
		if _, ok := col[n]; !ok {
			return fmt.Errorf("occupancy: header %v: no column %q", head, n)
		}
	}
	for line := 2; ; line++ {
		rec, err := c.Read()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("occupancy: line %d: %w", line, err)
		}
		if len(rec) == len(head)+1 { // a row id the header does not name
			rec = rec[1:]
		}
		if len(rec) != len(head) {
			return fmt.Errorf("occupancy: line %d: %d cells, header has %d", line, len(rec), len(head))
		}
		if err := row(line, rec, col); err != nil {
			return fmt.Errorf("occupancy: line %d: %w", line, err)
		}
	}
}
