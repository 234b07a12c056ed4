// Package sqlitestore keeps the sensor service's readings, registry, batch answers
// and event outbox in one SQLite file (modernc.org/sqlite, pure Go).
//
// One connection writes, a pool reads (WAL lets them run side by side). Concurrent
// Ingest calls are coalesced by a single writer goroutine (internal/groupcommit)
// into one transaction (group commit), so the cost of a durable commit is shared
// by every batch that waited for it. Batches are applied directly; should one
// fail, the group is applied again with each batch in its own savepoint, so
// that only it is lost.
// New readings go to a journal in arrival order, and are merged into the readings
// table in large sorted runs together with the registry rows of their batches
// (see journal.go).
//
// With Options.Retention set, raw readings older than it are deleted at open
// and then every minute, in bounded chunks that go through the same writer
// (see Prune).
package sqlitestore

import (
	"cmp"
	"context"
	"database/sql"
	"embed"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/atrium-iot/atrium/internal/retention"
	"github.com/atrium-iot/atrium/internal/sqlitex"
	"github.com/atrium-iot/atrium/services/sensor"
)

var _ sensor.Store = (*Store)(nil)

//go:embed migrations/*.sql
var migrations embed.FS

// Options tune a Store. The zero value is ready to use; the synchronous mode
// defaults to FULL (a committed batch survives a power cut).
type Options struct {
	sqlitex.Settings
	// Policy: Retention is how long raw readings are kept, by reading
	// timestamp. The store keeps no rollups (the MongoDB adapter's hourly
	// rollups have no SQLite counterpart), so its Policy is not Tiered.
	// PruneEvery defaults to every minute. Now is also the time of a batch
	// that has no ReceivedAt.
	retention.Policy

	walRestartFrames int           // 0 means defaultWALRestartFrames; tests lower it
	mergeIdle        time.Duration // 0 means defaultMergeIdle; < 0 never merges when idle (tests)
	mergeRows        int           // 0 means defaultMergeRows; tests lower it
	mergeStep        int           // 0 means defaultMergeStep; tests lower it
}

// Store is the SQLite implementation of sensor.Store.
type Store struct {
	db        *sqlitex.Store // Writer is one connection, owned by the writer goroutine
	now       func() time.Time
	retention time.Duration

	ckdb *sql.DB // one connection for the checkpointer

	// checkpoint is signalled after each commit: the WAL is copied into the
	// database file by another goroutine, not by the writer.
	checkpoint chan struct{}

	// j is the journal of readings not yet merged into the readings table
	// (see journal.go).
	j *journal

	w       *writer           // each request counted in flight (db.Enter) until answered
	quit    chan struct{}     // closed when the store closes
	ckDone  chan struct{}     // closed when the checkpointer has exited
	pruner  *retention.Pruner // nil when the store prunes nothing
	commits atomic.Int64      // group commits so far
	begun   atomic.Int64      // group transactions begun so far (a group has taken its first requests)
	// restartWAL asks the writer to rewind the WAL after its current group.
	restartWAL       atomic.Bool
	walRestartFrames int
	mergeIdle        time.Duration
	mergeRows        int
	mergeStep        int
}

// Open opens (creating if needed) the SQLite database at path, brings its schema
// up to date and starts the writer.
func Open(ctx context.Context, path string, opts Options) (*Store, error) {
	keep := opts.WithDefaults(defaultPruneEvery)
	db, err := sqlitex.OpenStore(ctx, path, opts.Settings, sqlitex.Options{
		Synchronous:      "FULL",
		ForeignKeys:      true,
		CacheSizeKiB:     65536, // 64 MiB per connection
		MmapBytes:        268435456,
		JournalSizeLimit: 67108864,
		ImmediateWrites:  true,
		WriterPragmas:    []string{"wal_autocheckpoint(0)"}, // the checkpointer does it
		Migrations:       migrations,
		MigrationsDir:    "migrations",
	}, "retention", opts.Retention.String())
	if err != nil {
		return nil, fmt.Errorf("sqlitestore: %w", err)
	}
	ckdb, err := sql.Open("sqlite", db.Options.DSN(path))
	if err != nil {
		_ = db.Close("sqlitestore: close", nil)
		return nil, fmt.Errorf("sqlitestore: open %s: %w", path, err)
	}
	ckdb.SetMaxOpenConns(1)
	closeAll := func() { _ = db.Close("sqlitestore: close", ckdb.Close) }
	if err := ckdb.PingContext(ctx); err != nil {
		closeAll()
		return nil, wrapErr("sqlitestore: open "+path, err)
	}

	s := &Store{
		db:               db,
		now:              keep.Now,
		retention:        keep.Retention,
		ckdb:             ckdb,
		checkpoint:       make(chan struct{}, 1),
		walRestartFrames: cmp.Or(opts.walRestartFrames, defaultWALRestartFrames),
		mergeIdle:        cmp.Or(opts.mergeIdle, defaultMergeIdle),
		mergeRows:        cmp.Or(opts.mergeRows, defaultMergeRows),
		mergeStep:        cmp.Or(opts.mergeStep, defaultMergeStep),
		j:                newJournal(),
		quit:             make(chan struct{}),
		ckDone:           make(chan struct{}),
	}
	w, err := newWriter(ctx, s)
	if err != nil {
		closeAll()
		return nil, wrapErr("sqlitestore: open "+path+": prepare", err)
	}
	if err := w.mergeLeftover(); err != nil {
		w.close()
		closeAll()
		return nil, wrapErr("sqlitestore: open "+path, err)
	}
	s.w = w
	w.start()
	go s.checkpointer()
	// No deadline on a prune: a large backlog takes as many chunks as it
	// needs, and Close ends it at its next chunk.
	s.pruner = keep.Start(db.Log, s.Prune)
	return s, nil
}

// checkpointInterval is the least time between two checkpoints.
const checkpointInterval = 100 * time.Millisecond

// defaultWALRestartFrames is the WAL length (in pages) past which the writer, between
// two groups, finishes the checkpoint and rewinds the WAL. Under steady writes a
// passive checkpoint never catches up with the writer, so without this the WAL
// would only grow.
const defaultWALRestartFrames = 8192

// checkpointer copies committed WAL frames into the database file after commits,
// at most once per checkpointInterval, on its own connection. A passive
// checkpoint never blocks the writer or the readers.
func (s *Store) checkpointer() {
	defer close(s.ckDone)
	tick := time.NewTimer(checkpointInterval)
	tick.Stop()
	defer tick.Stop()
	for {
		select {
		case <-s.quit:
			return
		case <-s.checkpoint:
		}
		var busy, frames, copied int
		err := s.ckdb.QueryRowContext(context.Background(), "PRAGMA wal_checkpoint(PASSIVE)").Scan(&busy, &frames, &copied)
		if err != nil {
			s.db.Log.Warn("sqlite checkpoint failed", "err", err)
		}
		if frames > s.walRestartFrames {
			s.restartWAL.Store(true)
		}
		tick.Reset(checkpointInterval)
		select {
		case <-s.quit:
			return
		case <-tick.C:
		}
	}
}

// Ping runs a trivial query on the read pool.
func (s *Store) Ping(ctx context.Context) error { return s.db.Ping(ctx, "sqlitestore: ping") }

// Close stops taking batches, waits for the writer to commit those in flight and
// closes the database. Calling it again returns the first result.
func (s *Store) Close() error {
	return s.db.Close("sqlitestore: close", func() error {
		s.pruner.Stop()
		s.w.stop()
		close(s.quit)
		<-s.ckDone
		return s.ckdb.Close()
	})
}

// wrapErr prefixes err with op and marks the errors a caller should retry later
// (locks held too long, I/O failures, a full disk, a closed database) as
// sensor.ErrUnavailable.
func wrapErr(op string, err error) error { return sqlitex.Wrap(op, err) }
