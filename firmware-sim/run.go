package sim

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"

	"github.com/mattn/go-isatty"

	"github.com/atrium-iot/atrium/internal/logging"
)

// Run is the atrium-sim program: it reads the flags (each -x-y also from ATRIUM_X_Y),
// runs the simulator until it is done or ctx ends, and prints the summary on stdout.
// -h prints the flags and returns nil.
func Run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	cfg, opt, err := parseFlags(args, getenv, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return nil
	}
	if err != nil {
		return err
	}
	log, err := logging.New(stderr, opt.logFormat, opt.logLevel)
	if err != nil {
		return err
	}
	if cfg.Replay != "" && opt.progress == "auto" {
		cfg.Progress = NewProgress(stderr, log, ProgressOptions{Terminal: isTerminal(stderr)})
	}
	s, err := New(cfg, log)
	if err != nil {
		return err
	}
	sum, runErr := s.Run(ctx)
	var werr error
	if opt.summary == "json" {
		werr = sum.WriteJSON(stdout)
	} else {
		werr = sum.WriteText(stdout)
	}
	if runErr != nil {
		return runErr
	}
	if werr != nil {
		return fmt.Errorf("sim: write summary: %w", werr)
	}
	return nil
}

// isTerminal reports whether w is a terminal (where a redrawn status line reads
// well) rather than a file or a pipe.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && (isatty.IsTerminal(f.Fd()) || isatty.IsCygwinTerminal(f.Fd()))
}
