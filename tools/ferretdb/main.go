// Command ferretdb runs FerretDB (a MongoDB wire-protocol server on PostgreSQL)
// for Atrium's MongoDB integration tests and benchmarks, where MongoDB itself
// cannot be installed. It wraps FerretDB's embeddable package, so it needs no
// generated version files, and lives in its own Go module so that Atrium's
// go.mod does not carry FerretDB's dependencies.
//
//	ferretdb -listen 127.0.0.1:27017 -postgresql-url postgres://127.0.0.1:5432/ferretdb
//
// Every flag also reads an environment variable: -listen FERRETDB_LISTEN,
// -postgresql-url FERRETDB_POSTGRESQL_URL, -log-level FERRETDB_LOG_LEVEL.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/FerretDB/FerretDB/ferretdb"
)

func main() {
	if err := run(context.Background(), os.Args[1:], os.Getenv, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "ferretdb:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, getenv func(string) string, stderr io.Writer) error {
	fs := flag.NewFlagSet("ferretdb", flag.ContinueOnError)
	fs.SetOutput(stderr)
	env := func(name, def string) string {
		if v := getenv(name); v != "" {
			return v
		}
		return def
	}
	listen := fs.String("listen", env("FERRETDB_LISTEN", "127.0.0.1:27017"), "TCP address of the MongoDB wire protocol (env FERRETDB_LISTEN)")
	pgURL := fs.String("postgresql-url", env("FERRETDB_POSTGRESQL_URL", "postgres://127.0.0.1:5432/ferretdb"), "PostgreSQL database that holds the data (env FERRETDB_POSTGRESQL_URL)")
	level := fs.String("log-level", env("FERRETDB_LOG_LEVEL", "warn"), "log level: debug, info, warn, error (env FERRETDB_LOG_LEVEL)")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return err
	}
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(*level)); err != nil {
		return fmt.Errorf("-log-level: %w", err)
	}
	log := slog.New(slog.NewJSONHandler(stderr, &slog.HandlerOptions{Level: lvl}))

	f, err := ferretdb.New(&ferretdb.Config{
		Listener:      ferretdb.ListenerConfig{TCP: *listen},
		Logger:        log,
		Handler:       "postgresql",
		PostgreSQLURL: *pgURL,
	})
	if err != nil {
		return fmt.Errorf("start: %w", err)
	}
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	log.Warn("ferretdb listening", "addr", *listen, "backend", "postgresql")
	return f.Run(ctx)
}
