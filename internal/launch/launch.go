// Package launch builds Atrium's three programs and runs them as child processes
// whose slog JSON lines on standard error can be waited for: what the end-to-end
// tests and the measurement tools (tools/occupancy-eval) share.
package launch

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/atrium-iot/atrium/internal/flagenv"
	"github.com/atrium-iot/atrium/internal/logging"
)

// Programs are the paths of the three programs.
type Programs struct{ Atrium, Agent, Sim string }

// In is the programs as Build writes them into dir.
func In(dir string) Programs {
	return Programs{
		Atrium: filepath.Join(dir, "atrium"),
		Agent:  filepath.Join(dir, "atrium-agent"),
		Sim:    filepath.Join(dir, "atrium-sim"),
	}
}

// Build compiles cmd/atrium, cmd/atrium-agent and cmd/atrium-sim into dir with
// the go command on PATH, in the module that holds the working directory; flags
// (such as -race) go before the packages. ATRIUM_ variables are not passed on.
func Build(ctx context.Context, dir string, flags ...string) (Programs, error) {
	if err := Compile(ctx, dir, nil, flags, "./cmd/atrium", "./cmd/atrium-agent", "./cmd/atrium-sim"); err != nil {
		return Programs{}, err
	}
	return In(dir), nil
}

// Compile builds pkgs, paths relative to the root of the module that holds the
// working directory (such as ./cmd/atrium-agent), into dir, each binary named for
// its package's directory, with the go command on PATH. env ("CGO_ENABLED=0") is
// added to the go command's environment, without this process's ATRIUM_
// variables; flags (such as -race or -trimpath) go before the packages.
func Compile(ctx context.Context, dir string, env, flags []string, pkgs ...string) error {
	gobin, err := exec.LookPath("go")
	if err != nil {
		return err
	}
	out, err := exec.CommandContext(ctx, gobin, "env", "GOMOD").Output()
	if err != nil {
		return fmt.Errorf("go env GOMOD: %w", err)
	}
	mod := strings.TrimSpace(string(out))
	if mod == "" || mod == os.DevNull {
		return errors.New("not inside the atrium module")
	}
	args := append([]string{"build", "-o", dir + string(filepath.Separator)}, flags...)
	cmd := exec.CommandContext(ctx, gobin, append(args, pkgs...)...)
	cmd.Dir = filepath.Dir(mod)
	cmd.Env = append(flagenv.Strip(os.Environ()), env...)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("build: %w\n%s", err, out)
	}
	return nil
}

// Proc is a running program: its standard output kept whole, its standard error
// kept as a Log.
type Proc struct {
	Cmd    *exec.Cmd
	Stdout logging.Buffer
	Log    *Log
	done   chan struct{}
	err    error // Wait's result, set before done closes
}

// Start runs bin with args, without the ATRIUM_ variables of this process's
// environment (a program reads only the flags it is given).
func Start(bin string, args ...string) (*Proc, error) {
	return StartEnv(nil, bin, args...)
}

// StartEnv is Start with env ("KEY=value" entries, such as the Go runtime's
// GOMEMLIMIT) added to the environment.
func StartEnv(env []string, bin string, args ...string) (*Proc, error) {
	p := &Proc{Cmd: exec.Command(bin, args...), Log: NewLog(), done: make(chan struct{})}
	p.Cmd.Env = append(flagenv.Strip(os.Environ()), env...)
	p.Cmd.Stdout = &p.Stdout
	p.Cmd.Stderr = p.Log
	if err := p.Cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", filepath.Base(bin), err)
	}
	go func() {
		p.err = p.Cmd.Wait()
		close(p.done)
	}()
	return p, nil
}

// Done is closed when the program has exited.
func (p *Proc) Done() <-chan struct{} { return p.done }

// Err is the program's Wait error, once Done is closed.
func (p *Proc) Err() error {
	<-p.done
	return p.err
}

// Exited reports whether the program has ended.
func (p *Proc) Exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// Stop ends the program if it still runs: SIGINT, then SIGKILL after grace. It
// returns the Wait error of a program it stopped, and nil for one that had
// already exited (whoever waited for that one checked it).
func (p *Proc) Stop(grace time.Duration) error {
	if p.Exited() {
		return nil
	}
	_ = p.Cmd.Process.Signal(os.Interrupt)
	select {
	case <-p.done:
		return p.err
	case <-time.After(grace):
		_ = p.Cmd.Process.Kill()
		<-p.done
		return fmt.Errorf("still running %s after SIGINT, killed", grace)
	}
}

// ErrExited is Await's error when the program ended without logging the line.
var ErrExited = errors.New("the program exited")

// Await waits for the first log line that match accepts, until the program
// exits (ErrExited) or ctx ends.
func (p *Proc) Await(ctx context.Context, match func(line map[string]any) bool) (map[string]any, error) {
	for {
		l, changed := p.Log.Find(match)
		if l != nil {
			return l, nil
		}
		select {
		case <-changed:
		case <-p.done:
			// Wait returns once standard error is copied: every line is in.
			if l, _ := p.Log.Find(match); l != nil {
				return l, nil
			}
			return nil, ErrExited
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// Message matches a log line with message msg and, for each key, value pair of
// kv, that value.
func Message(msg string, kv ...string) func(line map[string]any) bool {
	return func(l map[string]any) bool {
		if l["msg"] != msg {
			return false
		}
		for i := 0; i+1 < len(kv); i += 2 {
			if l[kv[i]] != kv[i+1] {
				return false
			}
		}
		return true
	}
}

// Log keeps what a program writes to standard error, whole and as slog JSON
// lines, and wakes whoever waits for a line.
type Log struct {
	mu      sync.Mutex
	buf     bytes.Buffer
	lines   []map[string]any
	partial []byte
	changed chan struct{}
}

// NewLog returns an empty Log.
func NewLog() *Log { return &Log{changed: make(chan struct{})} }

// Write keeps p; every complete line that is a JSON object becomes a line Find
// sees.
func (s *Log) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.buf.Write(p)
	s.partial = append(s.partial, p...)
	for {
		i := bytes.IndexByte(s.partial, '\n')
		if i < 0 {
			break
		}
		var m map[string]any
		if json.Unmarshal(s.partial[:i], &m) == nil {
			s.lines = append(s.lines, m)
		}
		s.partial = s.partial[i+1:]
	}
	close(s.changed)
	s.changed = make(chan struct{})
	return len(p), nil
}

// String is everything written so far.
func (s *Log) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.buf.String()
}

// Find returns the first line match accepts; when there is none, it returns a
// channel closed at the next Write.
func (s *Log) Find(match func(line map[string]any) bool) (map[string]any, <-chan struct{}) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, l := range s.lines {
		if match(l) {
			return l, nil
		}
	}
	return nil, s.changed
}
