package sqlitex

import (
	"cmp"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/atrium-iot/atrium/internal/apperr"
)

// ErrClosed is what the methods of a closed store return, wrapped with their
// operation. It is an apperr.ErrUnavailable.
var ErrClosed = fmt.Errorf("%w: store is closed", apperr.ErrUnavailable)

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

// Store is what every SQLite store holds of its database: the writer
// connection, the read pool, what it keeps of its settings, and whether it is
// closed, with the calls in flight that Close waits for.
type Store struct {
	Writer, Readers *sql.DB
	// Log is Settings.Logger, or a logger that discards everything.
	Log *slog.Logger
	// Options are the options the database was opened with (Settings applied).
	Options Options
	// Sync is the synchronous mode in effect, upper case.
	Sync string

	mu       sync.RWMutex // guards closed against inflight.Add
	closed   bool
	inflight sync.WaitGroup
	once     sync.Once
	err      error
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

// Closed reports whether Close was called.
func (s *Store) Closed() bool {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.closed
}

// Check returns ErrClosed, wrapped with op, once Close was called, and nil
// before.
func (s *Store) Check(op string) error {
	if s.Closed() {
		return fmt.Errorf("%s: %w", op, ErrClosed)
	}
	return nil
}

// Enter counts a call in flight, which Close waits for until Leave, and
// reports true; once Close was called it counts nothing and reports false.
func (s *Store) Enter() bool {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return false
	}
	s.inflight.Add(1)
	return true
}

// Leave ends a call counted by Enter.
func (s *Store) Leave() { s.inflight.Done() }

// Ping runs a trivial query on the read pool; op prefixes its errors (see Wrap).
func (s *Store) Ping(ctx context.Context, op string) error {
	if err := s.Check(op); err != nil {
		return err
	}
	var one int
	return Wrap(op, s.Readers.QueryRowContext(ctx, "SELECT 1").Scan(&one))
}

// Close marks the store closed, waits for the calls in flight (see Enter),
// runs stop (what the store runs or holds besides the two pools, such as its
// pruner, its writer and their statements; nil for nothing) and closes the
// read pool and the writer; op prefixes its error. Calling it again returns
// the first result.
func (s *Store) Close(op string, stop func() error) error {
	s.once.Do(func() {
		s.mu.Lock()
		s.closed = true
		s.mu.Unlock()
		s.inflight.Wait()
		var err error
		if stop != nil {
			err = stop()
		}
		if err = errors.Join(err, s.Readers.Close(), s.Writer.Close()); err != nil {
			s.err = fmt.Errorf("%s: %w", op, err)
		}
	})
	return s.err
}
