package clickhousestore

import (
	"context"
	"fmt"
	"math"
	"slices"
	"time"

	"github.com/atrium-iot/atrium/internal/reading"
	"github.com/atrium-iot/atrium/internal/rowscan"
	"github.com/atrium-iot/atrium/services/analytics"
)

// Retention: the raw readings (kept for dedupe and for repairs of the
// aggregates) go after Options.Retention, the per-minute aggregates (minutes,
// type_minutes), which every query reads, after Options.RollupRetention. The
// latest values, the alerts and the reports are never pruned.
//
// ClickHouse 18.16 has no TTL, so the store deletes with ALTER TABLE … DELETE,
// a mutation the server applies in the background; PruneBefore waits until it
// is done. On 18.16 a mutation rewrites every part of the table, whatever rows
// it matches, so Prune moves its cutoffs a whole day (UTC) at a time: the
// pruner runs every hour, and starts a mutation once a day per table (a run
// that finds nothing past the cutoffs starts none). Data is thus kept for up
// to a day (and an hour) past its retention. The partitions (months) wholly
// past a cutoff are dropped instead, which rewrites nothing.
//
// The cutoffs are kept in the cutoffs table. Once the readings older than a
// cutoff are gone, a reading older than it can no longer be told from one
// already counted, so AddReadings ignores it; and the repairs of the aggregates
// (Open's check, the reconciliation of a failed INSERT) never look before the
// cutoffs: the aggregates there have no readings left to be compared with.

const (
	// defaultPruneEvery is how often the pruner runs when Options.PruneEvery is 0.
	defaultPruneEvery = time.Hour
	// pruneStep is what Prune rounds its cutoffs down to.
	pruneStep = 24 * time.Hour
)

// noCutoff is a cutoff before every reading.
const noCutoff = math.MinInt64

const cutoffsDDL = ` (
    kind      String,
    cutoff_ms Int64,
    version   UInt64
) ENGINE = ReplacingMergeTree(version)
ORDER BY kind`

// Kinds of cutoffs: readings before cutoffReadings (Unix ms) and aggregates of
// the minutes before cutoffRollups (the first ms of a minute) were deleted.
const (
	cutoffReadings = "readings"
	cutoffRollups  = "rollups"
)

// loadCutoffs reads the persisted cutoffs into s.
func (s *Store) loadCutoffs(ctx context.Context) error {
	s.readCut, s.rollupCut = noCutoff, noCutoff
	rows, err := s.conn.Query(ctx, `SELECT kind, max(cutoff_ms) FROM `+s.t("cutoffs")+` GROUP BY kind`)
	if err != nil {
		return fmt.Errorf("load cutoffs: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var kind string
		var ms int64
		if err := rows.Scan(&kind, &ms); err != nil {
			return fmt.Errorf("load cutoffs: %w", err)
		}
		switch kind {
		case cutoffReadings:
			s.readCut = ms
		case cutoffRollups:
			s.rollupCut = ms
		}
	}
	return rows.Err()
}

// repairFrom is the first millisecond a repair of the aggregates may look at:
// the first whole minute whose readings were not pruned, and not before the
// pruned aggregates. s.pmu is held (or the writer is not running yet).
func (s *Store) repairFrom() int64 {
	lo := s.rollupCut
	if s.readCut != noCutoff {
		lo = max(lo, floorMinute(s.readCut-1)+60000) // the minute at or after the cutoff
	}
	return lo
}

// compareFrom is the first millisecond whose aggregates Open compares with the
// readings: the minute of the readings cutoff, whose aggregates count readings
// pruned too, so that a partition pruned only in part never looks short of
// aggregates. s.pmu is held (or the writer is not running yet).
func (s *Store) compareFrom() int64 {
	lo := s.rollupCut
	if s.readCut != noCutoff {
		lo = max(lo, floorMinute(s.readCut))
	}
	return lo
}

// Prune deletes, now, the readings older than Options.Retention and the
// per-minute aggregates older than Options.RollupRetention (by reading
// timestamp), each cutoff rounded down to a day (UTC), and returns how many of
// each it deleted.
func (s *Store) Prune(ctx context.Context) (readings, rollups int64, err error) {
	now := s.opts.Now().UTC()
	var rb, ub time.Time
	if s.opts.Retention > 0 {
		rb = now.Add(-s.opts.Retention).Truncate(pruneStep)
	}
	if s.opts.RollupRetention > 0 {
		ub = now.Add(-s.opts.RollupRetention).Truncate(pruneStep)
	}
	return s.PruneBefore(ctx, rb, ub)
}

// PruneBefore deletes the readings with a timestamp before readings and the
// per-minute aggregates of the minutes that end at or before rollups (a zero
// time keeps that kind), and returns how many of each it deleted (copies of a
// reading or of an aggregate row not yet merged away count once). From then on
// AddReadings ignores readings older than readings. It returns once the
// server has applied the deletes.
func (s *Store) PruneBefore(ctx context.Context, readings, rollups time.Time) (nr, nu int64, err error) {
	if readings.IsZero() && rollups.IsZero() {
		return 0, 0, nil
	}
	s.mu.RLock()
	if s.closed {
		s.mu.RUnlock()
		return 0, 0, fmt.Errorf("clickhousestore: prune: %w: store closed", analytics.ErrUnavailable)
	}
	s.inflight.Add(1)
	s.mu.RUnlock()
	defer s.inflight.Done()

	readCut, rollupCut := int64(noCutoff), int64(noCutoff)
	if !readings.IsZero() {
		readCut = readings.UnixMilli()
	}
	if !rollups.IsZero() {
		// The minute m ends at or before the cutoff when m < the cutoff's minute.
		rollupCut = floorMinute(rollups.UnixMilli())
	}
	// Move the cutoffs with no INSERT in flight: from then on, the writer adds
	// nothing the deletes below would have to count.
	if err := s.moveCutoffs(ctx, readCut, rollupCut); err != nil {
		return 0, 0, wrapErr("clickhousestore: prune", err)
	}
	if readCut != noCutoff {
		nr, err = s.deleteBefore(ctx, "readings", "ts_ms", readCut, "room_id, type, ts_ms, sensor_id")
		if err != nil {
			return 0, 0, wrapErr("clickhousestore: prune readings", err)
		}
	}
	if rollupCut != noCutoff {
		for _, a := range []struct{ table, key string }{{"minutes", "room_id, type, minute_ms"}, {"type_minutes", "type, minute_ms"}} {
			n, err := s.deleteBefore(ctx, a.table, "minute_ms", rollupCut, a.key)
			nu += n
			if err != nil {
				return nr, nu, wrapErr("clickhousestore: prune "+a.table, err)
			}
		}
	}
	return nr, nu, nil
}

// moveCutoffs records the cutoffs that are later than the current ones, first
// in the cutoffs table, then in s, between two INSERTs.
func (s *Store) moveCutoffs(ctx context.Context, readCut, rollupCut int64) error {
	s.pmu.Lock()
	defer s.pmu.Unlock()
	type move struct {
		kind string
		ms   int64
		to   *int64
	}
	var moves []move
	if readCut > s.readCut {
		moves = append(moves, move{cutoffReadings, readCut, &s.readCut})
	}
	if rollupCut > s.rollupCut {
		moves = append(moves, move{cutoffRollups, rollupCut, &s.rollupCut})
	}
	if len(moves) == 0 {
		return nil
	}
	batch, err := s.conn.PrepareBatch(ctx, `INSERT INTO `+s.t("cutoffs")+` (kind, cutoff_ms, version)`)
	if err != nil {
		return fmt.Errorf("record cutoffs: %w", err)
	}
	defer func() { _ = batch.Abort() }()
	for _, m := range moves {
		if err := batch.Append(m.kind, m.ms, s.version()); err != nil {
			return fmt.Errorf("record cutoffs: %w", err)
		}
	}
	if err := batch.Send(); err != nil {
		return fmt.Errorf("record cutoffs: %w", err)
	}
	for _, m := range moves {
		*m.to = m.ms
	}
	return nil
}

// deleteBefore deletes the rows of table whose col is before cut and returns
// how many distinct keys they held (copies not yet merged away count once). It
// drops the partitions wholly before cut, and deletes the rest with a mutation,
// started only when there is something to delete. It counts before deleting,
// a day at a time from the oldest row (the count dedupes in memory).
func (s *Store) deleteBefore(ctx context.Context, table, col string, cut int64, key string) (int64, error) {
	parts, err := s.partitionsBefore(ctx, table, cut)
	if err != nil {
		return 0, err
	}
	var n, partial int64
	var drop []string
	for _, p := range parts {
		lo, hi, err := s.monthBounds(ctx, p)
		if err != nil {
			return 0, err
		}
		var first int64
		var rows uint64
		if err := s.conn.QueryRow(ctx, `SELECT min(`+col+`), count() FROM `+s.t(table)+
			` WHERE `+col+` >= `+n64(lo)+` AND `+col+` < `+n64(min(hi, cut))).Scan(&first, &rows); err != nil {
			return 0, fmt.Errorf("count rows to delete: %w", err)
		}
		if rows == 0 {
			continue
		}
		const day = 24 * 60 * 60 * 1000
		for from := first; from < min(hi, cut); from += day {
			var c uint64
			if err := s.conn.QueryRow(ctx, `SELECT count() FROM (SELECT DISTINCT `+key+` FROM `+s.t(table)+
				` WHERE `+col+` >= `+n64(from)+` AND `+col+` < `+n64(min(from+day, hi, cut))+`)`).Scan(&c); err != nil {
				return 0, fmt.Errorf("count rows to delete: %w", err)
			}
			n += int64(c)
			if hi > cut {
				partial += int64(c)
			}
		}
		if hi <= cut {
			drop = append(drop, p)
		}
	}
	for _, p := range drop {
		if err := s.conn.Exec(ctx, `ALTER TABLE `+s.t(table)+` DROP PARTITION ID `+quote(p)); err != nil {
			return 0, fmt.Errorf("drop partition %s: %w", p, err)
		}
	}
	if partial == 0 {
		return n, nil
	}
	before, err := s.mutations(ctx, table)
	if err != nil {
		return 0, err
	}
	if err := s.conn.Exec(ctx, `ALTER TABLE `+s.t(table)+` DELETE WHERE `+col+` < `+n64(cut)); err != nil {
		return 0, fmt.Errorf("delete: %w", err)
	}
	if err := s.awaitMutations(ctx, table, before); err != nil {
		return 0, err
	}
	return n, nil
}

// partitionsBefore returns the partitions (YYYYMM) of table that may hold rows
// before cut: those of its month and before.
func (s *Store) partitionsBefore(ctx context.Context, table string, cut int64) ([]string, error) {
	rows, err := s.conn.Query(ctx, `SELECT DISTINCT partition FROM system.parts WHERE database = `+quote(s.db)+
		` AND table = `+quote(table)+` AND active AND partition <= toString(toYYYYMM(toDateTime(intDiv(`+n64(cut)+`, 1000))))`)
	if err != nil {
		return nil, fmt.Errorf("list partitions: %w", err)
	}
	out, err := rowscan.All(rows, rowscan.Values[string]())
	if err != nil {
		return nil, fmt.Errorf("list partitions: %w", err)
	}
	slices.Sort(out)
	return out, nil
}

// mutations returns the ids of the mutations of table the server knows.
func (s *Store) mutations(ctx context.Context, table string) (map[string]bool, error) {
	rows, err := s.conn.Query(ctx, `SELECT mutation_id, is_done FROM system.mutations WHERE database = `+quote(s.db)+` AND table = `+quote(table))
	if err != nil {
		return nil, fmt.Errorf("list mutations: %w", err)
	}
	out, err := rowscan.Map(rows, func(r rowscan.Row) (string, bool, error) {
		var id string
		var done uint8
		err := r.Scan(&id, &done)
		return id, done == 1, err
	})
	if err != nil {
		return nil, fmt.Errorf("list mutations: %w", err)
	}
	return out, nil
}

// awaitMutations waits until the mutations of table that are not in before
// (those an ALTER just started) are done.
func (s *Store) awaitMutations(ctx context.Context, table string, before map[string]bool) error {
	wait := 10 * time.Millisecond
	for {
		now, err := s.mutations(ctx, table)
		if err != nil {
			return err
		}
		pending := 0
		for id, done := range now {
			if _, old := before[id]; !old && !done {
				pending++
			}
		}
		if pending == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("wait for the delete: %w", ctx.Err())
		case <-time.After(wait):
		}
		wait = min(2*wait, time.Second)
	}
}

// recent drops the readings older than the readings cutoff, than the
// aggregates pruned and than the retention: the store can no longer dedupe
// them. s.pmu is held.
func (s *Store) recent(rs []reading.Reading) []reading.Reading {
	floor := max(s.readCut, s.rollupCut)
	if s.opts.Retention > 0 {
		floor = max(floor, s.opts.Now().Add(-s.opts.Retention).UnixMilli())
	}
	if floor == noCutoff {
		return rs
	}
	return analytics.Recent(rs, floor)
}
