// Package mongox holds what Atrium's MongoDB store adapters share: connecting
// from a -store URL, naming each service's database, detecting what the server
// can do (real MongoDB or a wire-compatible server such as FerretDB), creating
// indexes, and mapping driver errors to the services' errors (E11000 → a
// duplicate, network trouble → apperr.ErrUnavailable).
//
// Each adapter keeps its own schema; this package only shares helpers.
package mongox

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"sync"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
	"go.mongodb.org/mongo-driver/v2/x/mongo/driver/topology"

	"github.com/atrium-iot/atrium/internal/apperr"
)

// Database names of the services on a shared server (DESIGN.md).
const (
	SensorDB       = "sensor_db"
	RoomDB         = "room_db"
	NotificationDB = "events_db"
)

// IsURL reports whether a -store value names a MongoDB server.
func IsURL(s string) bool {
	return strings.HasPrefix(s, "mongodb://") || strings.HasPrefix(s, "mongodb+srv://")
}

// Redact hides the password of a mongodb:// URL, for logs and errors.
func Redact(s string) string {
	u, err := url.Parse(s)
	if err != nil {
		return "mongodb://(unparsable)"
	}
	return u.Redacted()
}

// ConnectOptions tune Connect. The zero value is ready to use.
type ConnectOptions struct {
	// AppName is reported to the server when the URL sets no appName.
	AppName string
	// Timeout bounds server selection and the first ping; 0 means 10 s.
	Timeout time.Duration
}

// Connect opens a client on a mongodb:// (or mongodb+srv://) URL and pings the
// server. The URL's path is MongoDB's authentication database, not the database
// the data goes in: each service names its own (SensorDB, …).
func Connect(ctx context.Context, uri string, opts ConnectOptions) (*mongo.Client, error) {
	if !IsURL(uri) {
		return nil, fmt.Errorf("mongox: connect: %q is not a mongodb:// URL", Redact(uri))
	}
	timeout := opts.Timeout
	if timeout <= 0 {
		timeout = 10 * time.Second
	}
	co := options.Client().ApplyURI(uri)
	if co.AppName == nil && opts.AppName != "" {
		co.SetAppName(opts.AppName)
	}
	if co.ServerSelectionTimeout == nil {
		co.SetServerSelectionTimeout(timeout)
	}
	if co.ConnectTimeout == nil {
		co.SetConnectTimeout(timeout)
	}
	c, err := mongo.Connect(co)
	if err != nil {
		return nil, fmt.Errorf("mongox: connect %s: %w", Redact(uri), err)
	}
	pctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	if err := c.Ping(pctx, nil); err != nil {
		_ = c.Disconnect(context.WithoutCancel(ctx))
		return nil, Wrap("mongox: connect "+Redact(uri), err)
	}
	return c, nil
}

// Server is what a server can do beyond the common subset the adapters rely on.
type Server struct {
	// Version is the MongoDB version the server reports.
	Version string
	// FerretDB is set when the server is FerretDB (it reports a "ferretdb"
	// section in buildInfo). FerretDB 1.x lacks TTL indexes, time-series
	// collections, transactions and change streams.
	FerretDB bool
	// TTL is set when TTL indexes remove expired documents (real MongoDB).
	TTL bool
	// AtomicUpdates is set when an update of one document is atomic, as MongoDB
	// guarantees. FerretDB 1.24 on PostgreSQL reads, modifies and writes the
	// document back: two concurrent $inc of one document can lose one (measured:
	// 8 writers × 50 $inc gave 68, not 400), and so can $min/$max and conditional
	// updates. Adapters serialise their read-modify-write updates where it is not set.
	AtomicUpdates bool
}

// Probe asks the server who it is (buildInfo).
func Probe(ctx context.Context, c *mongo.Client) (Server, error) {
	var info bson.M
	if err := c.Database("admin").RunCommand(ctx, bson.D{{Key: "buildInfo", Value: 1}}).Decode(&info); err != nil {
		return Server{}, Wrap("mongox: buildInfo", err)
	}
	s := Server{}
	if v, ok := info["version"].(string); ok {
		s.Version = v
	}
	_, s.FerretDB = info["ferretdb"]
	if !s.FerretDB {
		_, s.FerretDB = info["ferretdbFeatures"]
	}
	s.TTL = !s.FerretDB
	s.AtomicUpdates = !s.FerretDB
	return s, nil
}

// Serializer runs read-modify-write updates one at a time when the server's
// single-document updates are not atomic (see Server.AtomicUpdates), and
// concurrently when they are. It only orders the writers of one process.
type Serializer struct {
	on bool
	mu sync.Mutex
}

// NewSerializer returns a Serializer for a server.
func NewSerializer(s Server) *Serializer { return &Serializer{on: !s.AtomicUpdates} }

// Do runs fn, alone among the Serializer's callers if it serialises.
func (z *Serializer) Do(fn func() error) error {
	if z.on {
		z.mu.Lock()
		defer z.mu.Unlock()
	}
	return fn()
}

// Next returns the next number of the sequence name, kept as {_id: name, n}
// in coll. Where updates are not atomic, the caller must serialise calls.
func Next(ctx context.Context, coll *mongo.Collection, name string) (int64, error) {
	var c struct {
		N int64 `bson:"n"`
	}
	var err error
	for attempt := 0; attempt < 3; attempt++ {
		err = coll.FindOneAndUpdate(ctx, bson.D{{Key: "_id", Value: name}},
			bson.D{{Key: "$inc", Value: bson.D{{Key: "n", Value: int64(1)}}}},
			options.FindOneAndUpdate().SetUpsert(true).SetReturnDocument(options.After)).Decode(&c)
		if !IsDuplicate(err) { // two first calls at once: the loser increments again
			break
		}
	}
	if err != nil {
		return 0, Wrap("mongox: next "+name, err)
	}
	return c.N, nil
}

// Index is one index of a collection: its key fields in order (a "-" prefix
// sorts that field descending) and whether it is unique.
type Index struct {
	Name   string
	Keys   []string
	Unique bool
	// ExpireAfter makes the index a TTL index on its single date field; only
	// used when the server supports TTL (see Server.TTL).
	ExpireAfter time.Duration
}

func (ix Index) model() mongo.IndexModel {
	keys := bson.D{}
	for _, k := range ix.Keys {
		dir := 1
		if name, ok := strings.CutPrefix(k, "-"); ok {
			k, dir = name, -1
		}
		keys = append(keys, bson.E{Key: k, Value: dir})
	}
	o := options.Index().SetName(ix.Name)
	if ix.Unique {
		o.SetUnique(true)
	}
	if ix.ExpireAfter > 0 {
		o.SetExpireAfterSeconds(int32(ix.ExpireAfter / time.Second))
	}
	return mongo.IndexModel{Keys: keys, Options: o}
}

// EnsureIndexes creates the indexes of a collection (creating the collection
// too) that it does not have yet, by name. An existing index of the same name is
// left as it is. (FerretDB 1.24 fails on createIndexes that repeats an existing
// compound index, so existing ones are not sent again.)
func EnsureIndexes(ctx context.Context, coll *mongo.Collection, ixs ...Index) error {
	if len(ixs) == 0 {
		return nil
	}
	have := map[string]bool{}
	cur, err := coll.Indexes().List(ctx)
	if err != nil {
		return Wrap("mongox: list indexes of "+coll.Name(), err)
	}
	var specs []struct {
		Name string `bson:"name"`
	}
	if err := cur.All(ctx, &specs); err != nil {
		return Wrap("mongox: list indexes of "+coll.Name(), err)
	}
	for _, sp := range specs {
		have[sp.Name] = true
	}
	var models []mongo.IndexModel
	for _, ix := range ixs {
		if !have[ix.Name] {
			models = append(models, ix.model())
		}
	}
	if len(models) == 0 {
		return nil
	}
	if _, err := coll.Indexes().CreateMany(ctx, models); err != nil {
		return Wrap("mongox: create indexes of "+coll.Name(), err)
	}
	return nil
}

// Indexes are the indexes one collection must have.
type Indexes struct {
	Coll *mongo.Collection
	Ixs  []Index
}

// EnsureAll ensures the indexes of each collection in turn (see
// EnsureIndexes), stopping at the first failure.
func EnsureAll(ctx context.Context, all ...Indexes) error {
	for _, x := range all {
		if err := EnsureIndexes(ctx, x.Coll, x.Ixs...); err != nil {
			return err
		}
	}
	return nil
}

// FindAll runs Find on coll with filter and opts and decodes every document
// it finds into a D; op prefixes its errors (see Wrap).
func FindAll[D any](ctx context.Context, coll *mongo.Collection, op string, filter any, opts ...options.Lister[options.FindOptions]) ([]D, error) {
	cur, err := coll.Find(ctx, filter, opts...)
	if err != nil {
		return nil, Wrap(op, err)
	}
	var docs []D
	if err := cur.All(ctx, &docs); err != nil {
		return nil, Wrap(op, err)
	}
	return docs, nil
}

// FindOne decodes into d the first document of coll that filter matches; a
// nil d only asks whether one matches. found is false, with a nil error, when
// none matches; op prefixes the other errors (see Wrap).
func FindOne(ctx context.Context, coll *mongo.Collection, op string, filter, d any, opts ...options.Lister[options.FindOneOptions]) (found bool, err error) {
	res := coll.FindOne(ctx, filter, opts...)
	if d == nil {
		err = res.Err()
	} else {
		err = res.Decode(d)
	}
	if errors.Is(err, mongo.ErrNoDocuments) {
		return false, nil
	}
	return err == nil, Wrap(op, err)
}

// IsDuplicate reports whether err is a duplicate key error (E11000).
func IsDuplicate(err error) bool {
	return err != nil && mongo.IsDuplicateKeyError(err)
}

// Duplicates splits the error of an unordered insert into the indexes (of the
// inserted documents) that failed as duplicate keys and any other error. A nil
// err means no duplicates and no error.
func Duplicates(err error) (dups []int, other error) {
	if err == nil {
		return nil, nil
	}
	var bwe mongo.BulkWriteException
	if !errors.As(err, &bwe) {
		return nil, err
	}
	if bwe.WriteConcernError != nil {
		return nil, err
	}
	for _, we := range bwe.WriteErrors {
		if we.HasErrorCode(11000) || we.HasErrorCode(11001) {
			dups = append(dups, we.Index)
			continue
		}
		return nil, err
	}
	return dups, nil
}

// BulkChunk is the most write models BulkWrite sends in one command.
// FerretDB 1.24 holds a PostgreSQL connection per statement of an update
// command until the command ends: one command of more statements than its pool
// (50) has connections never finishes, and hangs the server; several writing
// processes whose commands together need more than the pool deadlock it the same
// way. 8 lets four writers (sensor, two room replicas, notification) share it.
const BulkChunk = 8

// BulkWrite runs models in commands of at most BulkChunk models. Unordered, it
// runs every chunk and returns the indexes (into models) of the writes that
// failed as duplicate keys, and any other error; ordered, it stops at the first
// error.
func BulkWrite(ctx context.Context, coll *mongo.Collection, models []mongo.WriteModel, ordered bool) (dups []int, err error) {
	for start := 0; start < len(models); start += BulkChunk {
		end := min(start+BulkChunk, len(models))
		_, err := coll.BulkWrite(ctx, models[start:end], options.BulkWrite().SetOrdered(ordered))
		if err == nil {
			continue
		}
		if ordered {
			return nil, err
		}
		d, other := Duplicates(err)
		if other != nil {
			return nil, other
		}
		for _, i := range d {
			dups = append(dups, start+i)
		}
	}
	return dups, nil
}

// Transient reports whether err is worth retrying later: the server is
// unreachable, a connection broke, an operation timed out, or the client is
// closed.
func Transient(err error) bool {
	if err == nil {
		return false
	}
	if errors.Is(err, mongo.ErrClientDisconnected) || errors.Is(err, topology.ErrTopologyClosed) || mongo.IsNetworkError(err) || mongo.IsTimeout(err) {
		return true
	}
	var sse topology.ServerSelectionError
	if errors.As(err, &sse) {
		return true
	}
	var le mongo.LabeledError
	if errors.As(err, &le) && (le.HasErrorLabel("RetryableWriteError") || le.HasErrorLabel("NetworkError")) {
		return true
	}
	return false
}

// Wrap prefixes err with op and marks transient errors as
// apperr.ErrUnavailable (which every service's ErrUnavailable is).
func Wrap(op string, err error) error {
	if err == nil {
		return nil
	}
	if !errors.Is(err, apperr.ErrUnavailable) && !errors.Is(err, context.Canceled) && Transient(err) {
		return fmt.Errorf("%s: %w: %w", op, apperr.ErrUnavailable, err)
	}
	return fmt.Errorf("%s: %w", op, err)
}

// DropDatabases drops databases; tests use it to clean up after themselves.
func DropDatabases(ctx context.Context, c *mongo.Client, names ...string) error {
	var errs []error
	for _, n := range names {
		if err := c.Database(n).Drop(ctx); err != nil {
			errs = append(errs, fmt.Errorf("mongox: drop %s: %w", n, err))
		}
	}
	return errors.Join(errs...)
}
