package sim

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"

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
