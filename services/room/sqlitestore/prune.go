package sqlitestore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/atrium-iot/atrium/internal/retention"
)

// Retention: the room service keeps no raw readings; its finest data is the
// minute rollup, which plays their part (history at 1m, the 5-minute window of
// the live metrics) and goes after Options.Retention. The five-minute and hour
// rollups go after Options.RollupRetention, so coarse history outlives it. The
// latest values, placements and rooms are current state and are never pruned.
//
// A rollup goes once the whole of its period is older than the cutoff (start +
// period <= now - retention). Deletes run in transactions of at most
// pruneChunk rows, each followed by a pause as long as it took, so an Apply
// waits for one chunk at most and a large backlog takes at most about half of
// the write connection's time.
const (
	pruneChunk = 2000
	// pruneSeries bounds the (room, type) series one chunk looks at.
	pruneSeries = 256
	// defaultPruneEvery is how often the pruner runs when Options.PruneEvery is 0.
	defaultPruneEvery = time.Minute
)

// retentionOf is how long the rollups of tier i are kept (0: forever).
func (s *Store) retentionOf(i int) time.Duration {
	if i == 0 {
		return s.keep.Retention
	}
	return s.keep.RollupRetention
}

// Prune deletes, now, the rollups past their retention and returns how many
// it deleted. With both retentions 0 it does nothing.
func (s *Store) Prune(ctx context.Context) (int64, error) {
	now := s.keep.Now()
	var total int64
	for i, t := range tiers {
		keep := s.retentionOf(i)
		if keep <= 0 {
			continue
		}
		// start + period <= cutoff
		last := now.Add(-keep).UnixMilli() - t.period.Milliseconds()
		var after seriesCursor
		for {
			start := time.Now()
			n, next, done, err := s.pruneChunk(ctx, t.table, last, after)
			total += n
			if err == nil && !done {
				err = retention.Pause(ctx, time.Since(start))
			}
			if err != nil {
				return total, wrapErr("sqlitestore: prune "+t.table, err)
			}
			if done {
				break
			}
			after = next
		}
	}
	return total, nil
}

// seriesCursor is the (room, type) series after which a chunk starts.
type seriesCursor struct{ room, typ string }

// pruneChunk deletes, in one transaction, up to pruneChunk rollups of table
// starting at or before last, from the series after after, in key order.
func (s *Store) pruneChunk(ctx context.Context, table string, last int64, after seriesCursor) (n int64, next seriesCursor, done bool, err error) {
	next = after
	err = s.inTx(ctx, func(tx *sql.Tx) error {
		budget := int64(pruneChunk)
		for range pruneSeries {
			var cur seriesCursor
			err := tx.QueryRowContext(ctx, "SELECT room_id, type FROM "+table+
				" WHERE (room_id, type) > (?, ?) ORDER BY room_id, type LIMIT 1", next.room, next.typ).Scan(&cur.room, &cur.typ)
			if errors.Is(err, sql.ErrNoRows) {
				done = true
				return nil
			}
			if err != nil {
				return fmt.Errorf("next series: %w", err)
			}
			res, err := tx.ExecContext(ctx, "DELETE FROM "+table+" WHERE (room_id, type, start_ms) IN (SELECT room_id, type, start_ms FROM "+
				table+" WHERE room_id = ? AND type = ? AND start_ms <= ? LIMIT ?)", cur.room, cur.typ, last, budget)
			if err != nil {
				return fmt.Errorf("delete: %w", err)
			}
			k, _ := res.RowsAffected()
			n += k
			budget -= k
			if budget <= 0 {
				return nil // the series may hold more: the next chunk starts with it again
			}
			next = cur
		}
		return nil
	})
	if err != nil {
		return 0, after, false, err
	}
	return n, next, done, nil
}
