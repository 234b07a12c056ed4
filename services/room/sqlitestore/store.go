// Package sqlitestore keeps the room service's rooms, sensor placements, latest
// values and rollups in one SQLite file (modernc.org/sqlite, pure Go, WAL).
//
// One connection writes, a pool reads (WAL lets them run side by side). A bus
// batch is applied in one immediate transaction with multi-row upserts, so
// several processes may share the file: the transaction holding the write lock
// sees every batch applied before it.
package sqlitestore

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"

	"github.com/atrium-iot/atrium/services/room"
)

var _ room.Store = (*Store)(nil)

//go:embed migrations/*.sql
var migrations embed.FS

// Options tune a Store. The zero value is ready to use.
type Options struct {
	// Logger receives the store's logs; nil discards them.
	Logger *slog.Logger
	// Synchronous is SQLite's synchronous mode: "FULL" (the default) or "NORMAL"
	// (faster; the last commits may be lost on power loss, never on a crash of
	// the process).
	Synchronous string
	// BusyTimeout is how long a statement waits for a lock held by another
	// process before failing with ErrUnavailable; 0 means 5 s.
	BusyTimeout time.Duration
	// Readers is the size of the read pool; 0 means twice the number of CPUs.
	Readers int
}

// Store is the SQLite implementation of room.Store.
type Store struct {
	log *slog.Logger
	wdb *sql.DB // one connection: every write
	rdb *sql.DB // the read pool

	stmts map[stmtKey]*sql.Stmt // prepared on wdb; read-only after Open
	reads map[string]*sql.Stmt  // prepared on rdb, by query; read-only after Open

	closeOnce sync.Once
	closeErr  error
}

// Open opens (creating if needed) the SQLite database at path and brings its
// schema up to date.
func Open(ctx context.Context, path string, opts Options) (*Store, error) {
	if path == "" || strings.ContainsRune(path, '?') {
		return nil, fmt.Errorf("sqlitestore: open: invalid path %q", path)
	}
	syncMode := strings.ToUpper(opts.Synchronous)
	switch syncMode {
	case "":
		syncMode = "FULL"
	case "FULL", "NORMAL", "OFF", "EXTRA":
	default:
		return nil, fmt.Errorf("sqlitestore: open: unknown synchronous mode %q", opts.Synchronous)
	}
	busy := opts.BusyTimeout
	if busy <= 0 {
		busy = 5 * time.Second
	}
	readers := opts.Readers
	if readers <= 0 {
		readers = 2 * runtime.NumCPU()
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	common := []string{
		"_pragma=busy_timeout(" + strconv.FormatInt(busy.Milliseconds(), 10) + ")",
		"_pragma=cache_size(-32768)", // 32 MiB per connection
		"_pragma=temp_store(MEMORY)",
		"_pragma=mmap_size(268435456)",
		"_journal_mode=WAL",
		"_synchronous=" + syncMode,
		"_pragma=journal_size_limit(67108864)",
	}
	wdb, err := sql.Open("sqlite", path+"?"+strings.Join(append(common, "_txlock=immediate"), "&"))
	if err != nil {
		return nil, fmt.Errorf("sqlitestore: open %s: %w", path, err)
	}
	wdb.SetMaxOpenConns(1)
	wdb.SetMaxIdleConns(1)
	wdb.SetConnMaxLifetime(0)
	wdb.SetConnMaxIdleTime(0)
	if err := migrate(ctx, wdb); err != nil {
		wdb.Close()
		return nil, wrapErr("sqlitestore: open "+path+": migrate", err)
	}
	rdb, err := sql.Open("sqlite", path+"?"+strings.Join(append(common, "_pragma=query_only(1)"), "&"))
	if err != nil {
		wdb.Close()
		return nil, fmt.Errorf("sqlitestore: open %s: %w", path, err)
	}
	rdb.SetMaxOpenConns(readers)
	rdb.SetMaxIdleConns(readers)
	rdb.SetConnMaxIdleTime(0)
	if err := rdb.PingContext(ctx); err != nil {
		wdb.Close()
		rdb.Close()
		return nil, wrapErr("sqlitestore: open "+path, err)
	}
	s := &Store{log: log, wdb: wdb, rdb: rdb, stmts: map[stmtKey]*sql.Stmt{}, reads: map[string]*sql.Stmt{}}
	if err := s.prepare(ctx); err != nil {
		s.Close()
		return nil, wrapErr("sqlitestore: open "+path, err)
	}
	log.Debug("sqlite store opened", "path", path, "synchronous", syncMode)
	return s, nil
}

// migrate applies, in one transaction, every embedded migration numbered above
// the database's user_version.
func migrate(ctx context.Context, db *sql.DB) error {
	names, err := fs.Glob(migrations, "migrations/*.sql")
	if err != nil {
		return err
	}
	type step struct {
		version int
		name    string
	}
	var steps []step
	for _, name := range names {
		base := name[strings.LastIndexByte(name, '/')+1:]
		num, _, ok := strings.Cut(base, "_")
		v, err := strconv.Atoi(num)
		if !ok || err != nil || v <= 0 {
			return fmt.Errorf("migration %s: name must start with a positive number and '_'", base)
		}
		steps = append(steps, step{v, name})
	}
	sort.Slice(steps, func(i, j int) bool { return steps[i].version < steps[j].version })
	tx, err := db.BeginTx(ctx, nil) // BEGIN IMMEDIATE: one migrator at a time
	if err != nil {
		return err
	}
	defer tx.Rollback()
	var current int
	if err := tx.QueryRowContext(ctx, "PRAGMA user_version").Scan(&current); err != nil {
		return err
	}
	last := current
	for _, st := range steps {
		if st.version <= current {
			continue
		}
		script, err := migrations.ReadFile(st.name)
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

type stmtKey struct {
	name string
	rows int
}

// prepare prepares every multi-row statement on the write connection; a
// transaction uses them with tx.StmtContext.
func (s *Store) prepare(ctx context.Context) error {
	for _, u := range upserts {
		for _, k := range chunkSizes {
			st, err := s.wdb.PrepareContext(ctx, u.sql(k))
			if err != nil {
				return fmt.Errorf("prepare %s: %w", u.name, err)
			}
			s.stmts[stmtKey{u.name, k}] = st
		}
	}
	for _, q := range readQueries() {
		st, err := s.rdb.PrepareContext(ctx, q)
		if err != nil {
			return fmt.Errorf("prepare %q: %w", q, err)
		}
		s.reads[q] = st
	}
	return nil
}

// read returns the prepared read statement of query.
func (s *Store) read(query string) *sql.Stmt { return s.reads[query] }

// Ping runs a trivial query on the read pool.
func (s *Store) Ping(ctx context.Context) error {
	var one int
	if err := s.rdb.QueryRowContext(ctx, "SELECT 1").Scan(&one); err != nil {
		return wrapErr("sqlitestore: ping", err)
	}
	return nil
}

// Close closes the database. Calling it again returns the first result.
func (s *Store) Close() error {
	s.closeOnce.Do(func() {
		for _, st := range s.stmts {
			_ = st.Close()
		}
		for _, st := range s.reads {
			_ = st.Close()
		}
		s.closeErr = errors.Join(s.rdb.Close(), s.wdb.Close())
		if s.closeErr != nil {
			s.closeErr = fmt.Errorf("sqlitestore: close: %w", s.closeErr)
		}
	})
	return s.closeErr
}

// wrapErr prefixes err with op and marks the errors a caller should retry later
// (locks held too long, I/O failures, a full disk, a closed database) as
// room.ErrUnavailable.
func wrapErr(op string, err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, room.ErrUnavailable) || errors.Is(err, room.ErrNotFound) || errors.Is(err, room.ErrConflict) ||
		errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("%s: %w", op, err)
	}
	if transient(err) {
		return fmt.Errorf("%s: %w: %w", op, room.ErrUnavailable, err)
	}
	return fmt.Errorf("%s: %w", op, err)
}

func transient(err error) bool {
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

// isConstraint reports whether err is a constraint violation (a duplicate key).
func isConstraint(err error) bool {
	var se *sqlite.Error
	return errors.As(err, &se) && se.Code()&0xff == sqlite3.SQLITE_CONSTRAINT
}
