// Package sqlitetest gives the SQLite stores' tests what they share: a file per
// store of a contract suite, the cases every store's Open must pass, and checks
// of the query plans that hold a statement to its index.
package sqlitetest

import (
	"context"
	"database/sql"
	"fmt"
	"io"
	"path/filepath"
	"strings"
	"testing"

	_ "modernc.org/sqlite" // the "sqlite" driver

	"github.com/atrium-iot/atrium/internal/sqlitex"
)

// Open opens a store with open at path, failing t when it cannot.
func Open[S any](t testing.TB, path string, open func(ctx context.Context, path string) (S, error)) S {
	t.Helper()
	s, err := open(t.Context(), path)
	if err != nil {
		t.Fatalf("open %s: %v", filepath.Base(path), err)
	}
	return s
}

// Paths returns a function giving each store name of a contract suite its own
// file, name+".db", in a folder removed when t ends; asked again for a name it
// gives the same file, so that a store reopened under that name sees what was
// stored. It is safe for parallel tests.
func Paths(t testing.TB) func(name string) string {
	dir := t.TempDir()
	return func(name string) string { return filepath.Join(dir, name+".db") }
}

// Opener returns the opener of a contract suite: each store name gets a store
// opened with open in its own file (see Paths); a failure to open fails the
// test asking for the store.
func Opener[S any](t testing.TB, open func(ctx context.Context, path string) (S, error)) func(t *testing.T, name string) S {
	path := Paths(t)
	return func(t *testing.T, name string) S {
		t.Helper()
		return Open(t, path(name), open)
	}
}

// Modes runs f as a subtest named after each synchronous mode a store's
// contract is checked in, FULL and NORMAL, with the settings of that mode.
func Modes(t *testing.T, f func(t *testing.T, settings sqlitex.Settings)) {
	for _, mode := range []string{"FULL", "NORMAL"} {
		t.Run(mode, func(t *testing.T) { f(t, sqlitex.Settings{Synchronous: mode}) })
	}
}

// RunOpen runs the cases every SQLite store's Open must pass, opening with
// open(ctx, path, synchronous): a new file and the same file again, "normal"
// and "" synchronous modes succeed; an unknown mode, a missing folder, an
// empty path and a path with a query fail. A store opened has its schema at
// user_version version and its file in WAL mode, and closing it twice returns
// nil both times.
func RunOpen(t *testing.T, version int, open func(ctx context.Context, path, synchronous string) (io.Closer, error)) {
	dir := t.TempDir()
	tests := []struct {
		name, path, sync string
		ok               bool
	}{
		{"new file", filepath.Join(dir, "a.db"), "", true},
		{"existing file", filepath.Join(dir, "a.db"), "", true},
		{"normal sync", filepath.Join(dir, "b.db"), "normal", true},
		{"unknown sync mode", filepath.Join(dir, "c.db"), "sometimes", false},
		{"missing directory", filepath.Join(dir, "no", "such", "d.db"), "", false},
		{"empty path", "", "", false},
		{"query in path", filepath.Join(dir, "e.db") + "?mode=ro", "", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s, err := open(t.Context(), tc.path, tc.sync)
			if (err == nil) != tc.ok {
				if err == nil {
					s.Close()
				}
				t.Fatalf("open(%q, %q): err = %v, want ok %v", tc.path, tc.sync, err, tc.ok)
			}
			if err != nil {
				return
			}
			if err := s.Close(); err != nil {
				t.Errorf("Close: %v", err)
			}
			if err := s.Close(); err != nil {
				t.Errorf("second Close: %v", err)
			}
			v, mode := Schema(t, tc.path)
			if v != version {
				t.Errorf("user_version = %d, want %d", v, version)
			}
			if mode != "wal" {
				t.Errorf("journal_mode = %q, want wal", mode)
			}
		})
	}
}

// Schema returns the user_version and the journal mode of the database file at
// path, read on a connection of its own.
func Schema(t testing.TB, path string) (version int, journalMode string) {
	t.Helper()
	db, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if err := db.QueryRowContext(t.Context(), "PRAGMA user_version").Scan(&version); err != nil {
		t.Errorf("user_version: %v", err)
	}
	if err := db.QueryRowContext(t.Context(), "PRAGMA journal_mode").Scan(&journalMode); err != nil {
		t.Errorf("journal_mode: %v", err)
	}
	return version, journalMode
}

// Plan is what the query plan of one statement must show.
type Plan struct {
	Name  string
	Query string
	Args  []any    // nil: 1 for each ? of Query
	Want  []string // each must appear in a step of the plan
	Avoid []string // none may appear ("SCAN t", "TEMP B-TREE")
	Steps int      // > 0: how many steps the plan must have
}

// RunPlans checks each plan, in a subtest named by its Name, against the plan
// SQLite makes for its statement on db (EXPLAIN QUERY PLAN).
func RunPlans(t *testing.T, db *sql.DB, plans ...Plan) {
	for _, p := range plans {
		t.Run(p.Name, func(t *testing.T) {
			args := p.Args
			if args == nil {
				args = make([]any, strings.Count(p.Query, "?"))
				for i := range args {
					args[i] = 1
				}
			}
			plan, err := sqlitex.QueryPlan(t.Context(), db, p.Query, args...)
			if err != nil {
				t.Fatal(err)
			}
			for _, problem := range p.problems(plan) {
				t.Error(problem)
			}
		})
	}
}

// problems says how plan, the steps of the plan of p's statement, falls short
// of p.
func (p Plan) problems(plan []string) []string {
	var out []string
	all := strings.Join(plan, " | ")
	for _, w := range p.Want {
		if !strings.Contains(all, w) {
			out = append(out, fmt.Sprintf("plan %q lacks %q", all, w))
		}
	}
	for _, a := range p.Avoid {
		if strings.Contains(all, a) {
			out = append(out, fmt.Sprintf("plan %q has %q", all, a))
		}
	}
	if p.Steps > 0 && len(plan) != p.Steps {
		out = append(out, fmt.Sprintf("plan %q has %d steps, want %d", all, len(plan), p.Steps))
	}
	return out
}
