// Package sqlitex holds the plumbing the SQLite adapters share (modernc.org/sqlite):
// opening a writer connection and a read pool with the same pragmas, applying
// embedded migrations under PRAGMA user_version, and marking the errors a retry
// may cure as apperr.ErrUnavailable. The queries stay in each adapter.
package sqlitex

import (
	"cmp"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"time"

	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"

	"github.com/atrium-iot/atrium/internal/apperr"
)

// Options choose the pragmas and pool sizes of the connections Open makes. Every
// connection is in WAL mode with temp_store(MEMORY); readers are query_only.
type Options struct {
	// Synchronous is SQLite's synchronous mode: FULL, NORMAL, OFF or EXTRA (any
	// case); "" means FULL.
	Synchronous string
	// BusyTimeout is how long a statement waits for a lock; 0 means 5 s.
	BusyTimeout time.Duration
	// Readers is the size of the read pool; 0 means twice the number of CPUs.
	Readers int
	// ForeignKeys turns on foreign key enforcement.
	ForeignKeys bool
	// CacheSizeKiB is the page cache of each connection; 0 leaves SQLite's default.
	CacheSizeKiB int
	// MmapBytes is the memory-mapped size of each connection; 0 leaves SQLite's default.
	MmapBytes int64
	// JournalSizeLimit caps the WAL kept after a checkpoint, in bytes; 0 leaves
	// SQLite's default.
	JournalSizeLimit int64
	// ImmediateWrites makes every transaction of the writer BEGIN IMMEDIATE.
	ImmediateWrites bool
	// WriterPragmas are further pragmas for the writer only, e.g. "wal_autocheckpoint(0)".
	WriterPragmas []string
	// Migrations, when not nil, holds the NNNN_name.sql scripts that Open applies
	// with Migrate before the read pool is opened; MigrationsDir is their folder in it.
	Migrations    fs.FS
	MigrationsDir string
}

// syncMode returns the upper-case synchronous mode of o, or an error if it is unknown.
func (o Options) syncMode() (string, error) {
	m := strings.ToUpper(cmp.Or(o.Synchronous, "FULL"))
	switch m {
	case "FULL", "NORMAL", "OFF", "EXTRA":
		return m, nil
	}
	return "", fmt.Errorf("unknown synchronous mode %q", o.Synchronous)
}

// DSN returns the data source name of a connection to path with the pragmas every
// connection of o shares, followed by extra (each "name(value)").
func (o Options) DSN(path string, extra ...string) string {
	busy := o.BusyTimeout
	if busy <= 0 {
		busy = 5 * time.Second
	}
	sync, err := o.syncMode()
	if err != nil {
		sync = "FULL"
	}
	pragmas := []string{"busy_timeout(" + strconv.FormatInt(busy.Milliseconds(), 10) + ")"}
	if o.ForeignKeys {
		pragmas = append(pragmas, "foreign_keys(1)")
	}
	if o.CacheSizeKiB != 0 {
		pragmas = append(pragmas, "cache_size(-"+strconv.Itoa(o.CacheSizeKiB)+")")
	}
	pragmas = append(pragmas, "temp_store(MEMORY)")
	if o.MmapBytes != 0 {
		pragmas = append(pragmas, "mmap_size("+strconv.FormatInt(o.MmapBytes, 10)+")")
	}
	if o.JournalSizeLimit != 0 {
		pragmas = append(pragmas, "journal_size_limit("+strconv.FormatInt(o.JournalSizeLimit, 10)+")")
	}
	params := []string{"_journal_mode=WAL", "_synchronous=" + sync}
	for _, p := range append(pragmas, extra...) {
		params = append(params, "_pragma="+p)
	}
	return path + "?" + strings.Join(params, "&")
}

// Open opens (creating if needed) the database at path: one writer connection,
// on which the migrations of o are applied, and a query-only read pool. Errors
// read "open ...", for the caller to prefix with its package.
func Open(ctx context.Context, path string, o Options) (writer, readers *sql.DB, err error) {
	if path == "" || strings.ContainsRune(path, '?') {
		return nil, nil, fmt.Errorf("open: invalid path %q", path)
	}
	if _, err := o.syncMode(); err != nil {
		return nil, nil, fmt.Errorf("open: %w", err)
	}
	n := o.Readers
	if n <= 0 {
		n = 2 * runtime.NumCPU()
	}
	wdsn := o.DSN(path, o.WriterPragmas...)
	if o.ImmediateWrites {
		wdsn += "&_txlock=immediate"
	}
	wdb, err := sql.Open("sqlite", wdsn)
	if err != nil {
		return nil, nil, fmt.Errorf("open %s: %w", path, err)
	}
	wdb.SetMaxOpenConns(1)
	wdb.SetMaxIdleConns(1)
	wdb.SetConnMaxLifetime(0)
	wdb.SetConnMaxIdleTime(0)
	if o.Migrations != nil {
		if err := Migrate(ctx, wdb, o.Migrations, o.MigrationsDir); err != nil {
			wdb.Close()
			return nil, nil, Wrap("open "+path+": migrate", err)
		}
	}
	rdb, err := sql.Open("sqlite", o.DSN(path, "query_only(1)"))
	if err != nil {
		wdb.Close()
		return nil, nil, fmt.Errorf("open %s: %w", path, err)
	}
	rdb.SetMaxOpenConns(n)
	rdb.SetMaxIdleConns(n)
	rdb.SetConnMaxIdleTime(0)
	if err := rdb.PingContext(ctx); err != nil {
		wdb.Close()
		rdb.Close()
		return nil, nil, Wrap("open "+path, err)
	}
	return wdb, rdb, nil
}

// Migrate applies, in one transaction, every dir/NNNN_name.sql script of fsys
// numbered above the database's user_version, in order, and sets user_version to
// the last one. A name without a positive number and '_', or a number used
// twice, is an error and nothing is applied.
func Migrate(ctx context.Context, db *sql.DB, fsys fs.FS, dir string) error {
	names, err := fs.Glob(fsys, path.Join(dir, "*.sql"))
	if err != nil {
		return err
	}
	type step struct {
		version int
		name    string
	}
	var steps []step
	seen := map[int]string{}
	for _, name := range names {
		base := path.Base(name)
		num, _, ok := strings.Cut(base, "_")
		v, err := strconv.Atoi(num)
		if !ok || err != nil || v <= 0 {
			return fmt.Errorf("migration %s: name must start with a positive number and '_'", base)
		}
		if other, dup := seen[v]; dup {
			return fmt.Errorf("migration %s: number already used by %s", base, other)
		}
		seen[v] = base
		steps = append(steps, step{v, name})
	}
	sort.Slice(steps, func(i, j int) bool { return steps[i].version < steps[j].version })

	tx, err := db.BeginTx(ctx, nil) // BEGIN IMMEDIATE with _txlock=immediate: one migrator at a time
	if err != nil {
		return err
	}
	defer func() { _ = tx.Rollback() }()
	var current int
	if err := tx.QueryRowContext(ctx, "PRAGMA user_version").Scan(&current); err != nil {
		return err
	}
	last := current
	for _, st := range steps {
		if st.version <= current {
			continue
		}
		script, err := fs.ReadFile(fsys, st.name)
		if err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, string(script)); err != nil {
			return fmt.Errorf("migration %s: %w", st.name, err)
		}
		last = st.version
	}
	if last == current {
		return nil
	}
	if _, err := tx.ExecContext(ctx, "PRAGMA user_version = "+strconv.Itoa(last)); err != nil {
		return err
	}
	return tx.Commit()
}

// Wrap prefixes err with op and marks the errors a caller should retry later
// (see Unavailable) as apperr.ErrUnavailable. It returns nil for a nil err.
func Wrap(op string, err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, apperr.ErrUnavailable) || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("%s: %w", op, err)
	}
	if Unavailable(err) {
		return fmt.Errorf("%s: %w: %w", op, apperr.ErrUnavailable, err)
	}
	return fmt.Errorf("%s: %w", op, err)
}

// Unavailable reports whether err is a failure a retry may cure: a lock held too
// long (busy, locked), an I/O error, a full disk, a file that cannot be opened,
// no memory, a read-only file, a locking protocol error, or a closed database.
func Unavailable(err error) bool {
	if err == nil {
		return false
	}
	if errors.Is(err, sql.ErrConnDone) || strings.Contains(err.Error(), "sql: database is closed") {
		return true
	}
	var se *sqlite.Error
	if !errors.As(err, &se) {
		return false
	}
	switch se.Code() & 0xff {
	case sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED, sqlite3.SQLITE_IOERR, sqlite3.SQLITE_FULL,
		sqlite3.SQLITE_CANTOPEN, sqlite3.SQLITE_NOMEM, sqlite3.SQLITE_READONLY, sqlite3.SQLITE_PROTOCOL:
		return true
	}
	return false
}

// QueryPlan returns the detail column of each row of EXPLAIN QUERY PLAN for query
// with args, in order: what tests read to hold a statement to its index.
func QueryPlan(ctx context.Context, db *sql.DB, query string, args ...any) ([]string, error) {
	rows, err := db.QueryContext(ctx, "EXPLAIN QUERY PLAN "+query, args...)
	if err != nil {
		return nil, fmt.Errorf("query plan: %w", err)
	}
	defer rows.Close()
	var plan []string
	for rows.Next() {
		var id, parent, unused int
		var detail string
		if err := rows.Scan(&id, &parent, &unused, &detail); err != nil {
			return nil, fmt.Errorf("query plan: %w", err)
		}
		plan = append(plan, detail)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("query plan: %w", err)
	}
	return plan, nil
}
