// Package mongostore keeps the room service's rooms, sensor placements, latest
// values and rollups in MongoDB (database room_db), with
// go.mongodb.org/mongo-driver/v2. It needs nothing beyond single-document
// atomicity, unique _id keys, compound indexes and the $inc/$min/$max/$set/
// $setOnInsert/$push/$pull update operators, so it also runs on wire-compatible
// servers such as FerretDB 1.24 (no transactions).
//
// Collections (docs/storage.md has the full schema and the guarantees):
//
//	rooms       one document per room
//	sensors     where each sensor is: assigned, or the room of its newest reading
//	latest      the newest reading per room, type and sensor
//	rollups_1m  bucket documents per room, type and minute: n, sum, min, max
//	rollups_5m  the same per five minutes
//	rollups_1h  the same per hour
//	applied     the batch ids applied (and the claim of one being applied)
//
// Retention: the minute buckets go after Options.Retention, the five-minute and
// hour buckets after Options.RollupRetention, through TTL indexes on real
// MongoDB and the store's own pruning elsewhere (FerretDB).
package mongostore

import (
	"cmp"
	"context"
	"fmt"
	"log/slog"
	"time"

	"go.mongodb.org/mongo-driver/v2/mongo"

	"github.com/atrium-iot/atrium/internal/mongox"
	"github.com/atrium-iot/atrium/internal/retention"
	"github.com/atrium-iot/atrium/services/room"
)

var _ room.Store = (*Store)(nil)

// Options tune a Store. The zero value is ready to use.
type Options struct {
	// Logger receives the store's logs; nil discards them.
	Logger *slog.Logger
	// Database is the database the store uses; "" means room_db. Tests give
	// each run its own.
	Database string
	// Lease is how long a batch claimed by an Apply that then died (a crashed
	// process) blocks a redelivery of the same batch id before the redelivery
	// takes it over and completes it; 0 means 15 s.
	Lease time.Duration
	// Tiered: Retention is how long the minute buckets (the history at 1m and
	// the window of the live metrics) are kept, by reading timestamp;
	// RollupRetention is how long the five-minute and hour buckets are kept.
	// PruneEvery matters only when the server has no TTL indexes, and defaults
	// to every minute. Now is the clock of leases too.
	retention.Tiered
}

// tier is one rollup collection and the period of its buckets.
type tier struct {
	name   string
	period time.Duration
	coll   *mongo.Collection
	keep   time.Duration // retention of its buckets; 0: forever
}

// Store is the MongoDB implementation of room.Store.
type Store struct {
	conn *mongox.Store
	opts Options
	// serial orders the read-modify-write updates (placements, latest values,
	// rollups, assignments) of concurrent calls on servers without atomic
	// document updates (FerretDB).
	serial *mongox.Serializer
	// shard names this process's rollup and latest-value documents: their ids
	// end in "|" + shard. Each document has one writer, so two replicas never
	// update one document, which FerretDB would not do atomically; readers
	// merge a bucket's documents.
	shard string

	rooms, sensors, latest, applied *mongo.Collection
	// tiers are the rollup collections, finest first.
	tiers []tier

	pruner *retention.Pruner // nil when the store prunes nothing
}

// Open connects to the server of a mongodb:// URL and creates the store's
// indexes.
func Open(ctx context.Context, uri string, opts Options) (*Store, error) {
	opts.Database = cmp.Or(opts.Database, mongox.RoomDB)
	if opts.Lease <= 0 {
		opts.Lease = 15 * time.Second
	}
	opts.Tiered = opts.WithDefaults(time.Minute)
	ms, err := mongox.OpenStore(ctx, uri, mongox.StoreOptions{AppName: "atrium-room", Database: opts.Database, Logger: opts.Logger, Now: opts.Now})
	if err != nil {
		return nil, fmt.Errorf("mongostore: open: %w", err)
	}
	db := ms.DB
	s := &Store{
		conn: ms, opts: opts, serial: mongox.NewSerializer(ms.Server),
		shard:   mongox.Token()[:8],
		rooms:   db.Collection("rooms"),
		sensors: db.Collection("sensors"),
		latest:  db.Collection("latest"),
		applied: db.Collection("applied"),
	}
	for _, t := range []struct {
		name   string
		period time.Duration
		keep   time.Duration
	}{{"rollups_1m", time.Minute, opts.Retention}, {"rollups_5m", 5 * time.Minute, opts.RollupRetention},
		{"rollups_1h", time.Hour, opts.RollupRetention}} {
		s.tiers = append(s.tiers, tier{name: t.name, period: t.period, coll: db.Collection(t.name), keep: max(t.keep, 0)})
	}
	if err := s.ensureIndexes(ctx); err != nil {
		_ = ms.Close("", nil)
		return nil, fmt.Errorf("mongostore: open: %w", err)
	}
	if !s.conn.Server.TTL {
		s.pruner = opts.Start(s.conn.Log, func(ctx context.Context) (int64, int64, error) {
			n, err := s.Prune(ctx)
			return 0, n, err
		})
	}
	return s, nil
}

// ensureIndexes creates every index a query needs (rooms are read by _id only).
func (s *Store) ensureIndexes(ctx context.Context) error {
	colls := []mongox.Indexes{
		// A room's sensors, by id; their count per room.
		{Coll: s.sensors, Ixs: []mongox.Index{{Name: "room", Keys: []string{"room", "_id"}}}},
		// A room's latest values; deleting a room's.
		{Coll: s.latest, Ixs: []mongox.Index{{Name: "room_type_sensor", Keys: []string{"r", "y", "s"}}}},
		// Forget: the ids applied before a time.
		{Coll: s.applied, Ixs: []mongox.Index{{Name: "at", Keys: []string{"at"}}}},
	}
	for _, t := range s.tiers {
		// History and the metrics window: a room's buckets of a type in a range.
		colls = append(colls, mongox.Indexes{Coll: t.coll, Ixs: []mongox.Index{{Name: "room_type_start", Keys: []string{"r", "y", "st"}}}})
	}
	if err := mongox.EnsureAll(ctx, colls...); err != nil {
		return err
	}
	for _, t := range s.tiers {
		if err := s.ensureExpiry(ctx, t); err != nil {
			return err
		}
	}
	return nil
}

// periods are the periods of the rollup tiers, finest first.
func (s *Store) periods() []time.Duration {
	out := make([]time.Duration, len(s.tiers))
	for i, t := range s.tiers {
		out[i] = t.period
	}
	return out
}

// Server is what the store found out about its server when it opened.
func (s *Store) Server() mongox.Server { return s.conn.Server }

// Ping runs the ping command.
func (s *Store) Ping(ctx context.Context) error { return s.conn.Ping(ctx, "mongostore: ping") }

// Close stops the pruner and disconnects. Calling it again returns the first
// result.
func (s *Store) Close() error { return s.conn.Close("mongostore: close", s.pruner.Stop) }
