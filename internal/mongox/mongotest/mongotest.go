// Package mongotest gives the MongoDB adapters' integration tests their server
// and their own databases. The server is the one ATRIUM_TEST_MONGODB_URL names
// (real MongoDB, or FerretDB: scripts/ferretdb.sh); without it the tests skip,
// unless ATRIUM_REQUIRE_INTEGRATION=1 makes that a failure.
package mongotest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"io"
	"strings"
	"sync"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"

	"github.com/atrium-iot/atrium/internal/mongox"
	"github.com/atrium-iot/atrium/internal/testenv"
)

// EnvURL is the environment variable naming the test server.
const EnvURL = "ATRIUM_TEST_MONGODB_URL"

// URL returns the test server's URL, skipping t when there is none (failing it
// when ATRIUM_REQUIRE_INTEGRATION=1).
func URL(t testing.TB) string {
	t.Helper()
	return testenv.URL(t, EnvURL)
}

// Client connects to the test server and disconnects when t ends.
func Client(t testing.TB) *mongo.Client {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := mongox.Connect(ctx, URL(t), mongox.ConnectOptions{AppName: "atrium-test"})
	if err != nil {
		t.Fatalf("connect to the test server: %v", err)
	}
	t.Cleanup(func() { _ = c.Disconnect(context.Background()) })
	return c
}

// Prefix returns a prefix unique to this test run ("t" + 10 hex digits + "_"),
// for database names.
func Prefix() string {
	var b [5]byte
	_, _ = rand.Read(b[:])
	return "t" + hex.EncodeToString(b[:]) + "_"
}

// Database returns a fresh database name made of a run-unique prefix and name
// (cut to MongoDB's 63-byte limit), and drops that database when t ends.
func Database(t testing.TB, c *mongo.Client, name string) string {
	t.Helper()
	db := Prefix() + strings.NewReplacer("/", "_", ".", "_", " ", "_", "$", "_", `"`, "_").Replace(name)
	if len(db) > 63 {
		db = db[:63]
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := mongox.DropDatabases(ctx, c, db); err != nil {
			t.Logf("drop test database: %v", err)
		}
	})
	return db
}

// Databases returns a function giving each store name of a contract suite its
// own database (Database, prefixed with prefix, dropped when the test that
// first asked for it ends); asked again for a name, it gives the same one, so
// that a store reopened under that name sees what was stored. It is safe for
// parallel tests.
func Databases(t testing.TB, prefix string) func(t testing.TB, name string) string {
	c := Client(t)
	var mu sync.Mutex
	dbs := map[string]string{}
	return func(t testing.TB, name string) string {
		t.Helper()
		mu.Lock()
		defer mu.Unlock()
		db, ok := dbs[name]
		if !ok {
			db = Database(t, c, prefix+name)
			dbs[name] = db
		}
		return db
	}
}

// Open opens a store with open on database db of the test server, failing t
// when it cannot, and closes it when t ends.
func Open[S io.Closer](t testing.TB, db string, open func(ctx context.Context, url, db string) (S, error)) S {
	t.Helper()
	s, err := open(t.Context(), URL(t), db)
	if err != nil {
		t.Fatalf("open %s: %v", db, err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// Opener returns the opener of a contract suite: each store name gets a store
// opened with open on its own database (see Databases, which prefix
// prefixes); a failure to open fails the test asking for the store. The suite
// closes the stores.
func Opener[S any](t testing.TB, prefix string, open func(ctx context.Context, url, db string) (S, error)) func(t *testing.T, name string) S {
	database := Databases(t, prefix)
	return func(t *testing.T, name string) S {
		t.Helper()
		db := database(t, name)
		s, err := open(t.Context(), URL(t), db)
		if err != nil {
			t.Fatalf("open %s: %v", db, err)
		}
		return s
	}
}

// Index returns the index of coll named name, nil when it has none, and its
// TTL (expireAfterSeconds), 0 when it has none.
func Index(t testing.TB, coll *mongo.Collection, name string) (spec bson.M, ttl time.Duration) {
	t.Helper()
	cur, err := coll.Indexes().List(t.Context())
	if err != nil {
		t.Fatalf("list indexes of %s: %v", coll.Name(), err)
	}
	var specs []bson.M
	if err := cur.All(t.Context(), &specs); err != nil {
		t.Fatalf("list indexes of %s: %v", coll.Name(), err)
	}
	for _, sp := range specs {
		if sp["name"] != name {
			continue
		}
		switch n := sp["expireAfterSeconds"].(type) {
		case int32:
			ttl = time.Duration(n) * time.Second
		case int64:
			ttl = time.Duration(n) * time.Second
		case float64:
			ttl = time.Duration(n * float64(time.Second))
		}
		return sp, ttl
	}
	return nil, 0
}
