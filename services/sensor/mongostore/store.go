// Package mongostore keeps the sensor service's readings, registry, batch answers
// and event outbox in MongoDB (database sensor_db), with go.mongodb.org/mongo-driver/v2.
// It needs nothing beyond single-document atomicity, unique indexes and the
// $inc/$min/$max/$set/$addToSet/$push update operators, so it also runs on
// wire-compatible servers such as FerretDB 1.24 (no transactions, no TTL
// indexes, no time-series collections). Where the server is real MongoDB, raw
// readings expire through a TTL index instead of the store's own pruning.
//
// Collections (docs/storage.md has the full schema and the guarantees):
//
//	readings     one document per reading; unique index (s, t, y) is the identity
//	rollups_1h   bucket documents per sensor, type and hour: n, sum, min, max
//	sensors      the registry: one document per sensor, last values per type
//	batches      the answer of every batch id, and its claim while it is ingested
//	outbox       sensor.data.received bodies not yet published, by seq
//	counters     the outbox sequence
package mongostore

import (
	"cmp"
	"context"
	"fmt"
	"log/slog"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"

	"github.com/atrium-iot/atrium/internal/mongox"
	"github.com/atrium-iot/atrium/internal/retention"
	"github.com/atrium-iot/atrium/services/sensor"
)

var _ sensor.Store = (*Store)(nil)

// Options tune a Store. The zero value is ready to use.
type Options struct {
	// Logger receives the store's logs; nil discards them.
	Logger *slog.Logger
	// Database is the database the store uses; "" means sensor_db. Tests give
	// each run its own.
	Database string
	// Tiered: Retention is how long raw readings are kept, by reading
	// timestamp; RollupRetention is how long hourly rollups are kept.
	// PruneEvery matters only when the server has no TTL indexes, and defaults
	// to 10 minutes. Now is the clock of leases too.
	retention.Tiered
	// Lease is how long a batch claimed by an Ingest that then died (a crashed
	// process) blocks a retry of the same batch id before the retry takes it over
	// and completes it; 0 means 15 s.
	Lease time.Duration
}

// Store is the MongoDB implementation of sensor.Store.
type Store struct {
	conn *mongox.Store
	opts Options
	// serial orders the registry, rollup and sequence updates of concurrent
	// Ingest calls on servers without atomic document updates (FerretDB).
	serial *mongox.Serializer

	readings, rollups, sensors, batches, outbox, counters *mongo.Collection

	pruner *retention.Pruner // nil when the store prunes nothing
}

// Open connects to the server of a mongodb:// URL, creates the store's indexes
// and, when raw readings expire and the server has no TTL indexes, starts the
// pruner.
func Open(ctx context.Context, uri string, opts Options) (*Store, error) {
	opts.Database = cmp.Or(opts.Database, mongox.SensorDB)
	if opts.Lease <= 0 {
		opts.Lease = 15 * time.Second
	}
	opts.Tiered = opts.WithDefaults(10 * time.Minute)
	ms, err := mongox.OpenStore(ctx, uri, mongox.StoreOptions{AppName: "atrium-sensor", Database: opts.Database, Logger: opts.Logger, Now: opts.Now})
	if err != nil {
		return nil, fmt.Errorf("mongostore: open: %w", err)
	}
	db := ms.DB
	s := &Store{
		conn: ms, opts: opts, serial: mongox.NewSerializer(ms.Server),
		readings: db.Collection("readings"),
		rollups:  db.Collection("rollups_1h"),
		sensors:  db.Collection("sensors"),
		batches:  db.Collection("batches"),
		outbox:   db.Collection("outbox"),
		counters: db.Collection("counters"),
	}
	if err := s.ensureIndexes(ctx); err != nil {
		_ = ms.Close("", nil)
		return nil, fmt.Errorf("mongostore: open: %w", err)
	}
	if !s.conn.Server.TTL {
		// At open, then every PruneEvery, each prune bounded by PruneEvery.
		s.pruner = opts.Start(s.conn.Log, func(ctx context.Context) (int64, int64, error) {
			ctx, cancel := context.WithTimeout(ctx, s.opts.PruneEvery)
			defer cancel()
			return s.Prune(ctx)
		})
	}
	return s, nil
}

// ensureIndexes creates every index a query or a uniqueness rule needs.
func (s *Store) ensureIndexes(ctx context.Context) error {
	if err := mongox.EnsureAll(ctx,
		// The identity: dedupe on insert, and a sensor's readings in (t, y) order.
		mongox.Indexes{Coll: s.readings, Ixs: []mongox.Index{{Name: "identity", Keys: []string{"s", "t", "y"}, Unique: true}}},
		mongox.Indexes{Coll: s.rollups, Ixs: []mongox.Index{{Name: "sensor_type_hour", Keys: []string{"s", "y", "h"}}}},
		mongox.Indexes{Coll: s.sensors, Ixs: []mongox.Index{
			{Name: "room", Keys: []string{"room", "_id"}},
			{Name: "types", Keys: []string{"types", "_id"}},
			{Name: "last", Keys: []string{"last", "_id"}},
		}},
		mongox.Indexes{Coll: s.outbox, Ixs: []mongox.Index{{Name: "seq", Keys: []string{"seq"}}}},
	); err != nil {
		return err
	}
	// Expiry: a TTL index where the server has them, else an index the pruner's
	// range deletes use.
	for _, e := range []struct {
		coll  *mongo.Collection
		field string
		keep  time.Duration
	}{{s.readings, "t", s.opts.Retention}, {s.rollups, "h", s.opts.RollupRetention}} {
		if e.keep <= 0 {
			continue
		}
		if err := s.conn.EnsureExpiry(ctx, e.coll, mongox.Index{Name: "expiry", Keys: []string{e.field}}, e.keep); err != nil {
			return err
		}
	}
	return nil
}

// Prune deletes the raw readings older than Retention and the rollups older than
// RollupRetention (by reading time), now; it returns how many of each it deleted.
// With TTL indexes (real MongoDB) the server does this on its own.
func (s *Store) Prune(ctx context.Context) (readings, rollups int64, err error) {
	if err := s.conn.Check("mongostore: prune"); err != nil {
		return 0, 0, err
	}
	now := s.conn.Now()
	if s.opts.Retention > 0 {
		res, err := s.readings.DeleteMany(ctx, bson.D{{Key: "t", Value: bson.D{{Key: "$lt", Value: now.Add(-s.opts.Retention)}}}})
		if err != nil {
			return 0, 0, mongox.Wrap("mongostore: prune readings", err)
		}
		readings = res.DeletedCount
	}
	if s.opts.RollupRetention > 0 {
		// A bucket is expired once its whole hour is.
		res, err := s.rollups.DeleteMany(ctx, bson.D{{Key: "h", Value: bson.D{{Key: "$lt", Value: now.Add(-s.opts.RollupRetention - time.Hour)}}}})
		if err != nil {
			return readings, 0, mongox.Wrap("mongostore: prune rollups", err)
		}
		rollups = res.DeletedCount
	}
	return readings, rollups, nil
}

// Server is what the store found out about its server when it opened.
func (s *Store) Server() mongox.Server { return s.conn.Server }

// Ping runs the ping command.
func (s *Store) Ping(ctx context.Context) error { return s.conn.Ping(ctx, "mongostore: ping") }

// Close stops the pruner and disconnects. Calling it again returns the first result.
func (s *Store) Close() error { return s.conn.Close("mongostore: close", s.pruner.Stop) }
