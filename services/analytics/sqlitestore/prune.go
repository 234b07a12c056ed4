package sqlitestore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/atrium-iot/atrium/internal/reading"
	"github.com/atrium-iot/atrium/internal/retention"
	"github.com/atrium-iot/atrium/internal/sqlitex"
	"github.com/atrium-iot/atrium/services/analytics"
)

// Retention: the raw readings (their identities, kept for dedupe) go after
// Options.Retention, the per-minute aggregates (room_minute, type_minute),
// which every query reads, after Options.RollupRetention. The latest value per
// room and type, the alerts and the reports are never pruned.
//
// Once the identities older than a cutoff are gone, a reading older than it
// can no longer be told from one already counted, so AddReadings ignores it
// rather than count it twice in the aggregates (a redelivery, or a sensor
// store that forgot it too and published it again).
//
// Deletes run in transactions of at most pruneChunk rows under the write
// mutex, each followed by a pause as long as it took, so the writer waits for
// one chunk at most and a large backlog takes at most about half of its time.
const (
	pruneChunk = 2000
	// pruneKeys bounds the series (or room and type pairs) one chunk looks at.
	pruneKeys = 256
	// defaultPruneEvery is how often the pruner runs when Options.PruneEvery is 0.
	defaultPruneEvery = time.Minute
)

const deleteTypeMinutes = "DELETE FROM type_minute WHERE (type, minute) IN (SELECT type, minute FROM type_minute WHERE minute < ? LIMIT ?)"

// Prune deletes, now, the readings older than Options.Retention and the
// per-minute aggregates older than Options.RollupRetention (by reading
// timestamp), and returns how many of each it deleted.
func (s *Store) Prune(ctx context.Context) (readings, rollups int64, err error) {
	now := s.keep.Now()
	var rb, ub time.Time
	if s.keep.Retention > 0 {
		rb = now.Add(-s.keep.Retention)
	}
	if s.keep.RollupRetention > 0 {
		ub = now.Add(-s.keep.RollupRetention)
	}
	return s.PruneBefore(ctx, rb, ub)
}

// PruneBefore deletes the readings with a timestamp before readings and the
// per-minute aggregates of the minutes that end at or before rollups (a zero
// time keeps that kind), and returns how many of each it deleted. From then on
// AddReadings ignores readings older than readings.
func (s *Store) PruneBefore(ctx context.Context, readings, rollups time.Time) (nr, nu int64, err error) {
	if !readings.IsZero() {
		cut := readings.UnixMilli()
		s.mu.Lock()
		s.floor = max(s.floor, cut)
		s.mu.Unlock()
		nr, err = s.pruneKeyed(ctx, readingsByKey, cut)
		if err != nil {
			return nr, 0, wrapErr("analytics sqlitestore: prune readings", err)
		}
	}
	if !rollups.IsZero() {
		// The minute m ends at or before the cutoff when m < floor(cutoff / 1 min).
		end := analytics.Minute(rollups)
		nu, err = s.pruneKeyed(ctx, roomMinutesByKey, end)
		if err != nil {
			return nr, nu, wrapErr("analytics sqlitestore: prune room rollups", err)
		}
		for {
			// type_minute has an index by minute: no need to go key by key.
			start := time.Now()
			n, err := s.pruneChunk(ctx, func(ctx context.Context) (int64, error) {
				st, err := s.stmt(ctx, deleteTypeMinutes)
				if err != nil {
					return 0, err
				}
				res, err := st.ExecContext(ctx, end, pruneChunk)
				if err != nil {
					return 0, err
				}
				n, _ := res.RowsAffected()
				return n, nil
			})
			nu += n
			if err != nil {
				return nr, nu, wrapErr("analytics sqlitestore: prune type rollups", err)
			}
			if n < pruneChunk {
				break
			}
			if err := retention.Pause(ctx, time.Since(start)); err != nil {
				return nr, nu, wrapErr("analytics sqlitestore: prune type rollups", err)
			}
		}
	}
	return nr, nu, nil
}

// keyed is a table pruned one key (a series, or a room and type) at a time,
// in key order, along its primary key.
type keyed struct {
	// next selects the key after the one given as parameters.
	next string
	// del deletes up to a number of rows of a key older than a cutoff; its
	// parameters are the key's columns, the cutoff and the number.
	del string
	// first is the key before every other.
	first []any
}

var (
	readingsByKey = keyed{
		next:  "SELECT series FROM readings WHERE series > ? ORDER BY series LIMIT 1",
		del:   "DELETE FROM readings WHERE (series, ts) IN (SELECT series, ts FROM readings WHERE series = ? AND ts < ? LIMIT ?)",
		first: []any{int64(0)},
	}
	roomMinutesByKey = keyed{
		next: "SELECT room_id, type FROM room_minute WHERE (room_id, type) > (?, ?) ORDER BY room_id, type LIMIT 1",
		del: "DELETE FROM room_minute WHERE (room_id, type, minute) IN " +
			"(SELECT room_id, type, minute FROM room_minute WHERE room_id = ? AND type = ? AND minute < ? LIMIT ?)",
		first: []any{"", ""},
	}
)

// pruneKeyed deletes, chunk by chunk, the rows of every key of k older than cut.
func (s *Store) pruneKeyed(ctx context.Context, k keyed, cut int64) (int64, error) {
	var total int64
	after := k.first
	for {
		done := false
		start := time.Now()
		n, err := s.pruneChunk(ctx, func(ctx context.Context) (int64, error) {
			next, err := s.stmt(ctx, k.next)
			if err != nil {
				return 0, err
			}
			del, err := s.stmt(ctx, k.del)
			if err != nil {
				return 0, err
			}
			var n int64
			budget := int64(pruneChunk)
			for range pruneKeys {
				key := make([]any, len(after))
				dest := make([]any, len(key))
				for i := range key {
					dest[i] = &key[i]
				}
				err := next.QueryRowContext(ctx, after...).Scan(dest...)
				if errors.Is(err, sql.ErrNoRows) {
					done = true
					return n, nil
				}
				if err != nil {
					return n, fmt.Errorf("next key: %w", err)
				}
				res, err := del.ExecContext(ctx, append(key, cut, budget)...)
				if err != nil {
					return n, fmt.Errorf("delete: %w", err)
				}
				d, _ := res.RowsAffected()
				n += d
				budget -= d
				if budget <= 0 {
					return n, nil // the key may hold more: the next chunk starts with it again
				}
				after = key
			}
			return n, nil
		})
		total += n
		if err != nil || done {
			return total, err
		}
		if err := retention.Pause(ctx, time.Since(start)); err != nil {
			return total, err
		}
	}
}

// pruneChunk runs fn in one transaction on the write connection, holding the
// write mutex for that transaction only.
func (s *Store) pruneChunk(ctx context.Context, fn func(ctx context.Context) (int64, error)) (int64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.db.Closed() {
		return 0, sqlitex.ErrClosed
	}
	if _, err := s.wconn.ExecContext(ctx, "BEGIN IMMEDIATE"); err != nil {
		return 0, err
	}
	n, err := fn(ctx)
	if err == nil {
		_, err = s.wconn.ExecContext(ctx, "COMMIT")
	}
	if err != nil {
		_, _ = s.wconn.ExecContext(context.WithoutCancel(ctx), "ROLLBACK")
		return 0, err
	}
	return n, nil
}

// recent drops the readings older than the readings pruned so far and than the
// retention, which the store can no longer dedupe; s.mu is held.
func (s *Store) recent(rs []reading.Reading, now time.Time) []reading.Reading {
	floor := s.floor
	if s.keep.Retention > 0 {
		floor = max(floor, now.Add(-s.keep.Retention).UnixMilli())
	}
	if floor == 0 {
		return rs
	}
	return analytics.Recent(rs, floor)
}
