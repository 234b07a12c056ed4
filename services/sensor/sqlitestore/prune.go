package sqlitestore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"
)

// Retention deletes raw readings older than Options.Retention (by reading
// timestamp) in chunks of at most pruneChunk rows. Each chunk is a request to
// the writer like a batch: it joins a group commit and holds the writer for
// tens of milliseconds at most, and the next one waits as long again, so
// ingest goes on between chunks however large the backlog (the first prune
// after turning retention on for a year of data, say). The registry (first
// and last seen, last values) lives in its own tables and is not touched: a
// sensor silent for longer than the retention keeps its last values.
const (
	// pruneChunk bounds the readings one chunk deletes.
	pruneChunk = 2000
	// pruneSensors bounds the sensors one chunk looks at, so that a chunk over
	// many sensors with nothing to delete is short too.
	pruneSensors = 256
	// defaultPruneEvery is how often the pruner runs when Options.PruneEvery is 0.
	defaultPruneEvery = time.Minute
)

// The statements of a chunk, prepared by the writer: both search the primary
// key (sensor_id, ts_ms, type).
const (
	// nextSensorWithReadings is the first sensor id after ? that has readings.
	nextSensorWithReadings = "SELECT sensor_id FROM readings WHERE sensor_id > ? ORDER BY sensor_id LIMIT 1"
	// deleteOldReadings deletes up to ?3 readings of sensor ?1 older than ?2 (Unix ms).
	deleteOldReadings = `DELETE FROM readings WHERE (sensor_id, ts_ms, type) IN
	(SELECT sensor_id, ts_ms, type FROM readings WHERE sensor_id = ?1 AND ts_ms < ?2 LIMIT ?3)`
)

// pruneReq is one chunk of a prune: delete up to pruneChunk readings older than
// cutoff, of the sensors after the sensor id after, in id order.
type pruneReq struct {
	cutoff int64 // Unix ms: readings with ts_ms < cutoff go
	after  string
}

// pruned is what a chunk did: how many readings it deleted, where the next
// chunk starts, and whether every sensor has been visited.
type pruned struct {
	n     int64
	after string
	done  bool
}

// Prune deletes, now, the raw readings whose timestamp is older than
// Options.Retention, chunk by chunk, and returns how many it deleted. The store
// keeps no rollups, so the second result is always 0 (the MongoDB adapter
// returns its hourly rollups there). With Retention 0 it does nothing.
func (s *Store) Prune(ctx context.Context) (readings, rollups int64, err error) {
	if err := s.db.Check("sqlitestore: prune"); err != nil {
		return 0, 0, err
	}
	if s.retention <= 0 {
		return 0, 0, nil
	}
	req := pruneReq{cutoff: s.now().Add(-s.retention).UnixMilli()}
	// Old readings may wait in the journal: merge them first.
	if err := s.flush(ctx); err != nil {
		return 0, 0, wrapErr("sqlitestore: prune", err)
	}
	pause := time.NewTimer(time.Hour)
	pause.Stop()
	for {
		start := time.Now()
		r, err := s.write(ctx, &writeReq{prune: &req}, false)
		if err != nil {
			return readings, 0, wrapErr("sqlitestore: prune", err)
		}
		readings += r.pruned.n
		if r.pruned.done {
			return readings, 0, nil
		}
		req.after = r.pruned.after
		// Leave the writer to the batches for as long as the chunk took, so
		// that a large backlog takes at most about half of its time.
		pause.Reset(time.Since(start))
		select {
		case <-pause.C:
		case <-ctx.Done():
			return readings, 0, wrapErr("sqlitestore: prune", ctx.Err())
		case <-s.quit:
			return readings, 0, s.db.Check("sqlitestore: prune") // Close closes quit once closed
		}
	}
}

// prune runs one chunk inside the writer's open transaction.
func (w *writer) prune(p *pruneReq) (pruned, error) {
	out := pruned{after: p.after}
	budget := int64(pruneChunk)
	for range pruneSensors {
		var id string
		err := w.nextSensor.QueryRowContext(w.bg, out.after).Scan(&id)
		if errors.Is(err, sql.ErrNoRows) {
			out.done = true
			return out, nil
		}
		if err != nil {
			return pruned{}, fmt.Errorf("next sensor: %w", err)
		}
		res, err := w.delOld.ExecContext(w.bg, id, p.cutoff, budget)
		if err != nil {
			return pruned{}, fmt.Errorf("delete readings of %s: %w", id, err)
		}
		n, _ := res.RowsAffected()
		out.n += n
		budget -= n
		if budget <= 0 {
			// This sensor may have more: the next chunk starts with it again.
			return out, nil
		}
		out.after = id
	}
	return out, nil
}
