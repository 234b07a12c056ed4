package flagenv

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"

	"github.com/atrium-iot/atrium/internal/logging"
	"github.com/atrium-iot/atrium/internal/version"
)

// Program holds the flags every long-running Atrium program has; a program's
// Config embeds it.
type Program struct {
	LogFormat string
	LogLevel  string
	Version   bool
}

// Add defines -log-format, -log-level and -version on fs.
func (p *Program) Add(fs *flag.FlagSet) {
	fs.StringVar(&p.LogFormat, "log-format", "auto", "log format: json, text, or auto (text on a terminal)")
	fs.StringVar(&p.LogLevel, "log-level", "info", "log level: debug, info, warn, error")
	fs.BoolVar(&p.Version, "version", false, "print the version and exit")
}

// Start is what program name does once its flags are parsed, parseErr being
// what the parse returned. It returns the logger -log-format and -log-level
// ask for, writing to stderr, or a nil logger when the program is done: after
// -h (flag.ErrHelp, usage printed: no error), after -version (printed on
// stdout: no error), or on parseErr or a bad log flag (that error).
func (p Program) Start(name string, parseErr error, stdout, stderr io.Writer) (*slog.Logger, error) {
	switch {
	case errors.Is(parseErr, flag.ErrHelp):
		return nil, nil
	case parseErr != nil:
		return nil, parseErr
	case p.Version:
		fmt.Fprintln(stdout, name, version.String())
		return nil, nil
	}
	return logging.New(stderr, p.LogFormat, p.LogLevel)
}
