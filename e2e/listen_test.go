package e2e

import (
	"net"
	"strings"
	"testing"

	"github.com/atrium-iot/atrium/internal/tlsx/tlsxtest"
)

// TestTakenPort runs each program with one of its listen addresses held by another
// listener (Mosquitto on :1883 is common on IoT machines): the program exits 1 with
// one line outside its log that names the address, the flag and its variable, and
// no stack trace.
func TestTakenPort(t *testing.T) {
	skipShort(t)
	pair := tlsxtest.NewCA(t, "taken-port").Server(t, "127.0.0.1")
	cloudParts := []string{"sensor", "room", "analytics", "notification", "gateway"}
	type program struct {
		bin, name string
		args      func(t *testing.T) []string
		addrFlags []string // each one listen address, the others get 127.0.0.1:0
	}
	programs := []program{
		{bins.Atrium, "atrium", func(t *testing.T) []string {
			return []string{"-data-dir", t.TempDir(), "-log-format", "json"}
		}, cloudParts},
		{bins.Agent, "atrium-agent", func(t *testing.T) []string {
			return []string{"-spool", t.TempDir() + "/spool.db", "-allow-anonymous", "-log-format", "json",
				"-tls-cert", pair.CertFile, "-tls-key", pair.KeyFile}
		}, []string{"mqtt", "tls", "ws", "http"}},
	}
	for _, pg := range programs {
		for _, taken := range pg.addrFlags {
			t.Run(pg.name+"/"+taken, func(t *testing.T) {
				t.Parallel()
				held, err := net.Listen("tcp", "127.0.0.1:0")
				if err != nil {
					t.Fatal(err)
				}
				defer held.Close()
				addr := held.Addr().String()
				args := pg.args(t)
				for _, f := range pg.addrFlags {
					a := "127.0.0.1:0"
					if f == taken {
						a = addr
					}
					args = append(args, "-"+f+"-addr", a)
				}
				p := start(t, pg.name, pg.bin, args...)
				if code := exitCode(p.wait(t, startTimeout)); code != 1 {
					t.Fatalf("exit status %d, want 1", code)
				}
				want := pg.name + ": cannot listen on " + addr + " (-" + taken + "-addr, $ATRIUM_" +
					strings.ToUpper(taken) + "_ADDR): bind: address already in use"
				out := p.Log.String()
				var plain []string
				for l := range strings.Lines(out) {
					if !strings.HasPrefix(l, "{") {
						plain = append(plain, strings.TrimSuffix(l, "\n"))
					}
				}
				if len(plain) != 1 || plain[0] != want {
					t.Errorf("lines outside the log: %q\nwant the one line %q", plain, want)
				}
				for _, bad := range []string{"panic", "goroutine"} {
					if strings.Contains(out, bad) {
						t.Errorf("the output has %q", bad)
					}
				}
			})
		}
	}
}
