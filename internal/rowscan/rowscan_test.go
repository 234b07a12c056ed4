package rowscan_test

import (
	"database/sql"
	"errors"
	"fmt"
	"maps"
	"slices"
	"testing"

	_ "modernc.org/sqlite"

	"github.com/atrium-iot/atrium/internal/rowscan"
)

// rows is a result of int rows; it fails Scan at row failAt (from 0) and Err
// with err.
type rows struct {
	vals   []int
	i      int
	failAt int
	err    error
	closed bool
}

func (r *rows) Next() bool { r.i++; return r.i <= len(r.vals) }
func (r *rows) Err() error { return r.err }
func (r *rows) Close() error {
	r.closed = true
	return nil
}
func (r *rows) Scan(dest ...any) error {
	if r.i-1 == r.failAt {
		return errors.New("bad row")
	}
	*dest[0].(*int) = r.vals[r.i-1]
	return nil
}

// checkRead checks a read of r: its error against wantErr ("" for none), and
// that it closed r.
func checkRead(t *testing.T, r *rows, err error, wantErr string) {
	t.Helper()
	if (err == nil) != (wantErr == "") || (err != nil && err.Error() != wantErr) {
		t.Fatalf("err = %v, want %q", err, wantErr)
	}
	if !r.closed {
		t.Error("rows not closed")
	}
}

func TestAllAndMap(t *testing.T) {
	double := func(r rowscan.Row) (string, error) {
		var n int
		err := r.Scan(&n)
		return fmt.Sprint(2 * n), err
	}
	parity := func(r rowscan.Row) (bool, int, error) {
		var n int
		err := r.Scan(&n)
		return n%2 == 0, n, err
	}
	tests := []struct {
		name    string
		rows    rows // a copy each for All and Map
		wantAll []string
		wantMap map[bool]int // a later row replaces an earlier one
		wantErr string
	}{
		{"every row in order", rows{vals: []int{1, 2, 3}, failAt: -1}, []string{"2", "4", "6"}, map[bool]int{false: 3, true: 2}, ""},
		{"no rows", rows{failAt: -1}, nil, map[bool]int{}, ""},
		{"a row fails", rows{vals: []int{1, 2, 3}, failAt: 1}, nil, nil, "bad row"},
		{"the result fails", rows{vals: []int{1}, failAt: -1, err: errors.New("broken")}, nil, nil, "broken"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := tc.rows
			all, err := rowscan.All(&r, double)
			checkRead(t, &r, err, tc.wantErr)
			if !slices.Equal(all, tc.wantAll) {
				t.Errorf("All = %q, want %q", all, tc.wantAll)
			}
			r = tc.rows
			m, err := rowscan.Map(&r, parity)
			checkRead(t, &r, err, tc.wantErr)
			if !maps.Equal(m, tc.wantMap) || (m == nil) != (tc.wantMap == nil) {
				t.Errorf("Map = %v, want %v", m, tc.wantMap)
			}
		})
	}
}

func TestAppend(t *testing.T) {
	got, err := rowscan.Append([]int{}, &rows{failAt: -1}, rowscan.Values[int]())
	if err != nil || got == nil || len(got) != 0 {
		t.Fatalf("Append([]int{}, no rows) = %#v, %v; want an empty slice", got, err)
	}
	got, err = rowscan.Append([]int{1}, &rows{vals: []int{2}, failAt: -1}, rowscan.Values[int]())
	if err != nil || !slices.Equal(got, []int{1, 2}) {
		t.Fatalf("Append([1], [2]) = %v, %v; want [1 2]", got, err)
	}
}

func TestValues(t *testing.T) {
	got, err := rowscan.All(&rows{vals: []int{7, 8}, failAt: -1}, rowscan.Values[int]())
	if err != nil || !slices.Equal(got, []int{7, 8}) {
		t.Fatalf("All(Values) = %v, %v; want [7 8]", got, err)
	}
}

func TestQuery(t *testing.T) {
	db, err := sql.Open("sqlite", ":memory:")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	const values = "SELECT column1 FROM (VALUES (1), (2), (3)) WHERE column1 >= ? ORDER BY column1"
	got, err := rowscan.Query(t.Context(), db, rowscan.Values[int](), values, 2)
	if err != nil || !slices.Equal(got, []int{2, 3}) {
		t.Fatalf("Query = %v, %v; want [2 3]", got, err)
	}
	if _, err := rowscan.Query(t.Context(), db, rowscan.Values[int](), "SELECT FROM nowhere"); err == nil {
		t.Fatal("Query of a bad statement: no error")
	}
}
