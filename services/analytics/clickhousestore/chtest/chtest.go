// Package chtest gives the ClickHouse adapter's integration tests and benchmarks
// their server: the one ATRIUM_TEST_CLICKHOUSE_URL names (e.g.
// clickhouse://127.0.0.1:9000/analytics_test). Without it they skip, unless
// ATRIUM_REQUIRE_INTEGRATION=1 makes that a failure.
package chtest

import (
	"fmt"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/atrium-iot/atrium/internal/testenv"
)

// EnvURL is the environment variable naming the test server.
const EnvURL = "ATRIUM_TEST_CLICKHOUSE_URL"

// URL returns the test server's URL, skipping tb when there is none (failing it
// when ATRIUM_REQUIRE_INTEGRATION=1).
func URL(tb testing.TB) string {
	tb.Helper()
	return testenv.URL(tb, EnvURL)
}

// DatabaseURL returns the test server's URL (see URL) with a database name of
// its own, made of the URL's database (analytics_test when it names none), a
// number unique to this run and name in lower case, with anything but letters,
// digits and _ made _.
func DatabaseURL(tb testing.TB, name string) string {
	tb.Helper()
	u, err := url.Parse(URL(tb))
	if err != nil {
		tb.Fatal(err)
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
