// Package chtest gives the ClickHouse adapter's integration tests and benchmarks
// their server: the one ATRIUM_TEST_CLICKHOUSE_URL names (e.g.
// clickhouse://127.0.0.1:9000/analytics_test). Without it they skip, unless
// ATRIUM_REQUIRE_INTEGRATION=1 makes that a failure.
package chtest

import (
	"os"
	"testing"
)

// EnvURL is the environment variable naming the test server.
const EnvURL = "ATRIUM_TEST_CLICKHOUSE_URL"

// URL returns the test server's URL, skipping tb when there is none (failing it
// when ATRIUM_REQUIRE_INTEGRATION=1).
func URL(tb testing.TB) string {
	tb.Helper()
	u := os.Getenv(EnvURL)
	if u == "" {
		if os.Getenv("ATRIUM_REQUIRE_INTEGRATION") == "1" {
			tb.Fatalf("%s is not set and ATRIUM_REQUIRE_INTEGRATION=1", EnvURL)
		}
		tb.Skipf("%s not set: skipping the ClickHouse integration test", EnvURL)
	}
	return u
}
