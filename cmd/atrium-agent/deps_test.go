package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// maxBinarySize bounds the shipped agent binary (CGO_ENABLED=0, -trimpath, -s -w):
// gateway boxes are small.
const maxBinarySize = 20_000_000

// goTool runs the go command in this package's directory and returns its stdout.
func goTool(t *testing.T, env []string, args ...string) string {
	t.Helper()
	cmd := exec.Command("go", args...)
	cmd.Env = append(os.Environ(), env...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go %s: %v\n%s", strings.Join(args, " "), err, stderr.String())
	}
	return string(out)
}

// TestNoServerDependencies keeps the cloud's database drivers, message-queue client
// and server-side packages out of the agent binary: it runs on small gateways and
// must stay pure Go and small.
func TestNoServerDependencies(t *testing.T) {
	deps := strings.Fields(goTool(t, []string{"CGO_ENABLED=0"}, "list", "-deps", "."))
	for _, must := range []string{
		"github.com/atrium-iot/atrium/agent",
		"github.com/atrium-iot/atrium/broker",
		"github.com/mochi-mqtt/server/v2",
		"go.etcd.io/bbolt",
	} {
		if !slices.Contains(deps, must) {
			t.Fatalf("go list -deps does not list %s: is this the agent? (%d packages)", must, len(deps))
		}
	}
	forbidden := []struct {
		name, prefix string
	}{
		{"SQLite driver", "modernc.org/sqlite"},
		{"SQLite's C runtime", "modernc.org/libc"},
		{"MongoDB driver", "go.mongodb.org/"},
		{"ClickHouse driver", "github.com/ClickHouse/"},
		{"RabbitMQ client", "github.com/rabbitmq/amqp091-go"},
		{"PostgreSQL driver (pgx)", "github.com/jackc/"},
		{"PostgreSQL driver (pq)", "github.com/lib/pq"},
		{"cloud services", "github.com/atrium-iot/atrium/services/"},
		{"API gateway", "github.com/atrium-iot/atrium/gateway"},
		{"cloud wiring", "github.com/atrium-iot/atrium/cloud"},
		{"AMQP bus adapter", "github.com/atrium-iot/atrium/internal/bus/amqpbus"},
	}
	for _, tt := range forbidden {
		t.Run(tt.name, func(t *testing.T) {
			for _, d := range deps {
				if d == tt.prefix || strings.HasPrefix(d, tt.prefix) {
					t.Errorf("atrium-agent links %s (%s)", d, tt.name)
				}
			}
		})
	}
}

// TestBinarySize builds the agent as it ships (pure Go: the build fails if a cgo
// dependency creeps in) and bounds its size.
func TestBinarySize(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "atrium-agent")
	goTool(t, []string{"CGO_ENABLED=0"}, "build", "-trimpath", "-ldflags=-s -w", "-o", bin, ".")
	fi, err := os.Stat(bin)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("atrium-agent: %d bytes (%.1f MB), limit %d", fi.Size(), float64(fi.Size())/1e6, maxBinarySize)
	if fi.Size() > maxBinarySize {
		t.Errorf("atrium-agent is %d bytes, over the %d-byte limit", fi.Size(), maxBinarySize)
	}
}
