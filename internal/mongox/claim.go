package mongox

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
)

// States of a claimed document.
const (
	StateClaimed = "claimed" // someone works on it, until its lease runs out
	StateDone    = "done"    // the work is recorded
)

// ClaimFields are the fields of the claim protocol in a claimed document: its
// state, the token of its owner and when the owner's lease runs out. Embed them
// in the document with `bson:",inline"`.
type ClaimFields struct {
	State string    `bson:"st"`
	Owner string    `bson:"own"`
	Lease time.Time `bson:"lease"`
}

// Fields returns f; a document embedding ClaimFields is Claimable through it.
func (f ClaimFields) Fields() ClaimFields { return f }

// Claimable is a document that embeds ClaimFields.
type Claimable interface{ Fields() ClaimFields }

// Claims runs the claim/lease protocol that lets a piece of work, named by a
// unique id, be done once across processes without multi-document
// transactions: the first to insert the id's document owns it for a lease; the
// others wait until it is done and read what it recorded, or take it over
// once the lease ran out (its owner died). The work itself must be idempotent,
// since a taken-over claim redoes it.
type Claims struct {
	// Coll holds one document per id (its _id).
	Coll *mongo.Collection
	// Lease is how long a claim holds off the others.
	Lease time.Duration
	// Now is the clock of leases; nil means time.Now.
	Now func() time.Time
}

// Claimed is what Claim found.
type Claimed[D any] struct {
	// Owner is the token of the claim now held; "" when the id is done.
	Owner string
	// Resumed tells that the claim was taken over from an owner whose lease ran
	// out, which may have done part of the work.
	Resumed bool
	// Done is the document of an id done already (Owner "").
	Done *D
}

// Claim claims id by inserting doc(fields) (doc builds the id's document around
// the claim's fields). When the id has a document already, check is called on
// it each time it is read (an error ends the claim with that error); then a
// done document is returned as Done, a claim whose lease ran out is taken over,
// and any other claim is waited out, polling with a backoff up to 100 ms until
// ctx ends.
func Claim[D Claimable](ctx context.Context, c Claims, id string, doc func(ClaimFields) D, check func(D) error) (Claimed[D], error) {
	now := c.Now
	if now == nil {
		now = time.Now
	}
	owner := Token()
	fresh := doc(ClaimFields{State: StateClaimed, Owner: owner, Lease: now().Add(c.Lease)})
	_, err := c.Coll.InsertOne(ctx, fresh)
	if err == nil {
		return Claimed[D]{Owner: owner}, nil
	}
	if !IsDuplicate(err) {
		return Claimed[D]{}, Wrap("claim", err)
	}
	wait := 5 * time.Millisecond
	for {
		var cur D
		err := c.Coll.FindOne(ctx, bson.D{{Key: "_id", Value: id}}).Decode(&cur)
		switch {
		case errors.Is(err, mongo.ErrNoDocuments):
			// Deleted meanwhile: claim it again.
			if _, err := c.Coll.InsertOne(ctx, fresh); err == nil {
				return Claimed[D]{Owner: owner}, nil
			} else if !IsDuplicate(err) {
				return Claimed[D]{}, Wrap("claim", err)
			}
			continue
		case err != nil:
			return Claimed[D]{}, Wrap("read claim", err)
		}
		if check != nil {
			if err := check(cur); err != nil {
				return Claimed[D]{}, err
			}
		}
		f := cur.Fields()
		switch {
		case f.State == StateDone:
			return Claimed[D]{Done: &cur}, nil
		case now().After(f.Lease):
			// The owner died: take the claim over, unless another did.
			res, err := c.Coll.UpdateOne(ctx,
				bson.D{{Key: "_id", Value: id}, {Key: "st", Value: StateClaimed}, {Key: "own", Value: f.Owner}},
				bson.D{{Key: "$set", Value: bson.D{{Key: "own", Value: owner}, {Key: "lease", Value: now().Add(c.Lease)}}}})
			if err != nil {
				return Claimed[D]{}, Wrap("take over claim", err)
			}
			if res.MatchedCount == 1 {
				return Claimed[D]{Owner: owner, Resumed: true}, nil
			}
			continue
		}
		// Another owner is at work: wait until it is done.
		select {
		case <-ctx.Done():
			return Claimed[D]{}, fmt.Errorf("wait for a claim held by another: %w", ctx.Err())
		case <-time.After(wait):
		}
		wait = min(2*wait, 100*time.Millisecond)
	}
}

// Finish records the work on id done, with the fields of set, if owner still
// holds the claim. false means another took the claim over after owner's lease
// ran out (it redoes the work and records it).
func (c Claims) Finish(ctx context.Context, id, owner string, set bson.D) (bool, error) {
	res, err := c.Coll.UpdateOne(ctx,
		bson.D{{Key: "_id", Value: id}, {Key: "own", Value: owner}},
		bson.D{{Key: "$set", Value: append(bson.D{{Key: "st", Value: StateDone}}, set...)}})
	if err != nil {
		return false, Wrap("finish claim", err)
	}
	return res.MatchedCount == 1, nil
}

// Token returns a random token (24 hex digits), e.g. a claim's owner.
func Token() string {
	var b [12]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
