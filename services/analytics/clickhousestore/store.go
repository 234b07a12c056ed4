// Package clickhousestore keeps the analytics service's copy of the readings, the
// alert states and the reports in ClickHouse (clickhouse-go/v2, native protocol),
// for deployments whose reading volume outgrows SQLite.
//
// Readings live in one MergeTree table ordered by (room_id, type, ts_ms,
// sensor_id) and partitioned by month. Materialized views derive, from every
// block inserted into it and within the same INSERT, the aggregates every query
// reads (see aggregates.go): per-minute figures per room and type (series,
// extremes, report figures), per-minute figures per type building-wide (counts,
// type statistics, building-wide series) and the latest value per room and type
// (latest values, the room list). So a writer that stops after an INSERT leaves
// no reading uncounted. An INSERT the server fails after storing the readings
// (a view that failed) is reconciled from the readings before the next INSERT,
// and Open compares readings and aggregates per partition and reconciles those
// that disagree; it also fills the aggregates of a database made by an older
// release.
// With Options.Retention or Options.RollupRetention set, readings and
// aggregates past them are deleted at open and every hour, a day at a time (see
// prune.go); the repairs never look before what was pruned.
// The SQL runs on ClickHouse 18.16 (Debian's package) and on current releases: no
// DateTime64 (times are Int64 Unix milliseconds), no LowCardinality, and every
// INSERT names its columns.
//
// Dedupe (a reading's identity is sensor_id, type, ts_ms) happens twice:
//   - on insert, the writer asks which identities of a batch are already stored
//     and inserts only the new ones; one writer goroutine serialises the inserts
//     of a process (concurrent AddReadings calls are coalesced into one INSERT),
//     so redeliveries handled by one process never double a reading;
//   - the table is a ReplacingMergeTree on the identity (room_id is a function of
//     the reading), so a copy that two processes raced to insert disappears at the
//     next merge. The views count such a copy twice; one writer process per
//     database avoids it (and Open's reconciliation assumes it).
package clickhousestore

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/atrium-iot/atrium/internal/groupcommit"
	"github.com/atrium-iot/atrium/internal/reading"
	"github.com/atrium-iot/atrium/internal/retention"
	"github.com/atrium-iot/atrium/services/analytics"
)

var _ analytics.Store = (*Store)(nil)

// DefaultDatabase is the database used when the URL names none.
const DefaultDatabase = "analytics_db"

// Options tune a Store. The zero value is ready to use.
type Options struct {
	// Logger receives the store's logs; nil discards them.
	Logger *slog.Logger
	// MaxBatch bounds the readings of one INSERT (default 50,000).
	MaxBatch int
	// Tiered: Retention is how long raw readings are kept, by reading
	// timestamp; a reading older than that is ignored by AddReadings.
	// RollupRetention is how long the per-minute aggregates, which every query
	// reads, are kept. PruneEvery defaults to every hour.
	retention.Tiered
}

// Store is the ClickHouse implementation of analytics.Store.
type Store struct {
	log  *slog.Logger
	conn driver.Conn
	db   string
	opts Options // with the defaults of its Tiered

	// writer coalesces the AddReadings calls waiting at the same time into one
	// check and one INSERT.
	writer *groupcommit.Writer[[]reading.Reading, int]

	mu       sync.RWMutex // guards closed against inflight.Add
	closed   bool
	inflight sync.WaitGroup
	once     sync.Once

	suspects []suspect // failed INSERTs to reconcile; the writer's alone
	seq      uint64    // INSERTs sent; the writer's alone

	// pmu is held by the writer for an INSERT and by PruneBefore to move the
	// cutoffs; it guards them.
	pmu       sync.Mutex
	readCut   int64 // Unix ms: the readings before it were pruned (noCutoff: none)
	rollupCut int64 // Unix ms, a minute: the aggregates of the minutes before it were pruned

	pruner *retention.Pruner // nil when the store prunes nothing

	verMu   sync.Mutex
	lastVer uint64
}

// ParseURL reads clickhouse://[user[:password]@]host[:port][/database] into
// client options and the database name.
func ParseURL(raw string) (*clickhouse.Options, string, error) {
	u, err := url.Parse(raw)
	if err != nil || u.Scheme != "clickhouse" || u.Host == "" {
		return nil, "", fmt.Errorf("want clickhouse://[user[:password]@]host[:port][/database], got %q", redact(raw))
	}
	host := u.Host
	if _, _, err := net.SplitHostPort(host); err != nil {
		host = net.JoinHostPort(host, "9000")
	}
	db := strings.Trim(u.Path, "/")
	if db == "" {
		db = DefaultDatabase
	}
	if !validName(db) {
		return nil, "", fmt.Errorf("database name %q: want letters, digits and _", db)
	}
	o := &clickhouse.Options{
		Addr:            []string{host},
		Auth:            clickhouse.Auth{Database: "default", Username: "default"},
		DialTimeout:     5 * time.Second,
		ReadTimeout:     60 * time.Second,
		MaxOpenConns:    8,
		MaxIdleConns:    8,
		ConnMaxLifetime: time.Hour,
	}
	if u.User != nil {
		o.Auth.Username = u.User.Username()
		o.Auth.Password, _ = u.User.Password()
	}
	return o, db, nil
}

func validName(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for _, c := range s {
		if !(c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9') {
			return false
		}
	}
	return true
}

func redact(s string) string {
	if u, err := url.Parse(s); err == nil && u.User != nil {
		if _, ok := u.User.Password(); ok {
			u.User = url.UserPassword(u.User.Username(), "xxxxx")
			return u.String()
		}
	}
	return s
}

// Open connects to the ClickHouse server a clickhouse:// URL names, creates the
// database and tables if needed and starts the writer.
func Open(ctx context.Context, rawURL string, opts Options) (*Store, error) {
	o, db, err := ParseURL(rawURL)
	if err != nil {
		return nil, fmt.Errorf("clickhousestore: open: %w", err)
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.MaxBatch <= 0 {
		opts.MaxBatch = 50000
	}
	conn, err := clickhouse.Open(o)
	if err != nil {
		return nil, fmt.Errorf("clickhousestore: open %s: %w", redact(rawURL), err)
	}
	opts.Tiered = opts.WithDefaults(defaultPruneEvery)
	s := &Store{
		log: opts.Logger, conn: conn, db: db, opts: opts,
		readCut: noCutoff, rollupCut: noCutoff,
	}
	if err := s.migrate(ctx); err != nil {
		conn.Close()
		return nil, wrapErr("clickhousestore: open "+redact(rawURL), err)
	}
	s.writer = groupcommit.New(s.write, func(rs []reading.Reading) int { return len(rs) }, groupcommit.Options{MaxSize: opts.MaxBatch})
	s.pruner = opts.Start(s.log, s.Prune)
	return s, nil
}

// t names a table of the store's database.
func (s *Store) t(name string) string { return s.db + "." + name }

func (s *Store) migrate(ctx context.Context) error {
	stmts := []string{
		`CREATE DATABASE IF NOT EXISTS ` + s.db,
		`CREATE TABLE IF NOT EXISTS ` + s.t("readings") + ` (
    room_id   String,
    type      String,
    ts_ms     Int64,
    sensor_id String,
    value     Float64
) ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(toDateTime(intDiv(ts_ms, 1000)))
ORDER BY (room_id, type, ts_ms, sensor_id)`,
		`CREATE TABLE IF NOT EXISTS ` + s.t("alerts") + ` (id String, state String, at_ms Int64)
ENGINE = ReplacingMergeTree ORDER BY (id, state)`,
		`CREATE TABLE IF NOT EXISTS ` + s.t("reports") + ` (
    id         String,
    version    UInt64,
    created_ms Int64,
    status     String,
    meta       String,
    content    String
) ENGINE = ReplacingMergeTree(version) ORDER BY id`,
	}
	for _, q := range stmts {
		if err := s.conn.Exec(ctx, q); err != nil {
			return fmt.Errorf("migrate: %w", err)
		}
	}
	if err := s.migrateAggregates(ctx); err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	return s.checkAggregates(ctx)
}

// Ping reports whether the server answers.
func (s *Store) Ping(ctx context.Context) error {
	s.mu.RLock()
	closed := s.closed
	s.mu.RUnlock()
	if closed {
		return fmt.Errorf("clickhousestore: ping: %w: store closed", analytics.ErrUnavailable)
	}
	return wrapErr("clickhousestore: ping", s.conn.Ping(ctx))
}

// Close stops the writer after the pending inserts and closes the connections.
func (s *Store) Close() error {
	var err error
	s.once.Do(func() {
		s.mu.Lock()
		s.closed = true
		s.mu.Unlock()
		s.pruner.Stop()
		s.inflight.Wait()
		s.writer.Close()
		err = s.conn.Close()
	})
	return err
}

// DropDatabase drops the store's database; for tests that made a unique one.
func (s *Store) DropDatabase(ctx context.Context) error {
	return wrapErr("clickhousestore: drop database", s.conn.Exec(ctx, `DROP DATABASE IF EXISTS `+s.db))
}

// wrapErr wraps err with op, marking connection failures as ErrUnavailable.
func wrapErr(op string, err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, analytics.ErrUnavailable) || errors.Is(err, analytics.ErrNotFound) || errors.Is(err, analytics.ErrBadCursor) ||
		errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("%s: %w", op, err)
	}
	var ne net.Error
	var ex *clickhouse.Exception
	if errors.As(err, &ne) || errors.Is(err, clickhouse.ErrAcquireConnTimeout) ||
		(errors.As(err, &ex) && ex.Code == 202) { // 202: too many simultaneous queries
		return fmt.Errorf("%s: %w: %w", op, analytics.ErrUnavailable, err)
	}
	return fmt.Errorf("%s: %w", op, err)
}

// version is a strictly increasing version for ReplacingMergeTree rows.
func (s *Store) version() uint64 {
	s.verMu.Lock()
	defer s.verMu.Unlock()
	v := uint64(time.Now().UnixNano())
	if v <= s.lastVer {
		v = s.lastVer + 1
	}
	s.lastVer = v
	return v
}
