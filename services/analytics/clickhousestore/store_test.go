package clickhousestore_test

import (
	"context"
	"fmt"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/atrium-iot/atrium/services/analytics"
	"github.com/atrium-iot/atrium/services/analytics/clickhousestore"
	"github.com/atrium-iot/atrium/services/analytics/storetest"
)

// testURL is the server of the integration tests, from ATRIUM_TEST_CLICKHOUSE_URL
// (e.g. clickhouse://127.0.0.1:9000/analytics_test); the tests skip without it
// unless ATRIUM_REQUIRE_INTEGRATION=1.
func testURL(t testing.TB) string {
	t.Helper()
	u := os.Getenv("ATRIUM_TEST_CLICKHOUSE_URL")
	if u == "" {
		if os.Getenv("ATRIUM_REQUIRE_INTEGRATION") == "1" {
			t.Fatal("ATRIUM_TEST_CLICKHOUSE_URL is not set and ATRIUM_REQUIRE_INTEGRATION=1")
		}
		t.Skip("ATRIUM_TEST_CLICKHOUSE_URL is not set")
	}
	return u
}

// uniqueDB returns base's URL with a database name unique to this run and test.
func uniqueDB(t testing.TB, base, name string) string {
	t.Helper()
	u, err := url.Parse(base)
	if err != nil {
		t.Fatal(err)
	}
	db := strings.Trim(u.Path, "/")
	if db == "" {
		db = "analytics_test"
	}
	clean := strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '_' {
			return r
		}
		if r >= 'A' && r <= 'Z' {
			return r + 32
		}
		return '_'
	}, name)
	u.Path = "/" + fmt.Sprintf("%s_%d_%s", db, time.Now().UnixNano()%1e9, clean)
	return u.String()
}

func TestContract(t *testing.T) {
	base := testURL(t)
	urls := map[string]string{}
	storetest.Run(t, func(t *testing.T, name string) analytics.Store {
		u, ok := urls[name]
		if !ok {
			u = uniqueDB(t, base, name)
			urls[name] = u
		}
		s, err := clickhousestore.Open(t.Context(), u, clickhousestore.Options{})
		if err != nil {
			t.Fatal(err)
		}
		if !ok {
			t.Cleanup(func() {
				d, err := clickhousestore.Open(context.Background(), u, clickhousestore.Options{})
				if err != nil {
					t.Errorf("reopen to drop: %v", err)
					return
				}
				defer d.Close()
				if err := d.DropDatabase(context.Background()); err != nil {
					t.Errorf("drop database: %v", err)
				}
			})
		}
		return s
	})
}

func TestParseURL(t *testing.T) {
	tests := []struct {
		url, addr, db, user string
		ok                  bool
	}{
		{"clickhouse://127.0.0.1:9000/analytics_test", "127.0.0.1:9000", "analytics_test", "default", true},
		{"clickhouse://db.example:9440", "db.example:9440", clickhousestore.DefaultDatabase, "default", true},
		{"clickhouse://bob:secret@ch/x_1", "ch:9000", "x_1", "bob", true},
		{"clickhouse://ch/bad-name", "", "", "", false},
		{"http://ch:8123/x", "", "", "", false},
		{"clickhouse:///x", "", "", "", false},
	}
	for _, tc := range tests {
		t.Run(tc.url, func(t *testing.T) {
			o, db, err := clickhousestore.ParseURL(tc.url)
			if (err == nil) != tc.ok {
				t.Fatalf("ParseURL err = %v, want ok %v", err, tc.ok)
			}
			if !tc.ok {
				if strings.Contains(fmt.Sprint(err), "secret") {
					t.Errorf("error shows the password: %v", err)
				}
				return
			}
			if o.Addr[0] != tc.addr || db != tc.db || o.Auth.Username != tc.user {
				t.Errorf("ParseURL = %v %q %q, want %q %q %q", o.Addr, db, o.Auth.Username, tc.addr, tc.db, tc.user)
			}
		})
	}
}
