// Package sqlitestore keeps the notification service's rules, alerts, event log
// and sensor last-seen times (events_db) in one SQLite file (modernc.org/sqlite,
// pure Go). One connection writes, a pool reads; WAL lets them run side by side.
package sqlitestore

import (
	"context"
	"database/sql"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/atrium-iot/atrium/internal/paging"
	"github.com/atrium-iot/atrium/internal/rowscan"
	"github.com/atrium-iot/atrium/internal/sqlitex"
	"github.com/atrium-iot/atrium/services/notification"
)

var _ notification.Store = (*Store)(nil)

//go:embed migrations/*.sql
var migrations embed.FS

// Options tune a Store. The zero value is ready to use; the synchronous mode
// defaults to FULL.
type Options struct {
	sqlitex.Settings
}

// Store is the SQLite implementation of notification.Store.
type Store struct {
	db *sqlitex.Store
}

// Open opens (creating if needed) the database at path and brings its schema up to date.
func Open(ctx context.Context, path string, opts Options) (*Store, error) {
	db, err := sqlitex.OpenStore(ctx, path, opts.Settings, sqlitex.Options{
		Synchronous:     "FULL",
		ImmediateWrites: true,
		Migrations:      migrations,
		MigrationsDir:   "migrations",
	})
	if err != nil {
		return nil, fmt.Errorf("sqlitestore: %w", err)
	}
	return &Store{db: db}, nil
}

// Ping runs a trivial query.
func (s *Store) Ping(ctx context.Context) error { return s.db.Ping(ctx, "sqlitestore: ping") }

// Close closes the database. Calling it again returns the first result.
func (s *Store) Close() error { return s.db.Close("sqlitestore: close", nil) }

// list runs query on the read pool and reads its rows with scan; op names the
// call in errors.
func list[T any](ctx context.Context, s *Store, op string, scan func(rowscan.Row) (T, error), query string, args ...any) ([]T, error) {
	if err := s.db.Check("sqlitestore: " + op); err != nil {
		return nil, err
	}
	out, err := rowscan.Query(ctx, s.db.Readers, scan, query, args...)
	return out, wrapErr("sqlitestore: "+op, err)
}

// tx runs fn in a write transaction.
func (s *Store) tx(ctx context.Context, op string, fn func(tx *sql.Tx) error) error {
	if err := s.db.Check("sqlitestore: " + op); err != nil {
		return err
	}
	tx, err := s.db.Writer.BeginTx(ctx, nil)
	if err != nil {
		return wrapErr("sqlitestore: "+op, err)
	}
	defer tx.Rollback()
	if err := fn(tx); err != nil {
		return wrapErr("sqlitestore: "+op, err)
	}
	return wrapErr("sqlitestore: "+op, tx.Commit())
}

// ---- rules ----

// SeedRules stores rules the first time it is called on a store.
func (s *Store) SeedRules(ctx context.Context, rules []notification.Rule) error {
	return s.tx(ctx, "seed rules", func(tx *sql.Tx) error {
		var v string
		err := tx.QueryRowContext(ctx, "SELECT value FROM meta WHERE key = 'rules_seeded'").Scan(&v)
		if err == nil {
			return nil
		}
		if !errors.Is(err, sql.ErrNoRows) {
			return err
		}
		for _, r := range rules {
			b, err := json.Marshal(r)
			if err != nil {
				return err
			}
			if _, err := tx.ExecContext(ctx, "INSERT OR IGNORE INTO rules (id, body) VALUES (?, ?)", r.ID, string(b)); err != nil {
				return err
			}
		}
		_, err = tx.ExecContext(ctx, "INSERT INTO meta (key, value) VALUES ('rules_seeded', '1')")
		return err
	})
}

// Rules lists every rule by id.
func (s *Store) Rules(ctx context.Context) ([]notification.Rule, error) {
	return list(ctx, s, "rules", func(row rowscan.Row) (notification.Rule, error) {
		var body string
		var r notification.Rule
		if err := row.Scan(&body); err != nil {
			return r, err
		}
		if err := json.Unmarshal([]byte(body), &r); err != nil {
			return r, fmt.Errorf("decode: %w", err)
		}
		return r, nil
	}, "SELECT body FROM rules ORDER BY id")
}

// Rule returns one rule.
func (s *Store) Rule(ctx context.Context, id string) (notification.Rule, error) {
	var r notification.Rule
	if err := s.db.Check("sqlitestore: rule"); err != nil {
		return r, err
	}
	var body string
	err := s.db.Readers.QueryRowContext(ctx, "SELECT body FROM rules WHERE id = ?", id).Scan(&body)
	if errors.Is(err, sql.ErrNoRows) {
		return r, fmt.Errorf("sqlitestore: rule %q: %w", id, notification.ErrNotFound)
	}
	if err != nil {
		return r, wrapErr("sqlitestore: rule", err)
	}
	if err := json.Unmarshal([]byte(body), &r); err != nil {
		return r, fmt.Errorf("sqlitestore: rule %q: decode: %w", id, err)
	}
	return r, nil
}

// CreateRule adds a rule.
func (s *Store) CreateRule(ctx context.Context, r notification.Rule) error {
	b, err := json.Marshal(r)
	if err != nil {
		return fmt.Errorf("sqlitestore: create rule: %w", err)
	}
	return s.tx(ctx, "create rule", func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, "INSERT OR IGNORE INTO rules (id, body) VALUES (?, ?)", r.ID, string(b))
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return fmt.Errorf("rule %q: %w", r.ID, notification.ErrConflict)
		}
		return nil
	})
}

// UpdateRule replaces a rule.
func (s *Store) UpdateRule(ctx context.Context, r notification.Rule) error {
	b, err := json.Marshal(r)
	if err != nil {
		return fmt.Errorf("sqlitestore: update rule: %w", err)
	}
	return s.tx(ctx, "update rule", func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, "UPDATE rules SET body = ? WHERE id = ?", string(b), r.ID)
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return fmt.Errorf("rule %q: %w", r.ID, notification.ErrNotFound)
		}
		return nil
	})
}

// DeleteRule removes a rule.
func (s *Store) DeleteRule(ctx context.Context, id string) error {
	return s.tx(ctx, "delete rule", func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, "DELETE FROM rules WHERE id = ?", id)
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return fmt.Errorf("rule %q: %w", id, notification.ErrNotFound)
		}
		return nil
	})
}

// ---- alerts ----

const alertCols = "seq, id, rule_id, room_id, sensor_id, type, severity, state, value, message, raised_ms, acked_ms, resolved_ms"

func scanAlert(sc rowscan.Row) (notification.Alert, int64, error) {
	var a notification.Alert
	var seq, raised int64
	var acked, resolved sql.NullInt64
	err := sc.Scan(&seq, &a.ID, &a.RuleID, &a.RoomID, &a.SensorID, &a.Type, &a.Severity, &a.State, &a.Value, &a.Message, &raised, &acked, &resolved)
	a.RaisedAt = time.UnixMilli(raised).UTC()
	if acked.Valid {
		t := time.UnixMilli(acked.Int64).UTC()
		a.AcknowledgedAt = &t
	}
	if resolved.Valid {
		t := time.UnixMilli(resolved.Int64).UTC()
		a.ResolvedAt = &t
	}
	return a, seq, err
}

func appendEvent(ctx context.Context, tx *sql.Tx, ev notification.Event) error {
	var data any
	if len(ev.Data) > 0 {
		data = string(ev.Data)
	}
	_, err := tx.ExecContext(ctx, `INSERT INTO events (id, type, severity, room_id, sensor_id, alert_id, rule_id, message, data, time_ms, recorded_ms)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		ev.ID, ev.Type, ev.Severity, ev.RoomID, ev.SensorID, ev.AlertID, ev.RuleID, ev.Message, data, ev.Time.UnixMilli(), ev.RecordedAt.UnixMilli())
	return err
}

// RaiseAlert stores a new alert and its event unless one with its key is open.
func (s *Store) RaiseAlert(ctx context.Context, a notification.Alert, ev notification.Event) (notification.Alert, bool, error) {
	var out notification.Alert
	var created bool
	err := s.tx(ctx, "raise alert", func(tx *sql.Tx) error {
		row := tx.QueryRowContext(ctx, "SELECT "+alertCols+" FROM alerts WHERE rule_id = ? AND room_id = ? AND sensor_id = ? AND type = ? AND state != 'resolved'",
			a.RuleID, a.RoomID, a.SensorID, a.Type)
		got, _, err := scanAlert(row)
		if err == nil {
			out = got
			return nil
		}
		if !errors.Is(err, sql.ErrNoRows) {
			return err
		}
		a.State = notification.StateActive
		a.AcknowledgedAt, a.ResolvedAt = nil, nil
		if _, err := tx.ExecContext(ctx, `INSERT INTO alerts (id, rule_id, room_id, sensor_id, type, severity, state, value, message, raised_ms)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
			a.ID, a.RuleID, a.RoomID, a.SensorID, a.Type, a.Severity, a.State, a.Value, a.Message, a.RaisedAt.UnixMilli()); err != nil {
			return err
		}
		ev.AlertID = a.ID
		if err := appendEvent(ctx, tx, ev); err != nil {
			return err
		}
		a.RaisedAt = time.UnixMilli(a.RaisedAt.UnixMilli()).UTC()
		out, created = a, true
		return nil
	})
	return out, created, err
}

// transition moves an alert to state at `at`, appending ev, when allowed.
func (s *Store) transition(ctx context.Context, op, id, state string, at time.Time, ev notification.Event) (notification.Alert, bool, error) {
	var out notification.Alert
	var changed bool
	err := s.tx(ctx, op, func(tx *sql.Tx) error {
		a, _, err := scanAlert(tx.QueryRowContext(ctx, "SELECT "+alertCols+" FROM alerts WHERE id = ?", id))
		if errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("alert %q: %w", id, notification.ErrNotFound)
		}
		if err != nil {
			return err
		}
		out = a
		switch {
		case a.State == notification.StateResolved && state == notification.StateAcknowledged:
			return fmt.Errorf("alert %q is resolved: %w", id, notification.ErrConflict)
		case a.State == state:
			return nil
		}
		col := "acked_ms"
		if state == notification.StateResolved {
			col = "resolved_ms"
		}
		if _, err := tx.ExecContext(ctx, "UPDATE alerts SET state = ?, "+col+" = ? WHERE id = ?", state, at.UnixMilli(), id); err != nil {
			return err
		}
		ev.AlertID = id
		if err := appendEvent(ctx, tx, ev); err != nil {
			return err
		}
		t := time.UnixMilli(at.UnixMilli()).UTC()
		out.State = state
		if state == notification.StateResolved {
			out.ResolvedAt = &t
		} else {
			out.AcknowledgedAt = &t
		}
		changed = true
		return nil
	})
	return out, changed, err
}

// AckAlert acknowledges an active alert.
func (s *Store) AckAlert(ctx context.Context, id string, at time.Time, ev notification.Event) (notification.Alert, bool, error) {
	return s.transition(ctx, "ack alert", id, notification.StateAcknowledged, at, ev)
}

// ResolveAlert resolves an open alert.
func (s *Store) ResolveAlert(ctx context.Context, id string, at time.Time, ev notification.Event) (notification.Alert, bool, error) {
	return s.transition(ctx, "resolve alert", id, notification.StateResolved, at, ev)
}

// Alert returns one alert.
func (s *Store) Alert(ctx context.Context, id string) (notification.Alert, error) {
	if err := s.db.Check("sqlitestore: alert"); err != nil {
		return notification.Alert{}, err
	}
	a, _, err := scanAlert(s.db.Readers.QueryRowContext(ctx, "SELECT "+alertCols+" FROM alerts WHERE id = ?", id))
	if errors.Is(err, sql.ErrNoRows) {
		return a, fmt.Errorf("sqlitestore: alert %q: %w", id, notification.ErrNotFound)
	}
	return a, wrapErr("sqlitestore: alert", err)
}

// Alerts lists alerts newest first.
func (s *Store) Alerts(ctx context.Context, q notification.AlertQuery) ([]notification.Alert, string, error) {
	if err := s.db.Check("sqlitestore: alerts"); err != nil {
		return nil, "", err
	}
	var where []string
	var args []any
	switch q.State {
	case "":
	case notification.StateActive:
		where = append(where, "state IN ('active', 'acknowledged')")
	default:
		where, args = append(where, "state = ?"), append(args, q.State)
	}
	for _, f := range []struct{ col, v string }{{"room_id", q.RoomID}, {"severity", q.Severity}, {"rule_id", q.RuleID}} {
		if f.v != "" {
			where, args = append(where, f.col+" = ?"), append(args, f.v)
		}
	}
	return seqPage(ctx, s, "alerts", "SELECT "+alertCols+" FROM alerts", where, args, q.Cursor, q.Limit, func(r rowscan.Row) (seqd[notification.Alert], error) {
		a, seq, err := scanAlert(r)
		return seqd[notification.Alert]{a, seq}, err
	})
}

// seqd is an item of a list and its sequence number, which a page's cursor
// holds.
type seqd[T any] struct {
	v   T
	seq int64
}

// seqPage reads a page of a list newest first by seq: the rows of query (a
// SELECT with no WHERE) that meet every condition of where (whose arguments
// are args), read with scan, starting after the page of cursor (a
// notification.SeqCursor, "" for the first page), at most limit (paging.Size)
// of them; next is the cursor of the page after it, "" at the end. op names
// the call in errors.
func seqPage[T any](ctx context.Context, s *Store, op, query string, where []string, args []any, cursor string, limit int, scan func(rowscan.Row) (seqd[T], error)) (items []T, next string, err error) {
	if cursor != "" {
		seq, err := notification.ParseSeqCursor(cursor)
		if err != nil {
			return nil, "", fmt.Errorf("sqlitestore: %s: %w", op, err)
		}
		where, args = append(where, "seq < ?"), append(args, seq)
	}
	limit = paging.Size(limit)
	if len(where) > 0 {
		query += " WHERE " + strings.Join(where, " AND ")
	}
	query += " ORDER BY seq DESC LIMIT " + strconv.Itoa(limit+1)
	rows, err := rowscan.Query(ctx, s.db.Readers, scan, query, args...)
	if err != nil {
		return nil, "", wrapErr("sqlitestore: "+op, err)
	}
	rows, next = paging.Cut(rows, limit, func(last seqd[T]) string { return notification.SeqCursor(last.seq) })
	items = make([]T, len(rows))
	for i, r := range rows {
		items[i] = r.v
	}
	return items, next, nil
}

// OpenAlerts lists every unresolved alert.
func (s *Store) OpenAlerts(ctx context.Context) ([]notification.Alert, error) {
	return list(ctx, s, "open alerts", func(r rowscan.Row) (notification.Alert, error) {
		a, _, err := scanAlert(r)
		return a, err
	}, "SELECT "+alertCols+" FROM alerts WHERE state IN ('active', 'acknowledged') ORDER BY seq")
}

// ---- events ----

// AppendEvent adds an event to the log.
func (s *Store) AppendEvent(ctx context.Context, ev notification.Event) error {
	return s.tx(ctx, "append event", func(tx *sql.Tx) error { return appendEvent(ctx, tx, ev) })
}

// Events lists events newest first.
func (s *Store) Events(ctx context.Context, q notification.EventQuery) ([]notification.Event, string, error) {
	if err := s.db.Check("sqlitestore: events"); err != nil {
		return nil, "", err
	}
	var where []string
	var args []any
	for _, f := range []struct{ col, v string }{{"type", q.Type}, {"severity", q.Severity}, {"room_id", q.RoomID}} {
		if f.v != "" {
			where, args = append(where, f.col+" = ?"), append(args, f.v)
		}
	}
	if !q.Since.IsZero() {
		where, args = append(where, "time_ms >= ?"), append(args, q.Since.UnixMilli())
	}
	query := "SELECT seq, id, type, severity, room_id, sensor_id, alert_id, rule_id, message, data, time_ms, recorded_ms FROM events"
	return seqPage(ctx, s, "events", query, where, args, q.Cursor, q.Limit, func(r rowscan.Row) (seqd[notification.Event], error) {
		var ev notification.Event
		var seq, tms, rms int64
		var data sql.NullString
		err := r.Scan(&seq, &ev.ID, &ev.Type, &ev.Severity, &ev.RoomID, &ev.SensorID, &ev.AlertID, &ev.RuleID, &ev.Message, &data, &tms, &rms)
		if data.Valid {
			ev.Data = json.RawMessage(data.String)
		}
		ev.Time, ev.RecordedAt = time.UnixMilli(tms).UTC(), time.UnixMilli(rms).UTC()
		return seqd[notification.Event]{ev, seq}, err
	})
}

// ---- sensors ----

// SaveSensors upserts sensor states.
func (s *Store) SaveSensors(ctx context.Context, ss []notification.SensorState) error {
	if len(ss) == 0 {
		return nil
	}
	return s.tx(ctx, "save sensors", func(tx *sql.Tx) error {
		st, err := tx.PrepareContext(ctx, `INSERT INTO sensors (id, room_id, last_seen_ms, offline, types) VALUES (?, ?, ?, ?, coalesce(?, ''))
			ON CONFLICT (id) DO UPDATE SET
				room_id = CASE WHEN excluded.room_id != '' THEN excluded.room_id ELSE sensors.room_id END,
				last_seen_ms = max(sensors.last_seen_ms, excluded.last_seen_ms),
				offline = excluded.offline,
				types = CASE WHEN ?5 IS NOT NULL THEN excluded.types ELSE sensors.types END`)
		if err != nil {
			return err
		}
		defer st.Close()
		for _, x := range ss {
			off := 0
			if x.Offline {
				off = 1
			}
			var types any // NULL keeps the saved types
			if x.Types != nil {
				types = strings.Join(x.Types, ",")
			}
			if _, err := st.ExecContext(ctx, x.ID, x.RoomID, x.LastSeen.UnixMilli(), off, types); err != nil {
				return err
			}
		}
		return nil
	})
}

// Sensors lists every sensor state by id.
func (s *Store) Sensors(ctx context.Context) ([]notification.SensorState, error) {
	return list(ctx, s, "sensors", func(r rowscan.Row) (notification.SensorState, error) {
		var x notification.SensorState
		var ms int64
		var types string
		err := r.Scan(&x.ID, &x.RoomID, &ms, &x.Offline, &types)
		x.Types = []string{}
		if types != "" {
			x.Types = strings.Split(types, ",")
		}
		x.LastSeen = time.UnixMilli(ms).UTC()
		return x, err
	}, "SELECT id, room_id, last_seen_ms, offline, types FROM sensors ORDER BY id")
}

// wrapErr prefixes err with op and marks transient failures (locks, I/O, a closed
// database) as notification.ErrUnavailable.
func wrapErr(op string, err error) error { return sqlitex.Wrap(op, err) }
