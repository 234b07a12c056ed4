// Package sqlitestore keeps the analytics service's copy of the readings, the
// alert states and the reports in one SQLite file (modernc.org/sqlite, pure Go).
//
// Readings are kept twice: their identities (for dedupe) in readings, and their
// aggregates in per-minute rollups per room and type (room_minute) and per type
// (type_minute), plus the latest value per room and type. Every query reads the
// rollups, so a 30-day trend reads at most 43,200 rows whatever the reading rate.
// One connection writes (under a mutex, one transaction per call), a pool reads;
// WAL lets them run side by side.
//
// With Options.Retention or Options.RollupRetention set, what is past them is
// deleted at open and then every minute (see Prune).
package sqlitestore

import (
	"context"
	"database/sql"
	"embed"
	"fmt"
	"sync"
	"time"

	"github.com/atrium-iot/atrium/internal/groupcommit"
	"github.com/atrium-iot/atrium/internal/reading"
	"github.com/atrium-iot/atrium/internal/retention"
	"github.com/atrium-iot/atrium/internal/sqlitex"
	"github.com/atrium-iot/atrium/services/analytics"
)

var _ analytics.Store = (*Store)(nil)

//go:embed migrations/*.sql
var migrations embed.FS

// Options tune a Store. The zero value is ready to use; the synchronous mode
// defaults to NORMAL (a commit survives a crash of the process, the last ones
// may be lost on power loss: the bus redelivers what was not acknowledged).
type Options struct {
	sqlitex.Settings
	// Tiered: Retention is how long raw readings (their identities, for
	// dedupe) are kept, by reading timestamp; a reading older than that is
	// ignored by AddReadings. RollupRetention is how long the per-minute
	// aggregates, which every query reads, are kept. PruneEvery defaults to
	// every minute.
	retention.Tiered
}

// Store is the SQLite implementation of analytics.Store.
type Store struct {
	db   *sqlitex.Store   // Writer is one connection, held by wconn
	keep retention.Tiered // Options.Tiered with its defaults

	mu     sync.Mutex // guards wconn and the statement cache
	wconn  *sql.Conn  // the write connection; transactions are BEGIN/COMMIT on it
	stmts  map[string]*sql.Stmt
	series map[seriesKey]int64 // committed series ids, owned by the writer
	floor  int64               // Unix ms: readings older than this were pruned (PruneBefore)

	// writer commits the AddReadings calls waiting at the same time in one
	// transaction.
	writer *groupcommit.Writer[[]reading.Reading, int]

	pruner *retention.Pruner // nil when the store prunes nothing
}

// Open opens (creating if needed) the SQLite database at path and brings its
// schema up to date.
func Open(ctx context.Context, path string, opts Options) (*Store, error) {
	db, err := sqlitex.OpenStore(ctx, path, opts.Settings, sqlitex.Options{
		Synchronous:   "NORMAL",
		CacheSizeKiB:  65536,
		MmapBytes:     268435456,
		Migrations:    migrations,
		MigrationsDir: "migrations",
	}, "retention", opts.Retention.String(), "rollup_retention", opts.RollupRetention.String())
	if err != nil {
		return nil, fmt.Errorf("analytics sqlitestore: %w", err)
	}
	wconn, err := db.Writer.Conn(ctx)
	if err != nil {
		_ = db.Close("analytics sqlitestore: close", nil)
		return nil, wrapErr("analytics sqlitestore: open "+path, err)
	}
	s := &Store{db: db, keep: opts.WithDefaults(defaultPruneEvery), wconn: wconn, stmts: map[string]*sql.Stmt{}, series: map[seriesKey]int64{}}
	s.writer = groupcommit.New(s.commitGroup, func(rs []reading.Reading) int { return len(rs) }, groupcommit.Options{MaxSize: maxGroup})
	s.pruner = s.keep.Start(db.Log, s.Prune)
	return s, nil
}

// Ping reports whether the store is usable.
func (s *Store) Ping(ctx context.Context) error {
	return s.db.Ping(ctx, "analytics sqlitestore: ping")
}

// Close closes the store, after the writer has answered every call already
// handed over; calls after it fail with ErrUnavailable. Calling it again
// returns the first result.
func (s *Store) Close() error {
	return s.db.Close("analytics sqlitestore: close", func() error {
		s.pruner.Stop()
		s.writer.Close() // it answers every call already handed over
		s.mu.Lock()
		defer s.mu.Unlock()
		for _, st := range s.stmts {
			st.Close()
		}
		return s.wconn.Close()
	})
}

// wrapErr wraps err with op, marking the errors a retry may cure as ErrUnavailable.
func wrapErr(op string, err error) error { return sqlitex.Wrap(op, err) }

func ms(t time.Time) int64 { return t.UnixMilli() }

func fromMS(v int64) time.Time { return time.UnixMilli(v).UTC() }
