package e2e

import (
	"os"
	"os/exec"
	"regexp"
	"strings"
	"testing"

	"github.com/atrium-iot/atrium/internal/flagenv"
)

// TestUsage reads -h of every program and subcommand: each flag's argument is the
// name of its type. A usage string with a `quoted` word makes that word the argument
// name in Go's flag package (-credentials atrium-agent devices add).
func TestUsage(t *testing.T) {
	skipShort(t)
	flagLine := regexp.MustCompile(`^  -([a-z0-9.-]+)(?: (.*))?$`)
	argNames := map[string]bool{"": true, "string": true, "int": true, "uint": true, "float": true, "duration": true, "value": true}
	tests := []struct {
		bin  *string
		args []string
	}{
		{&bins.Atrium, []string{"-h"}},
		{&bins.Atrium, []string{"keys", "add", "-h"}},
		{&bins.Agent, []string{"-h"}},
		{&bins.Agent, []string{"devices", "add", "-h"}},
		{&bins.Agent, []string{"spool", "dead-letters", "-h"}},
		{&bins.Sim, []string{"-h"}},
	}
	for _, tc := range tests {
		name := strings.Join(append([]string{(*tc.bin)[strings.LastIndex(*tc.bin, "/")+1:]}, tc.args...), " ")
		t.Run(name, func(t *testing.T) {
			cmd := exec.Command(*tc.bin, tc.args...)
			cmd.Env = flagenv.Strip(os.Environ())
			out, err := cmd.CombinedOutput()
			if err != nil {
				t.Fatalf("%s: %v\n%s", name, err, out)
			}
			flags := 0
			for l := range strings.Lines(string(out)) {
				m := flagLine.FindStringSubmatch(strings.TrimSuffix(l, "\n"))
				if m == nil {
					continue
				}
				flags++
				if !argNames[m[2]] {
					t.Errorf("-%s shows the argument %q: a usage string with backquotes?", m[1], m[2])
				}
			}
			if flags == 0 {
				t.Fatalf("%s lists no flags:\n%s", name, out)
			}
		})
	}
}
