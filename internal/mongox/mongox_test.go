package mongox_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/atrium-iot/atrium/internal/apperr"
	"github.com/atrium-iot/atrium/internal/mongox"
	"github.com/atrium-iot/atrium/internal/mongox/mongotest"
)

func TestURL(t *testing.T) {
	tests := []struct {
		in     string
		isURL  bool
		redact string
	}{
		{"mongodb://127.0.0.1:27017/", true, "mongodb://127.0.0.1:27017/"},
		{"mongodb://u:secret@h:27017/?appName=x", true, "mongodb://u:xxxxx@h:27017/?appName=x"},
		{"mongodb+srv://cluster.example/", true, "mongodb+srv://cluster.example/"},
		{"sqlite:///var/lib/atrium", false, "sqlite:///var/lib/atrium"},
	}
	for _, tc := range tests {
		t.Run(tc.in, func(t *testing.T) {
			if got := mongox.IsURL(tc.in); got != tc.isURL {
				t.Errorf("IsURL = %v, want %v", got, tc.isURL)
			}
			if got := mongox.Redact(tc.in); got != tc.redact {
				t.Errorf("Redact = %q, want %q", got, tc.redact)
			}
		})
	}
}

func TestConnectFailures(t *testing.T) {
	tests := []struct {
		name        string
		url         string
		unavailable bool
	}{
		{"not a mongodb URL", "postgres://127.0.0.1/", false},
		{"nothing listening", "mongodb://127.0.0.1:1/", true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := mongox.Connect(t.Context(), tc.url, mongox.ConnectOptions{Timeout: 500 * time.Millisecond})
			if err == nil {
				t.Fatal("Connect succeeded")
			}
			if got := errors.Is(err, apperr.ErrUnavailable); got != tc.unavailable {
				t.Errorf("Connect: %v; unavailable %v, want %v", err, got, tc.unavailable)
			}
		})
	}
}

func TestServerHelpers(t *testing.T) {
	c := mongotest.Client(t)
	ctx := t.Context()
	coll := c.Database(mongotest.Database(t, c, "mongox")).Collection("c")
	ix := mongox.Index{Name: "k", Keys: []string{"k", "-n"}, Unique: true}
	for i := range 2 { // the second call finds the index and sends nothing
		if err := mongox.EnsureIndexes(ctx, coll, ix); err != nil {
			t.Fatalf("EnsureIndexes #%d: %v", i+1, err)
		}
	}
	t.Run("duplicates of an unordered insert", func(t *testing.T) {
		docs := []any{bson.M{"k": "a", "n": 1}, bson.M{"k": "a", "n": 1}, bson.M{"k": "b", "n": 1}, bson.M{"k": "b", "n": 1}}
		_, err := coll.InsertMany(ctx, docs, options.InsertMany().SetOrdered(false))
		dups, other := mongox.Duplicates(err)
		if other != nil || len(dups) != 2 || dups[0] != 1 || dups[1] != 3 {
			t.Fatalf("Duplicates = %v, %v; want [1 3]", dups, other)
		}
		if !mongox.IsDuplicate(err) {
			t.Error("IsDuplicate = false")
		}
	})
	t.Run("find all", func(t *testing.T) {
		type doc struct {
			K string `bson:"k"`
			N int    `bson:"n"`
		}
		docs, err := mongox.FindAll[doc](ctx, coll, "op", bson.D{}, options.Find().SetSort(bson.D{{Key: "k", Value: -1}}))
		if err != nil || len(docs) != 2 || docs[0] != (doc{"b", 1}) || docs[1] != (doc{"a", 1}) {
			t.Fatalf("FindAll = %+v, %v; want b then a", docs, err)
		}
		_, err = mongox.FindAll[doc](ctx, coll, "op", bson.D{{Key: "$bad", Value: 1}})
		if err == nil || !strings.HasPrefix(err.Error(), "op: ") {
			t.Errorf("FindAll with a bad filter = %v, want an error prefixed op", err)
		}
	})
	t.Run("find one", func(t *testing.T) {
		var d struct {
			N int `bson:"n"`
		}
		found, err := mongox.FindOne(ctx, coll, "op", bson.D{{Key: "k", Value: "b"}}, &d)
		if err != nil || !found || d.N != 1 {
			t.Fatalf("FindOne of b = %v, %+v, %v; want found with n 1", found, d, err)
		}
		found, err = mongox.FindOne(ctx, coll, "op", bson.D{{Key: "k", Value: "a"}}, nil)
		if err != nil || !found {
			t.Errorf("FindOne of a with no document = %v, %v; want found", found, err)
		}
		found, err = mongox.FindOne(ctx, coll, "op", bson.D{{Key: "k", Value: "none"}}, &d)
		if err != nil || found {
			t.Errorf("FindOne of none = %v, %v; want not found and no error", found, err)
		}
		found, err = mongox.FindOne(ctx, coll, "op", bson.D{{Key: "$bad", Value: 1}}, nil)
		if found || err == nil || !strings.HasPrefix(err.Error(), "op: ") {
			t.Errorf("FindOne with a bad filter = %v, %v; want an error prefixed op", found, err)
		}
	})
	t.Run("chunked bulk write", func(t *testing.T) {
		var models []mongo.WriteModel
		for i := range 3*mongox.BulkChunk + 1 {
			models = append(models, mongo.NewInsertOneModel().SetDocument(bson.M{"k": "bulk", "n": i % (2 * mongox.BulkChunk)}))
		}
		dups, err := mongox.BulkWrite(ctx, coll, models, false)
		if err != nil || len(dups) != mongox.BulkChunk+1 || dups[0] != 2*mongox.BulkChunk {
			t.Fatalf("BulkWrite: dups %v, err %v; want %d from %d", dups, err, mongox.BulkChunk+1, 2*mongox.BulkChunk)
		}
	})
	t.Run("sequence", func(t *testing.T) {
		for want := int64(1); want <= 3; want++ {
			n, err := mongox.Next(ctx, coll, "seq")
			if err != nil || n != want {
				t.Fatalf("Next = %d, %v; want %d", n, err, want)
			}
		}
	})
	t.Run("probe", func(t *testing.T) {
		s, err := mongox.Probe(ctx, c)
		if err != nil || s.Version == "" || s.TTL == s.FerretDB || s.AtomicUpdates == s.FerretDB {
			t.Fatalf("Probe = %+v, %v", s, err)
		}
	})
}
