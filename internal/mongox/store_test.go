package mongox_test

import (
	"errors"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/mongo"

	"github.com/atrium-iot/atrium/internal/apperr"
	"github.com/atrium-iot/atrium/internal/mongox"
	"github.com/atrium-iot/atrium/internal/mongox/mongotest"
)

func TestStore(t *testing.T) {
	url := mongotest.URL(t)
	db := mongotest.Database(t, mongotest.Client(t), "store")
	s, err := mongox.OpenStore(t.Context(), url, mongox.StoreOptions{AppName: "atrium-test", Database: db})
	if err != nil {
		t.Fatalf("OpenStore: %v", err)
	}
	if s.DB.Name() != db || s.Log == nil || s.Server.Version == "" {
		t.Fatalf("OpenStore = database %q, log %v, server %+v", s.DB.Name(), s.Log, s.Server)
	}
	if err := s.Check("op"); err != nil {
		t.Fatalf("Check while open: %v", err)
	}
	if err := s.Ping(t.Context(), "op"); err != nil {
		t.Fatalf("Ping while open: %v", err)
	}

	// An expiry index made again with another retention gets the new one.
	coll := s.DB.Collection("c")
	for _, keep := range []time.Duration{time.Hour, 2 * time.Hour} {
		ix := mongox.Index{Name: "expiry", Keys: []string{"t"}}
		if s.Server.TTL {
			ix.ExpireAfter = keep
		}
		if err := mongox.EnsureExpiry(t.Context(), coll, ix); err != nil {
			t.Fatalf("EnsureExpiry(%s): %v", keep, err)
		}
		spec, ttl := mongotest.Index(t, coll, "expiry")
		if spec == nil {
			t.Fatalf("no expiry index after EnsureExpiry(%s)", keep)
		}
		if ttl != ix.ExpireAfter {
			t.Errorf("expiry index TTL = %s, want %s", ttl, ix.ExpireAfter)
		}
	}

	// EnsureAll: every collection gets its indexes.
	a, b := s.DB.Collection("a"), s.DB.Collection("b")
	if err := mongox.EnsureAll(t.Context(),
		mongox.Indexes{Coll: a, Ixs: []mongox.Index{{Name: "x", Keys: []string{"x"}}, {Name: "y_x", Keys: []string{"y", "-x"}}}},
		mongox.Indexes{Coll: b, Ixs: []mongox.Index{{Name: "k", Keys: []string{"k"}, Unique: true}}},
	); err != nil {
		t.Fatalf("EnsureAll: %v", err)
	}
	for _, c := range []struct {
		coll *mongo.Collection
		name string
	}{{a, "x"}, {a, "y_x"}, {b, "k"}} {
		if spec, _ := mongotest.Index(t, c.coll, c.name); spec == nil {
			t.Errorf("no index %s of %s after EnsureAll", c.name, c.coll.Name())
		}
	}

	stopped := 0
	if err := s.Close("op", func() { stopped++ }); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := s.Close("op", func() { stopped++ }); err != nil || stopped != 1 {
		t.Fatalf("second Close: %v, stop ran %d times; want nil and once", err, stopped)
	}
	for name, err := range map[string]error{"Check": s.Check("op"), "Ping": s.Ping(t.Context(), "op")} {
		if !errors.Is(err, mongox.ErrClosed) || !errors.Is(err, apperr.ErrUnavailable) || err.Error() != "op: "+mongox.ErrClosed.Error() {
			t.Errorf("%s after Close = %v, want op: %v", name, err, mongox.ErrClosed)
		}
	}
}
