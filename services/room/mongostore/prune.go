package mongostore

import (
	"context"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/atrium-iot/atrium/internal/mongox"
)

// expiryIndex names the index on a bucket's start that retention uses: a TTL
// index on real MongoDB, a plain one for Prune's range deletes elsewhere.
const expiryIndex = "expiry"

// ensureExpiry gives a tier with a retention its expiry index (on MongoDB a TTL
// index that removes a bucket once all of its period is older than the
// retention; collMod updates one an earlier run made with another retention),
// and drops the index of a tier kept forever, so that a TTL index left by an
// earlier run stops expiring its buckets.
func (s *Store) ensureExpiry(ctx context.Context, t tier) error {
	if t.keep <= 0 {
		return s.dropExpiry(ctx, t)
	}
	return s.conn.EnsureExpiry(ctx, t.coll, mongox.Index{Name: expiryIndex, Keys: []string{"st"}}, t.keep+t.period)
}

func (s *Store) dropExpiry(ctx context.Context, t tier) error {
	cur, err := t.coll.Indexes().List(ctx)
	if err != nil {
		return mongox.Wrap("list indexes of "+t.name, err)
	}
	var specs []struct {
		Name string `bson:"name"`
	}
	if err := cur.All(ctx, &specs); err != nil {
		return mongox.Wrap("list indexes of "+t.name, err)
	}
	for _, sp := range specs {
		if sp.Name == expiryIndex {
			return mongox.Wrap("drop expiry index of "+t.name, t.coll.Indexes().DropOne(ctx, expiryIndex))
		}
	}
	return nil
}

// Prune deletes, now, the buckets past their tier's retention (a bucket goes
// once start + period <= now - retention) and returns how many it deleted.
// With TTL indexes (real MongoDB) the server also does this on its own.
func (s *Store) Prune(ctx context.Context) (int64, error) {
	if err := s.conn.Check("mongostore: prune"); err != nil {
		return 0, err
	}
	now := s.conn.Now()
	var total int64
	for _, t := range s.tiers {
		if t.keep <= 0 {
			continue
		}
		last := now.Add(-t.keep - t.period)
		res, err := t.coll.DeleteMany(ctx, bson.D{{Key: "st", Value: bson.D{{Key: "$lte", Value: last}}}})
		if err != nil {
			return total, mongox.Wrap("mongostore: prune "+t.name, err)
		}
		total += res.DeletedCount
	}
	return total, nil
}
