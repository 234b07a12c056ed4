// Package sqlitestore keeps the analytics service's copy of the readings, the
// alert states and the reports in one SQLite file (modernc.org/sqlite, pure Go).
//
// Readings are kept twice: their identities (for dedupe) in readings, and their
// aggregates in per-minute rollups per room and type (room_minute) and per type
// (type_minute), plus the latest value per room and type. Every query reads the
// rollups, so a 30-day trend reads at most 43,200 rows whatever the reading rate.
// One connection writes (under a mutex, one transaction per call), a pool reads;
// WAL lets them run side by side.
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

	"github.com/atrium-iot/atrium/services/analytics"
)

var _ analytics.Store = (*Store)(nil)

//go:embed migrations/*.sql
var migrations embed.FS

// Options tune a Store. The zero value is ready to use.
type Options struct {
	// Logger receives the store's logs; nil discards them.
	Logger *slog.Logger
	// Synchronous is SQLite's synchronous mode: "NORMAL" (the default: a commit
	// survives a crash of the process, the last ones may be lost on power loss;
	// the bus redelivers what was not acknowledged) or "FULL".
	Synchronous string
	// Readers is the size of the read pool; 0 means twice the number of CPUs.
	Readers int
}

// Store is the SQLite implementation of analytics.Store.
type Store struct {
	log *slog.Logger
	rdb *sql.DB

	mu     sync.Mutex // guards wdb and the statement cache
	wdb    *sql.DB    // one connection, held by wconn
	wconn  *sql.Conn  // the write connection; transactions are BEGIN/COMMIT on it
	stmts  map[string]*sql.Stmt
	closed bool
	series map[seriesKey]int64 // committed series ids, owned by the writer

	reqs       chan *writeReq
	quit       chan struct{}
	writerDone chan struct{}
	life       sync.RWMutex // guards stopping against inflight.Add
	stopping   bool
	inflight   sync.WaitGroup
}

// Open opens (creating if needed) the SQLite database at path and brings its
// schema up to date.
func Open(ctx context.Context, path string, opts Options) (*Store, error) {
	if path == "" || strings.ContainsRune(path, '?') {
		return nil, fmt.Errorf("analytics sqlitestore: open: invalid path %q", path)
	}
	syncMode := strings.ToUpper(opts.Synchronous)
	switch syncMode {
	case "":
		syncMode = "NORMAL"
	case "FULL", "NORMAL", "OFF", "EXTRA":
	default:
		return nil, fmt.Errorf("analytics sqlitestore: open: unknown synchronous mode %q", opts.Synchronous)
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
		"_pragma=busy_timeout(5000)",
		"_pragma=cache_size(-65536)",
		"_pragma=temp_store(MEMORY)",
		"_pragma=mmap_size(268435456)",
		"_journal_mode=WAL",
		"_synchronous=" + syncMode,
	}
	wdb, err := sql.Open("sqlite", path+"?"+strings.Join(common, "&"))
	if err != nil {
		return nil, fmt.Errorf("analytics sqlitestore: open %s: %w", path, err)
	}
	wdb.SetMaxOpenConns(1)
	wdb.SetMaxIdleConns(1)
	wdb.SetConnMaxLifetime(0)
	wdb.SetConnMaxIdleTime(0)
	if err := migrate(ctx, wdb); err != nil {
		wdb.Close()
		return nil, wrapErr("analytics sqlitestore: open "+path+": migrate", err)
	}
	rdb, err := sql.Open("sqlite", path+"?"+strings.Join(append(common, "_pragma=query_only(1)"), "&"))
	if err != nil {
		wdb.Close()
		return nil, fmt.Errorf("analytics sqlitestore: open %s: %w", path, err)
	}
	rdb.SetMaxOpenConns(readers)
	rdb.SetMaxIdleConns(readers)
	if err := rdb.PingContext(ctx); err != nil {
		wdb.Close()
		rdb.Close()
		return nil, wrapErr("analytics sqlitestore: open "+path, err)
	}
	wconn, err := wdb.Conn(ctx)
	if err != nil {
		wdb.Close()
		rdb.Close()
		return nil, wrapErr("analytics sqlitestore: open "+path, err)
	}
	log.Debug("sqlite store opened", "path", path, "synchronous", syncMode)
	s := &Store{log: log, rdb: rdb, wdb: wdb, wconn: wconn, stmts: map[string]*sql.Stmt{}, series: map[seriesKey]int64{},
		reqs: make(chan *writeReq, 256), quit: make(chan struct{}), writerDone: make(chan struct{})}
	go s.writer()
	return s, nil
}

// migrate applies, in one transaction, every embedded migration numbered above the
// database's user_version.
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
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer func() { _ = tx.Rollback() }()
	var current int
	if err := tx.QueryRowContext(ctx, "PRAGMA user_version").Scan(&current); err != nil {
		return err
	}
	applied := false
	for _, s := range steps {
		if s.version <= current {
			continue
		}
		body, err := migrations.ReadFile(s.name)
		if err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, string(body)); err != nil {
			return fmt.Errorf("migration %s: %w", s.name, err)
		}
		if _, err := tx.ExecContext(ctx, "PRAGMA user_version = "+strconv.Itoa(s.version)); err != nil {
			return err
		}
		applied = true
	}
	if !applied {
		return nil
	}
	return tx.Commit()
}

// Ping reports whether the store is usable.
func (s *Store) Ping(ctx context.Context) error {
	return wrapErr("analytics sqlitestore: ping", s.rdb.PingContext(ctx))
}

// Close closes the store; calls after it fail with ErrUnavailable.
func (s *Store) Close() error {
	s.life.Lock()
	already := s.stopping
	s.stopping = true
	s.life.Unlock()
	if !already {
		s.inflight.Wait() // the writer answers every call already handed over
		close(s.quit)
		<-s.writerDone
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	for _, st := range s.stmts {
		st.Close()
	}
	return errors.Join(s.wconn.Close(), s.rdb.Close(), s.wdb.Close())
}

// wrapErr wraps err with op, marking the errors a retry may cure as ErrUnavailable.
func wrapErr(op string, err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, analytics.ErrUnavailable) || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) ||
		errors.Is(err, analytics.ErrNotFound) || errors.Is(err, analytics.ErrBadCursor) {
		return fmt.Errorf("%s: %w", op, err)
	}
	if transient(err) {
		return fmt.Errorf("%s: %w: %w", op, analytics.ErrUnavailable, err)
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

func ms(t time.Time) int64 { return t.UnixMilli() }

func fromMS(v int64) time.Time { return time.UnixMilli(v).UTC() }
