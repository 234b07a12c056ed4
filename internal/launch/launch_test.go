package launch_test

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/atrium-iot/atrium/internal/launch"
)

func TestLogKeepsJSONLinesAcrossWrites(t *testing.T) {
	l := launch.NewLog()
	ready := launch.Message("listening", "server", "sensor")
	line, changed := l.Find(ready)
	if line != nil || changed == nil {
		t.Fatalf("an empty log found %v", line)
	}
	for _, part := range []string{"not json\n", `{"msg":"listening","server":"room"}` + "\n" + `{"msg":"listen`, `ing","server":"sensor","addr":"127.0.0.1:1"}` + "\n"} {
		if _, err := l.Write([]byte(part)); err != nil {
			t.Fatal(err)
		}
	}
	select {
	case <-changed:
	default:
		t.Fatal("a write did not wake the waiter")
	}
	if line, _ := l.Find(ready); line == nil || line["addr"] != "127.0.0.1:1" {
		t.Fatalf("found %v, want the sensor's line", line)
	}
	if !strings.HasPrefix(l.String(), "not json\n") {
		t.Errorf("String lost what is not JSON: %q", l.String())
	}
}

func TestProcAwaitAndStop(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	p, err := launch.Start("/bin/sh", "-c", `echo out; echo '{"msg":"started","addr":"a:1"}' >&2; exec sleep 60`)
	if err != nil {
		t.Skip(err)
	}
	l, err := p.Await(ctx, launch.Message("started"))
	if err != nil || l["addr"] != "a:1" {
		t.Fatalf("Await: %v, %v", l, err)
	}
	if p.Exited() {
		t.Fatal("exited while sleeping")
	}
	if err := p.Stop(10 * time.Second); err == nil {
		t.Error("a program ended by SIGINT stopped without an error")
	}
	if !p.Exited() || p.Stop(time.Second) != nil {
		t.Error("after Stop: not exited, or a second Stop reports an error")
	}
	if p.Stdout.String() != "out\n" {
		t.Errorf("stdout %q", p.Stdout.String())
	}

	q, err := launch.Start("/bin/sh", "-c", `echo '{"msg":"other"}' >&2`)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := q.Await(ctx, launch.Message("started")); !errors.Is(err, launch.ErrExited) {
		t.Errorf("a program that exits without the line: %v, want ErrExited", err)
	}
	if q.Err() != nil {
		t.Errorf("Err %v", q.Err())
	}
}

// StartEnv adds its entries to the environment; Start and StartEnv alike leave
// this process's ATRIUM_ variables out.
func TestStartEnv(t *testing.T) {
	t.Setenv("ATRIUM_LAUNCH_TEST", "inherited")
	p, err := launch.StartEnv([]string{"GOMEMLIMIT=32MiB"}, "/bin/sh", "-c", `echo "$GOMEMLIMIT|$ATRIUM_LAUNCH_TEST"`)
	if err != nil {
		t.Skip(err)
	}
	if err := p.Err(); err != nil {
		t.Fatal(err)
	}
	if got := p.Stdout.String(); got != "32MiB|\n" {
		t.Errorf("the program saw %q, want GOMEMLIMIT and no ATRIUM_ variable", got)
	}
}

// Compile builds a package named from the module's root into dir, named for its
// directory.
func TestCompile(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the go command")
	}
	dir := t.TempDir()
	if err := launch.Compile(t.Context(), dir, []string{"CGO_ENABLED=0"}, []string{"-trimpath"}, "./internal/launch/testdata/hello"); err != nil {
		t.Fatal(err)
	}
	p, err := launch.Start(filepath.Join(dir, "hello"))
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Err(); err != nil || p.Stdout.String() != `{"msg":"hello"}`+"\n" {
		t.Errorf("hello: %v, printed %q", err, p.Stdout.String())
	}
	if err := launch.Compile(t.Context(), dir, nil, nil, "./internal/launch/testdata/nothing"); err == nil {
		t.Error("compiling a package that does not exist succeeded")
	}
}
