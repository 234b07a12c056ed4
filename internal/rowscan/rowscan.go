// Package rowscan reads the rows of a query into a slice: the loop over Next,
// Scan and Err that every SQL and ClickHouse adapter would otherwise write
// for each query. It knows no driver: database/sql's *sql.Rows and
// clickhouse-go's driver.Rows both are Rows.
package rowscan

// Row is one row of a result, to scan into variables.
type Row interface {
	Scan(dest ...any) error
}

// Rows is a result, read a row at a time.
type Rows interface {
	Row
	Next() bool
	Err() error
	Close() error
}

// All calls scan on each row of rows and returns what it made, in order; it
// stops at the first error of scan or of rows, and closes rows.
func All[T any](rows Rows, scan func(Row) (T, error)) ([]T, error) {
	return Append(nil, rows, scan)
}

// Append is All appending to out (e.g. an empty slice, for a list that must
// not be nil).
func Append[T any](out []T, rows Rows, scan func(Row) (T, error)) ([]T, error) {
	defer rows.Close()
	for rows.Next() {
		v, err := scan(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	return out, nil
}

// Values returns a scan function for All that scans a row of one column into
// a T.
func Values[T any]() func(Row) (T, error) {
	return func(r Row) (T, error) {
		var v T
		err := r.Scan(&v)
		return v, err
	}
}
