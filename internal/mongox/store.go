package mongox

import (
	"cmp"
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"

	"github.com/atrium-iot/atrium/internal/apperr"
)

// ErrClosed is what the methods of a closed store return, wrapped with their
// operation. It is an apperr.ErrUnavailable.
var ErrClosed = fmt.Errorf("%w: store is closed", apperr.ErrUnavailable)

// StoreOptions say which database OpenStore opens, and for whom.
type StoreOptions struct {
	// AppName is reported to the server (see ConnectOptions).
	AppName string
	// Database is the database the store uses.
	Database string
	// Logger receives the store's logs; nil discards them.
	Logger *slog.Logger
	// Now is the store's clock; nil means time.Now.
	Now func() time.Time
}

// Store is what every MongoDB store holds of its server: the client, what the
// server can do, the store's database and logger, and whether it is closed.
type Store struct {
	Client *mongo.Client
	Server Server
	DB     *mongo.Database
	// Log is StoreOptions.Logger, or a logger that discards everything.
	Log *slog.Logger
	// Now is StoreOptions.Now, or time.Now.
	Now func() time.Time

	mu     sync.RWMutex
	closed bool
	once   sync.Once
	err    error
}

// OpenStore connects to the server of uri and probes it (see Connect and
// Probe). It logs "mongo store opened" at debug level with the database and
// what the server can do.
func OpenStore(ctx context.Context, uri string, o StoreOptions) (*Store, error) {
	c, err := Connect(ctx, uri, ConnectOptions{AppName: o.AppName})
	if err != nil {
		return nil, err
	}
	srv, err := Probe(ctx, c)
	if err != nil {
		_ = c.Disconnect(context.WithoutCancel(ctx))
		return nil, err
	}
	log := cmp.Or(o.Logger, slog.New(slog.DiscardHandler))
	log.Debug("mongo store opened", "database", o.Database, "ferretdb", srv.FerretDB, "ttl", srv.TTL, "version", srv.Version)
	now := o.Now
	if now == nil {
		now = time.Now
	}
	return &Store{Client: c, Server: srv, DB: c.Database(o.Database), Log: log, Now: now}, nil
}

// Check returns ErrClosed, wrapped with op, once Close was called, and nil
// before.
func (s *Store) Check(op string) error {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return fmt.Errorf("%s: %w", op, ErrClosed)
	}
	return nil
}

// Ping runs the ping command; op prefixes its errors.
func (s *Store) Ping(ctx context.Context, op string) error {
	if err := s.Check(op); err != nil {
		return err
	}
	return Wrap(op, s.Client.Ping(ctx, nil))
}

// Close marks the store closed, runs stop (what the store runs in the
// background, such as its pruner; nil for nothing) and disconnects, waiting
// at most 10 s; op prefixes its error. Calling it again returns the first
// result.
func (s *Store) Close(op string, stop func()) error {
	s.once.Do(func() {
		s.mu.Lock()
		s.closed = true
		s.mu.Unlock()
		if stop != nil {
			stop()
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := s.Client.Disconnect(ctx); err != nil {
			s.err = fmt.Errorf("%s: %w", op, err)
		}
	})
	return s.err
}

// EnsureExpiry gives coll its expiry index ix: where the server has TTL
// indexes, one that removes a document once ix's date field is older than ttl;
// elsewhere a plain one, for the store's own range deletes. See EnsureExpiry.
func (s *Store) EnsureExpiry(ctx context.Context, coll *mongo.Collection, ix Index, ttl time.Duration) error {
	if s.Server.TTL {
		ix.ExpireAfter = ttl
	}
	return EnsureExpiry(ctx, coll, ix)
}

// EnsureExpiry creates the expiry index ix of coll (see EnsureIndexes). A TTL
// index (ix.ExpireAfter set) made by an earlier run with another retention
// keeps its name: collMod sets its expireAfterSeconds.
func EnsureExpiry(ctx context.Context, coll *mongo.Collection, ix Index) error {
	if err := EnsureIndexes(ctx, coll, ix); err != nil || ix.ExpireAfter == 0 {
		return err
	}
	cmd := bson.D{{Key: "collMod", Value: coll.Name()}, {Key: "index", Value: bson.D{
		{Key: "name", Value: ix.Name}, {Key: "expireAfterSeconds", Value: int64(ix.ExpireAfter / time.Second)},
	}}}
	return Wrap("mongox: collMod "+coll.Name(), coll.Database().RunCommand(ctx, cmd).Err())
}
