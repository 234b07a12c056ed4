package sqlitestore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/atrium-iot/atrium/internal/groupcommit"
	"github.com/atrium-iot/atrium/internal/reading"
	"github.com/atrium-iot/atrium/internal/sqlitex"
	"github.com/atrium-iot/atrium/services/analytics"
)

// Rows per multi-row statement (2 parameters a reading, 9 a rollup).
const (
	readingChunk = 1000
	rollupChunk  = 300
)

// agg is a rollup row being built: count, sum, min and max with the earliest
// times of min and max.
type agg struct {
	n            int64
	s            float64
	mn, mx       float64
	mnTS, mxTS   int64
	room, typ    string
	minute       int64
	latestTS     int64
	latestValue  float64
	latestFilled bool
}

func (a *agg) add(v float64, ts int64) {
	if a.n == 0 {
		a.mn, a.mx, a.mnTS, a.mxTS = v, v, ts, ts
	} else {
		if v < a.mn || (v == a.mn && ts < a.mnTS) {
			a.mn, a.mnTS = v, ts
		}
		if v > a.mx || (v == a.mx && ts < a.mxTS) {
			a.mx, a.mxTS = v, ts
		}
	}
	a.n++
	a.s = reading.AddSum(a.s, v) // a NaN sum would be stored as NULL
}

type roomKey struct {
	room, typ string
	minute    int64
}

type typeKey struct {
	typ    string
	minute int64
}

type latestKey struct{ room, typ string }

// maxGroup bounds the readings of one group commit.
const maxGroup = 100000

// AddReadings hands the readings to the writer, which commits the calls waiting
// at the same time in one transaction (group commit), and waits for the commit.
func (s *Store) AddReadings(ctx context.Context, rs []reading.Reading) (int, error) {
	if len(rs) == 0 {
		return 0, nil
	}
	n, err := s.writer.Do(ctx, rs)
	if errors.Is(err, groupcommit.ErrClosed) {
		return 0, fmt.Errorf("analytics sqlitestore: add readings: %w", sqlitex.ErrClosed)
	}
	return n, err
}

// commitGroup commits a group of AddReadings calls in one transaction.
func (s *Store) commitGroup(group [][]reading.Reading) ([]int, error) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	s.mu.Lock()
	defer s.mu.Unlock()
	counts, fresh, err := s.applyGroup(ctx, group, false)
	if errors.Is(err, errDuplicates) {
		// Rare (a redelivered event): apply the group again, finding the
		// duplicates reading by reading.
		counts, fresh, err = s.applyGroup(ctx, group, true)
	}
	if err != nil {
		return nil, wrapErr("analytics sqlitestore: add readings", err)
	}
	for k, id := range fresh {
		s.series[k] = id
	}
	return counts, nil
}

// errDuplicates stops a group applied without savepoints at its first chunk of
// readings holding one already stored: the transaction is rolled back, and the
// group applied again with them.
var errDuplicates = errors.New("duplicates in the group")

// applyGroup adds the readings of group in one transaction and commits it: the
// number stored per request, and the series it created. careful applies each
// chunk of readings in a savepoint, which finds the duplicates among them; without
// it a chunk holding any aborts the group with errDuplicates. A savepoint makes
// SQLite keep a journal of every page the chunk changes, a large part of the work
// when there are no duplicates, the usual case.
func (s *Store) applyGroup(ctx context.Context, group [][]reading.Reading, careful bool) ([]int, map[seriesKey]int64, error) {
	if _, err := s.wconn.ExecContext(ctx, "BEGIN IMMEDIATE"); err != nil {
		return nil, nil, err
	}
	committed := false
	defer func() {
		if !committed {
			_, _ = s.wconn.ExecContext(context.WithoutCancel(ctx), "ROLLBACK")
		}
	}()
	tx := s.wconn
	counts := make([]int, len(group))
	var all []reading.Reading
	fresh := map[seriesKey]int64{}
	now := s.keep.Now()
	for i, rs := range group {
		stored, err := s.insertReadings(ctx, tx, s.recent(rs, now), fresh, careful)
		if err != nil {
			return nil, nil, err
		}
		counts[i] = len(stored)
		all = append(all, stored...)
	}
	if len(all) > 0 {
		if err := s.foldRollups(ctx, tx, all); err != nil {
			return nil, nil, err
		}
	}
	if _, err := tx.ExecContext(ctx, "COMMIT"); err != nil {
		return nil, nil, err
	}
	committed = true
	return counts, fresh, nil
}

// stmt returns the write statement of query, prepared once per store.
func (s *Store) stmt(ctx context.Context, query string) (*sql.Stmt, error) {
	if st, ok := s.stmts[query]; ok {
		return st, nil
	}
	st, err := s.wconn.PrepareContext(ctx, query)
	if err != nil {
		return nil, err
	}
	s.stmts[query] = st
	return st, nil
}

func values(n, params int) string {
	one := "(" + strings.TrimSuffix(strings.Repeat("?,", params), ",") + ")"
	return strings.TrimSuffix(strings.Repeat(one+",", n), ",")
}

// insertReadingsSQL ignores a reading already stored. OR IGNORE rather than ON
// CONFLICT DO NOTHING: no constraint can then abort the statement, so SQLite
// keeps no statement journal for it.
const insertReadingsSQL = "INSERT OR IGNORE INTO readings (series, ts) VALUES %s"

type seriesKey struct{ sensor, typ string }

// seriesIDs returns the series id of every reading, creating the missing ones in
// the transaction; fresh collects the ids created, cached once it commits.
func (s *Store) seriesIDs(ctx context.Context, tx *sql.Conn, rs []reading.Reading, fresh map[seriesKey]int64) ([]int64, error) {
	ids := make([]int64, len(rs))
	for i, r := range rs {
		k := seriesKey{r.SensorID, r.Type}
		id, ok := s.series[k]
		if !ok {
			id, ok = fresh[k]
		}
		if !ok {
			ins, err := s.stmt(ctx, `INSERT INTO series (sensor_id, type) VALUES (?, ?) ON CONFLICT DO NOTHING`)
			if err != nil {
				return nil, err
			}
			if _, err := ins.ExecContext(ctx, k.sensor, k.typ); err != nil {
				return nil, fmt.Errorf("insert series: %w", err)
			}
			sel, err := s.stmt(ctx, `SELECT id FROM series WHERE sensor_id = ? AND type = ?`)
			if err != nil {
				return nil, err
			}
			if err := sel.QueryRowContext(ctx, k.sensor, k.typ).Scan(&id); err != nil {
				return nil, fmt.Errorf("read series: %w", err)
			}
			fresh[k] = id
		}
		ids[i] = id
	}
	return ids, nil
}

// insertReadings inserts readingChunk readings per statement. A statement that
// stores fewer rows than it was given met duplicates: it is rolled back to its
// savepoint and its readings inserted one at a time, to learn which are new.
// Duplicates are rare (redeliveries), so the usual path costs one statement a chunk.
func (s *Store) insertReadings(ctx context.Context, tx *sql.Conn, rs []reading.Reading, fresh map[seriesKey]int64, careful bool) ([]reading.Reading, error) {
	ids, err := s.seriesIDs(ctx, tx, rs, fresh)
	if err != nil {
		return nil, err
	}
	stored := make([]reading.Reading, 0, len(rs))
	args := make([]any, 0, 2*min(len(rs), readingChunk))
	for start := 0; start < len(rs); start += readingChunk {
		chunk := rs[start:min(start+readingChunk, len(rs))]
		args = args[:0]
		for i, r := range chunk {
			args = append(args, ids[start+i], r.UnixMilli())
		}
		st, err := s.stmt(ctx, fmt.Sprintf(insertReadingsSQL, values(len(chunk), 2)))
		if err != nil {
			return nil, fmt.Errorf("prepare insert: %w", err)
		}
		if careful {
			if _, err := tx.ExecContext(ctx, "SAVEPOINT chunk"); err != nil {
				return nil, err
			}
		}
		res, err := st.ExecContext(ctx, args...)
		if err != nil {
			return nil, fmt.Errorf("insert readings: %w", err)
		}
		if n, _ := res.RowsAffected(); int(n) == len(chunk) {
			stored = append(stored, chunk...)
		} else if !careful {
			return nil, errDuplicates
		} else {
			if _, err := tx.ExecContext(ctx, "ROLLBACK TO chunk"); err != nil {
				return nil, err
			}
			one, err := s.stmt(ctx, fmt.Sprintf(insertReadingsSQL, values(1, 2)))
			if err != nil {
				return nil, err
			}
			for i, r := range chunk {
				res, err := one.ExecContext(ctx, ids[start+i], r.UnixMilli())
				if err != nil {
					return nil, fmt.Errorf("insert reading: %w", err)
				}
				if n, _ := res.RowsAffected(); n == 1 {
					stored = append(stored, r)
				}
			}
		}
		if careful {
			if _, err := tx.ExecContext(ctx, "RELEASE chunk"); err != nil {
				return nil, err
			}
		}
	}
	return stored, nil
}

const (
	upsertRoomSQL = `INSERT INTO room_minute (room_id, type, minute, n, s, mn, mn_ts, mx, mx_ts) VALUES %s
ON CONFLICT (room_id, type, minute) DO UPDATE SET
  n = n + excluded.n, s = s + excluded.s,
  mn_ts = CASE WHEN excluded.mn < mn OR (excluded.mn = mn AND excluded.mn_ts < mn_ts) THEN excluded.mn_ts ELSE mn_ts END,
  mn = min(mn, excluded.mn),
  mx_ts = CASE WHEN excluded.mx > mx OR (excluded.mx = mx AND excluded.mx_ts < mx_ts) THEN excluded.mx_ts ELSE mx_ts END,
  mx = max(mx, excluded.mx)`
	upsertTypeSQL = `INSERT INTO type_minute (type, minute, n, s, mn, mn_ts, mx, mx_ts) VALUES %s
ON CONFLICT (type, minute) DO UPDATE SET
  n = n + excluded.n, s = s + excluded.s,
  mn_ts = CASE WHEN excluded.mn < mn OR (excluded.mn = mn AND excluded.mn_ts < mn_ts) THEN excluded.mn_ts ELSE mn_ts END,
  mn = min(mn, excluded.mn),
  mx_ts = CASE WHEN excluded.mx > mx OR (excluded.mx = mx AND excluded.mx_ts < mx_ts) THEN excluded.mx_ts ELSE mx_ts END,
  mx = max(mx, excluded.mx)`
	upsertLatestSQL = `INSERT INTO latest (room_id, type, ts, value) VALUES %s
ON CONFLICT (room_id, type) DO UPDATE SET ts = excluded.ts, value = excluded.value
WHERE excluded.ts > latest.ts`
)

// foldRollups adds the stored readings to the per-minute rollups and the latest values.
func (s *Store) foldRollups(ctx context.Context, tx *sql.Conn, stored []reading.Reading) error {
	rooms := map[roomKey]*agg{}
	types := map[typeKey]*agg{}
	latest := map[latestKey]*agg{}
	for _, r := range stored {
		ts := r.UnixMilli()
		m := analytics.Minute(r.Timestamp)
		rk := roomKey{r.RoomID, r.Type, m}
		a := rooms[rk]
		if a == nil {
			a = &agg{room: r.RoomID, typ: r.Type, minute: m}
			rooms[rk] = a
		}
		a.add(r.Value, ts)
		tk := typeKey{r.Type, m}
		b := types[tk]
		if b == nil {
			b = &agg{typ: r.Type, minute: m}
			types[tk] = b
		}
		b.add(r.Value, ts)
		lk := latestKey{r.RoomID, r.Type}
		l := latest[lk]
		if l == nil {
			l = &agg{room: r.RoomID, typ: r.Type}
			latest[lk] = l
		}
		if !l.latestFilled || ts > l.latestTS {
			l.latestTS, l.latestValue, l.latestFilled = ts, r.Value, true
		}
	}
	if err := s.upsert(ctx, tx, upsertRoomSQL, 9, collect(rooms), func(a *agg) []any {
		return []any{a.room, a.typ, a.minute, a.n, a.s, a.mn, a.mnTS, a.mx, a.mxTS}
	}); err != nil {
		return fmt.Errorf("upsert room rollups: %w", err)
	}
	if err := s.upsert(ctx, tx, upsertTypeSQL, 8, collect(types), func(a *agg) []any {
		return []any{a.typ, a.minute, a.n, a.s, a.mn, a.mnTS, a.mx, a.mxTS}
	}); err != nil {
		return fmt.Errorf("upsert type rollups: %w", err)
	}
	if err := s.upsert(ctx, tx, upsertLatestSQL, 4, collect(latest), func(a *agg) []any {
		return []any{a.room, a.typ, a.latestTS, a.latestValue}
	}); err != nil {
		return fmt.Errorf("upsert latest: %w", err)
	}
	return nil
}

func collect[K comparable](m map[K]*agg) []*agg {
	out := make([]*agg, 0, len(m))
	for _, a := range m {
		out = append(out, a)
	}
	return out
}

func (s *Store) upsert(ctx context.Context, tx *sql.Conn, query string, params int, rows []*agg, row func(*agg) []any) error {
	args := make([]any, 0, params*min(len(rows), rollupChunk))
	for start := 0; start < len(rows); start += rollupChunk {
		chunk := rows[start:min(start+rollupChunk, len(rows))]
		args = args[:0]
		for _, a := range chunk {
			args = append(args, row(a)...)
		}
		st, err := s.stmt(ctx, fmt.Sprintf(query, values(len(chunk), params)))
		if err != nil {
			return err
		}
		if _, err := st.ExecContext(ctx, args...); err != nil {
			return err
		}
	}
	return nil
}

// RecordAlert records that an alert was raised or resolved.
func (s *Store) RecordAlert(ctx context.Context, id, state string, at time.Time) error {
	var query string
	switch state {
	case analytics.AlertRaised:
		query = `INSERT INTO alerts (id, raised_at) VALUES (?, ?)
ON CONFLICT (id) DO UPDATE SET raised_at = coalesce(raised_at, excluded.raised_at)`
	case analytics.AlertResolved:
		query = `INSERT INTO alerts (id, resolved_at) VALUES (?, ?)
ON CONFLICT (id) DO UPDATE SET resolved_at = coalesce(resolved_at, excluded.resolved_at)`
	default:
		return fmt.Errorf("analytics sqlitestore: record alert: unknown state %q", state)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.db.Check("analytics sqlitestore: record alert"); err != nil {
		return err
	}
	_, err := s.wconn.ExecContext(ctx, query, id, ms(at))
	return wrapErr("analytics sqlitestore: record alert", err)
}
