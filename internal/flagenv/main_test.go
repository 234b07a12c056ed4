package flagenv_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/atrium-iot/atrium/internal/flagenv"
)

// mainChild is set in the environment of the test binary run again as a program.
const mainChild = "FLAGENV_TEST_MAIN"

// TestMainProgram runs this test binary again as a program whose main is
// flagenv.Main, and checks what it is given and how it ends.
func TestMainProgram(t *testing.T) {
	if os.Getenv(mainChild) != "" {
		flagenv.Main("prog", func(_ context.Context, args []string, getenv func(string) string, stdout, _ io.Writer) error {
			fmt.Fprintf(stdout, "args=%q env=%s\n", args, getenv(mainChild))
			if getenv(mainChild) == "fail" {
				return errors.New("it went wrong")
			}
			return nil
		})
		return
	}
	tests := []struct {
		mode     string
		exit     int
		stderr   string
		stdoutIs string
	}{
		{"ok", 0, "", `args=["-test.run=^TestMainProgram$" "x"] env=ok`},
		{"fail", 1, "prog: it went wrong\n", `args=["-test.run=^TestMainProgram$" "x"] env=fail`},
	}
	for _, tt := range tests {
		t.Run(tt.mode, func(t *testing.T) {
			cmd := exec.Command(os.Args[0], "-test.run=^TestMainProgram$", "x")
			cmd.Env = append(os.Environ(), mainChild+"="+tt.mode)
			var stdout, stderr bytes.Buffer
			cmd.Stdout, cmd.Stderr = &stdout, &stderr
			err := cmd.Run()
			code := 0
			var ee *exec.ExitError
			if errors.As(err, &ee) {
				code = ee.ExitCode()
			} else if err != nil {
				t.Fatal(err)
			}
			if code != tt.exit {
				t.Errorf("exit status %d, want %d (stderr %q)", code, tt.exit, stderr.String())
			}
			if stderr.String() != tt.stderr {
				t.Errorf("stderr %q, want %q", stderr.String(), tt.stderr)
			}
			if first, _, _ := strings.Cut(stdout.String(), "\n"); first != tt.stdoutIs {
				t.Errorf("stdout %q, want it to start with %q", stdout.String(), tt.stdoutIs)
			}
		})
	}
}
