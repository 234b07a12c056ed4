// Package sqlitestore keeps the room service's rooms, sensor placements, latest
// values and rollups in one SQLite file (modernc.org/sqlite, pure Go, WAL).
//
// One connection writes, a pool reads (WAL lets them run side by side). A bus
// batch is applied in one immediate transaction with multi-row upserts, so
// several processes may share the file: the transaction holding the write lock
// sees every batch applied before it.
//
// With Options.Retention or Options.RollupRetention set, rollups past them are
// deleted at open and then every minute (see Prune).
package sqlitestore

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"

	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"

	"github.com/atrium-iot/atrium/internal/retention"
	"github.com/atrium-iot/atrium/internal/sqlitex"
	"github.com/atrium-iot/atrium/services/room"
)

var _ room.Store = (*Store)(nil)

//go:embed migrations/*.sql
var migrations embed.FS

// Options tune a Store. The zero value is ready to use; the synchronous mode
// defaults to FULL.
type Options struct {
	sqlitex.Settings
	// Tiered: Retention is how long the minute rollups (the history at 1m and
	// the window of the live metrics) are kept, by reading timestamp;
	// RollupRetention is how long the five-minute and hour rollups are kept.
	// PruneEvery defaults to every minute.
	retention.Tiered
}

// Store is the SQLite implementation of room.Store.
type Store struct {
	db   *sqlitex.Store   // Writer is one connection: every write
	keep retention.Tiered // Options.Tiered with its defaults

	stmts map[stmtKey]*sql.Stmt // prepared on the writer; read-only after Open
	reads map[string]*sql.Stmt  // prepared on the read pool, by query; read-only after Open

	pruner *retention.Pruner // nil when the store prunes nothing
}

// Open opens (creating if needed) the SQLite database at path and brings its
// schema up to date.
func Open(ctx context.Context, path string, opts Options) (*Store, error) {
	db, err := sqlitex.OpenStore(ctx, path, opts.Settings, sqlitex.Options{
		Synchronous:      "FULL",
		CacheSizeKiB:     32768, // 32 MiB per connection
		MmapBytes:        268435456,
		JournalSizeLimit: 67108864,
		ImmediateWrites:  true,
		Migrations:       migrations,
		MigrationsDir:    "migrations",
	}, "retention", opts.Retention.String(), "rollup_retention", opts.RollupRetention.String())
	if err != nil {
		return nil, fmt.Errorf("sqlitestore: %w", err)
	}
	s := &Store{db: db, keep: opts.WithDefaults(defaultPruneEvery), stmts: map[stmtKey]*sql.Stmt{}, reads: map[string]*sql.Stmt{}}
	if err := s.prepare(ctx); err != nil {
		s.Close()
		return nil, wrapErr("sqlitestore: open "+path, err)
	}
	s.pruner = s.keep.Start(db.Log, func(ctx context.Context) (int64, int64, error) {
		n, err := s.Prune(ctx)
		return 0, n, err
	})
	return s, nil
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
			st, err := s.db.Writer.PrepareContext(ctx, u.sql(k))
			if err != nil {
				return fmt.Errorf("prepare %s: %w", u.name, err)
			}
			s.stmts[stmtKey{u.name, k}] = st
		}
	}
	for _, q := range readQueries() {
		st, err := s.db.Readers.PrepareContext(ctx, q)
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
func (s *Store) Ping(ctx context.Context) error { return s.db.Ping(ctx, "sqlitestore: ping") }

// Close stops the pruner and closes the database. Calling it again returns the
// first result.
func (s *Store) Close() error {
	return s.db.Close("sqlitestore: close", func() error {
		s.pruner.Stop()
		for _, st := range s.stmts {
			_ = st.Close()
		}
		for _, st := range s.reads {
			_ = st.Close()
		}
		return nil
	})
}

// wrapErr prefixes err with op and marks the errors a caller should retry later
// (locks held too long, I/O failures, a full disk, a closed database) as
// room.ErrUnavailable.
func wrapErr(op string, err error) error { return sqlitex.Wrap(op, err) }

// isConstraint reports whether err is a constraint violation (a duplicate key).
func isConstraint(err error) bool {
	var se *sqlite.Error
	return errors.As(err, &se) && se.Code()&0xff == sqlite3.SQLITE_CONSTRAINT
}
