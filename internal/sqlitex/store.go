package sqlitex

import (
	"cmp"
	"context"
	"database/sql"
	"log/slog"
	"strings"
	"time"
)

// Settings are what the user of a store chooses about its SQLite file; the
// Options of every SQLite store embed them. The zero value is ready to use.
type Settings struct {
	// Logger receives the store's logs; nil discards them.
	Logger *slog.Logger
	// Synchronous is SQLite's synchronous mode: "FULL" (a committed transaction
	// survives a power cut), "NORMAL" (faster; the last commits may be lost on
	// power loss, never on a crash of the process), "OFF" (bulk loads only) or
	// "EXTRA", in any case; "" means the store's default, named in its package.
	Synchronous string
	// BusyTimeout is how long a statement waits for a lock held by another
	// process before failing with ErrUnavailable; 0 means 5 s.
	BusyTimeout time.Duration
	// Readers is the size of the read pool; 0 means twice the number of CPUs.
	Readers int
}

// Apply returns o, the store's own choices, with what s sets put over them:
// s.Synchronous over o.Synchronous (the store's default), s.BusyTimeout and
// s.Readers when not zero.
func (s Settings) Apply(o Options) Options {
	o.Synchronous = cmp.Or(s.Synchronous, o.Synchronous)
	o.BusyTimeout = cmp.Or(s.BusyTimeout, o.BusyTimeout)
	o.Readers = cmp.Or(s.Readers, o.Readers)
	return o
}

// Store is a store's database as OpenStore leaves it: the writer connection, the
// read pool, and what the store keeps of its settings.
type Store struct {
	Writer, Readers *sql.DB
	// Log is Settings.Logger, or a logger that discards everything.
	Log *slog.Logger
	// Options are the options the database was opened with (Settings applied).
	Options Options
	// Sync is the synchronous mode in effect, upper case.
	Sync string
}

// OpenStore opens the database at path for a store: Open with s applied over the
// store's own options o (pragmas, migrations, default synchronous mode). It logs
// "sqlite store opened" at debug level with the path, the synchronous mode and
// attrs (key/value pairs). Errors read "open ...", as those of Open.
func OpenStore(ctx context.Context, path string, s Settings, o Options, attrs ...any) (*Store, error) {
	o = s.Apply(o)
	w, r, err := Open(ctx, path, o)
	if err != nil {
		return nil, err
	}
	log := s.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	sync, _ := o.syncMode() // Open checked it
	log.Debug("sqlite store opened", append([]any{"path", path, "synchronous", sync}, attrs...)...)
	return &Store{Writer: w, Readers: r, Log: log, Options: o, Sync: strings.ToUpper(sync)}, nil
}
