package testenv_test

import (
	"net"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/atrium-iot/atrium/internal/testenv"
)

// TestGate runs the helpers in subtests whose outcome is read afterwards: a skip
// without ATRIUM_REQUIRE_INTEGRATION, a failure with it. The failing case runs in
// a child process, since a failed subtest fails its parent.
func TestGate(t *testing.T) {
	const unset = "ATRIUM_TEST_TESTENV_UNSET_URL"
	t.Setenv(unset, "")
	t.Setenv("ATRIUM_TEST_TESTENV_SET_URL", "amqp://x/")
	t.Setenv(testenv.RequireVar, "")

	var skipped bool
	t.Run("unset url skips", func(t *testing.T) {
		defer func() { skipped = t.Skipped() }()
		testenv.URL(t, unset)
		t.Error("URL returned without the variable")
	})
	if !skipped {
		t.Error("URL without its variable did not skip")
	}
	t.Run("set url", func(t *testing.T) {
		if u := testenv.URL(t, "ATRIUM_TEST_TESTENV_SET_URL"); u != "amqp://x/" {
			t.Errorf("URL = %q", u)
		}
	})
	t.Run("tool", func(t *testing.T) {
		want, err := exec.LookPath("go")
		if err != nil {
			t.Skip("no go on PATH")
		}
		if got := testenv.Tool(t, "go"); got != want {
			t.Errorf("Tool(go) = %q, want %q", got, want)
		}
	})
	t.Run("missing tool skips", func(t *testing.T) {
		defer func() { skipped = t.Skipped() }()
		testenv.Tool(t, "atrium-no-such-program")
	})
	if !skipped {
		t.Error("Tool without the program did not skip")
	}
}

// TestRequired: under ATRIUM_REQUIRE_INTEGRATION=1 the same gate fails the test, seen
// from a child `go test` process.
func TestRequired(t *testing.T) {
	if testing.Short() {
		t.Skip("runs go test in a child process")
	}
	cmd := exec.Command("go", "test", "-count=1", "-run", "^TestChildGate$", ".")
	cmd.Env = append(cmd.Environ(), testenv.RequireVar+"=1", "ATRIUM_TESTENV_CHILD=1")
	out, err := cmd.CombinedOutput()
	if err == nil {
		t.Fatalf("the gated test passed under %s=1:\n%s", testenv.RequireVar, out)
	}
	if !strings.Contains(string(out), "ATRIUM_TEST_TESTENV_UNSET_URL is not set, and ATRIUM_REQUIRE_INTEGRATION=1") {
		t.Errorf("the failure does not say why:\n%s", out)
	}
}

func TestChildGate(t *testing.T) {
	if !testenv.Required() || os.Getenv("ATRIUM_TESTENV_CHILD") != "1" {
		t.Skip("run by TestRequired")
	}
	testenv.URL(t, "ATRIUM_TEST_TESTENV_UNSET_URL")
}

func TestFreeAddr(t *testing.T) {
	addr := testenv.FreeAddr(t)
	if _, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
		t.Errorf("something listens on %s", addr)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatalf("listen on %s: %v", addr, err)
	}
	ln.Close()
}
