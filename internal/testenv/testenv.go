// Package testenv gates integration tests on what the machine has: an engine named
// by an environment variable (ATRIUM_TEST_AMQP_URL, ATRIUM_TEST_MONGODB_URL,
// ATRIUM_TEST_CLICKHOUSE_URL), a program on PATH (curl, mosquitto_pub), a browser,
// a loopback port nothing listens on.
// Without it a test skips, unless ATRIUM_REQUIRE_INTEGRATION=1 (as `make ci` sets)
// makes that a failure: in CI nothing is skipped silently. ProcessCPU reads what
// the process has used of the machine, for benchmarks.
package testenv

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"syscall"
	"testing"
	"time"
)

// RequireVar is the environment variable that turns every skip here into a failure.
const RequireVar = "ATRIUM_REQUIRE_INTEGRATION"

// Required reports whether integration tests must run (ATRIUM_REQUIRE_INTEGRATION=1).
func Required() bool { return os.Getenv(RequireVar) == "1" }

// Missing skips tb because what it needs is missing, or fails it when Required.
func Missing(tb testing.TB, format string, args ...any) {
	tb.Helper()
	msg := fmt.Sprintf(format, args...)
	if Required() {
		tb.Fatalf("%s, and %s=1", msg, RequireVar)
	}
	tb.Skip(msg)
}

// URL returns the value of the environment variable name, an engine's URL; when it
// is unset, tb is skipped, or fails when Required.
func URL(tb testing.TB, name string) string {
	tb.Helper()
	u := os.Getenv(name)
	if u == "" {
		Missing(tb, "%s is not set", name)
	}
	return u
}

// Tool returns the path of the program name on PATH; when there is none, tb is
// skipped, or fails when Required.
func Tool(tb testing.TB, name string) string {
	tb.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		Missing(tb, "%s is not installed (not found on PATH)", name)
	}
	return p
}

// FreeAddr is a loopback address that nothing listened on a moment ago: the
// address of a part that does not run, or of a server started later.
func FreeAddr(tb testing.TB) string {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// ProcessCPU is the user and system CPU time this process has used so far.
// Benchmarks report it per operation next to their rates: it is less sensitive
// than a rate to other load on the machine.
func ProcessCPU(tb testing.TB) time.Duration {
	tb.Helper()
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		tb.Fatalf("getrusage: %v", err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
