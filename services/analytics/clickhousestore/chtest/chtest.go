// Package chtest gives the ClickHouse adapter's integration tests and benchmarks
// their server: the one ATRIUM_TEST_CLICKHOUSE_URL names (e.g.
// clickhouse://127.0.0.1:9000/analytics_test). Without it they skip, unless
// ATRIUM_REQUIRE_INTEGRATION=1 makes that a failure.
package chtest

import (
	"testing"

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
