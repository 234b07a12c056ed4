// Package rowscan reads the rows of a query into a slice: the loop over Next,
// Scan and Err that every SQL and ClickHouse adapter would otherwise write
// for each query. It knows no driver: database/sql's *sql.Rows and
// clickhouse-go's driver.Rows both are Rows.
package rowscan

import (
	"context"
	"database/sql"
)

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
	err := each(rows, func(r Row) error {
		v, err := scan(r)
		out = append(out, v)
		return err
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// Map calls scan on each row of rows, which makes a key and its value, and
// returns them in a map (a later row replaces an earlier one of the same key);
// it stops as All does, and closes rows.
func Map[K comparable, V any](rows Rows, scan func(Row) (K, V, error)) (map[K]V, error) {
	out := map[K]V{}
	err := each(rows, func(r Row) error {
		k, v, err := scan(r)
		out[k] = v
		return err
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// each calls fn on each row of rows, stopping at the first error of fn or of
// rows, and closes rows.
func each(rows Rows, fn func(Row) error) error {
	defer rows.Close()
	for rows.Next() {
		if err := fn(rows); err != nil {
			return err
		}
	}
	return rows.Err()
}

// Querier runs a query in database/sql: a *sql.DB, *sql.Conn or *sql.Tx.
type Querier interface {
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
}

// Query runs query with args on q and reads its rows with scan, as All does.
// Errors are returned as they are, for the caller to wrap once.
func Query[T any](ctx context.Context, q Querier, scan func(Row) (T, error), query string, args ...any) ([]T, error) {
	rows, err := q.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	return All(rows, scan)
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
