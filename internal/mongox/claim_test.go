package mongox_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/atrium-iot/atrium/internal/mongox"
	"github.com/atrium-iot/atrium/internal/mongox/mongotest"
)

type claimDoc struct {
	ID                 string `bson:"_id"`
	mongox.ClaimFields `bson:",inline"`
	Tag                string `bson:"tag"`
	Result             string `bson:"res,omitempty"`
}

func TestClaims(t *testing.T) {
	c := mongotest.Client(t)
	coll := c.Database(mongotest.Database(t, c, "claims")).Collection("claims")
	var mu sync.Mutex
	now := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	advance := func(d time.Duration) { mu.Lock(); now = now.Add(d); mu.Unlock() }
	claims := mongox.Claims{Coll: coll, Lease: time.Minute, Now: clock}
	doc := func(tag string) func(mongox.ClaimFields) claimDoc {
		return func(f mongox.ClaimFields) claimDoc { return claimDoc{ID: "w1", ClaimFields: f, Tag: tag} }
	}
	sameTag := func(tag string) func(claimDoc) error {
		return func(d claimDoc) error {
			if d.Tag != tag {
				return errors.New("another tag")
			}
			return nil
		}
	}
	ctx := t.Context()

	first, err := mongox.Claim(ctx, claims, "w1", doc("a"), sameTag("a"))
	if err != nil || first.Owner == "" || first.Resumed || first.Done != nil {
		t.Fatalf("first claim = %+v, %v; want an owner", first, err)
	}
	if _, err := mongox.Claim(ctx, claims, "w1", doc("b"), sameTag("b")); err == nil || err.Error() != "another tag" {
		t.Fatalf("claim failing check: err = %v, want check's error", err)
	}

	// A second claimer waits while the lease holds, then reads the work done.
	wctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	_, err = mongox.Claim(wctx, claims, "w1", doc("a"), nil)
	cancel()
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("claim while held: err = %v, want the context's deadline", err)
	}
	got := make(chan mongox.Claimed[claimDoc], 1)
	go func() {
		c, err := mongox.Claim(ctx, claims, "w1", doc("a"), nil)
		if err != nil {
			t.Error(err)
		}
		got <- c
	}()
	if ok, err := claims.Finish(ctx, "w1", first.Owner, bson.D{{Key: "res", Value: "r1"}}); !ok || err != nil {
		t.Fatalf("Finish by the owner = %v, %v", ok, err)
	}
	if c := <-got; c.Owner != "" || c.Done == nil || c.Done.Result != "r1" || c.Done.State != mongox.StateDone {
		t.Fatalf("claim after done = %+v, want the done document", c)
	}

	// A claim whose lease ran out is taken over, once; its owner can no longer finish.
	dead, err := mongox.Claim(ctx, claims, "w2", func(f mongox.ClaimFields) claimDoc { return claimDoc{ID: "w2", ClaimFields: f} }, nil)
	if err != nil {
		t.Fatal(err)
	}
	advance(2 * time.Minute)
	took, err := mongox.Claim(ctx, claims, "w2", func(f mongox.ClaimFields) claimDoc { return claimDoc{ID: "w2", ClaimFields: f} }, nil)
	if err != nil || !took.Resumed || took.Owner == "" || took.Owner == dead.Owner {
		t.Fatalf("claim after the lease = %+v, %v; want it taken over", took, err)
	}
	if ok, err := claims.Finish(ctx, "w2", dead.Owner, nil); ok || err != nil {
		t.Fatalf("Finish by the dead owner = %v, %v; want false", ok, err)
	}
	if ok, err := claims.Finish(ctx, "w2", took.Owner, nil); !ok || err != nil {
		t.Fatalf("Finish by the new owner = %v, %v", ok, err)
	}
}
