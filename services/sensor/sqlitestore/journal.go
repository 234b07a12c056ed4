package sqlitestore

import (
	"cmp"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/atrium-iot/atrium/internal/reading"
)

// The journal.
//
// The readings table is keyed (sensor_id, ts_ms, type), so each sensor's readings
// sit on pages of their own, and a commit of readings from N sensors rewrites N
// pages, however few readings each brings: at 500-reading batches from as many
// sensors, ~4 KiB of WAL (and again of checkpoint) per ~100-byte reading, the
// writer's largest cost. So ingest appends a batch's new readings to the journal
// table as one row, in the outbox's compact form, where batches fill pages one
// after another; the writer moves them into readings in large merges, sorted by
// key, which write each sensor's page once for all of its readings in the merge.
// The journal's readings are also kept in memory (journal.pending), so a merge
// reads nothing back.
//
// Nothing else changes for callers:
//   - Duplicates are still found at ingest, before the answer: a reading is a
//     duplicate if its identity is in the batch already, in the journal (kept in
//     memory, see journal.keys), or in readings, which is looked up only for a
//     reading not newer than its sensor's newest merged one (see merged).
//   - Readings, the only query of the readings table, first has the journal merged
//     when its sensor has readings there, so an accepted reading is never missed.
//     Prune merges first too.
//   - A journal row commits with its batch; Open merges what a crash left.
//
// A merge runs in its own transaction when the journal holds mergeRows readings,
// when the writer has been idle for defaultMergeIdle, or when a reader asks.
const (
	mergeRows        = 50_000
	defaultMergeIdle = 100 * time.Millisecond
)

// readingKey is a reading's identity.
type readingKey struct {
	sensor, typ string
	ts          int64 // Unix ms
}

func keyOf(r reading.Reading) readingKey {
	return readingKey{r.SensorID, r.Type, r.Timestamp.UnixMilli()}
}

// journal is what the store knows of the journal table. Only the writer changes
// it; readers ask has under mu.
type journal struct {
	rows    int                     // readings in the journal table
	pending []journalReading        // those readings
	keys    map[readingKey]struct{} // their identities
	// reg is the registry rows of the journal's batches, written to the
	// registry tables with the merge: the registry tables plus the journal are
	// the whole registry, and Open rebuilds reg from the journal after a crash.
	reg groupRegistry

	mu     sync.RWMutex
	newest map[string]int64 // per sensor in the journal, its newest reading (guarded by mu)

	// merged holds, per sensor looked up, an upper bound of its newest reading's
	// time in readings (math.MinInt64: none). Prunes only lower the true value.
	merged map[string]int64
}

func newJournal() *journal {
	return &journal{keys: map[readingKey]struct{}{}, newest: map[string]int64{}, merged: map[string]int64{}}
}

// has reports whether sensor has readings in the journal; safe for any goroutine.
func (j *journal) has(sensor string) bool {
	j.mu.RLock()
	defer j.mu.RUnlock()
	_, ok := j.newest[sensor]
	return ok
}

// empty reports whether the journal is empty; safe for any goroutine.
func (j *journal) empty() bool {
	j.mu.RLock()
	defer j.mu.RUnlock()
	return len(j.newest) == 0
}

// journalReading is a reading in the journal and the time its batch was received.
type journalReading struct {
	reading.Reading
	recvMs int64
}

// add records readings committed to the journal table, and their registry rows.
func (j *journal) add(rs []journalReading, reg registry) {
	j.reg.add(reg)
	if len(rs) == 0 {
		return
	}
	j.pending = append(j.pending, rs...)
	j.mu.Lock()
	defer j.mu.Unlock()
	for _, r := range rs {
		k := keyOf(r.Reading)
		j.keys[k] = struct{}{}
		if n, ok := j.newest[k.sensor]; !ok || k.ts > n {
			j.newest[k.sensor] = k.ts
		}
	}
	j.rows += len(rs)
}

// emptied records a merge: every journal reading is now in readings.
func (j *journal) emptied() {
	j.mu.Lock()
	defer j.mu.Unlock()
	for id, ts := range j.newest {
		if m, ok := j.merged[id]; ok && ts > m {
			j.merged[id] = ts
		}
	}
	clear(j.newest)
	clear(j.keys)
	j.rows = 0
	clear(j.pending)
	j.pending = j.pending[:0]
	j.reg.reset()
}

// groupJournal is what the batches of the open group add to the journal, folded
// into journal once the group is committed.
type groupJournal struct {
	keys map[readingKey]struct{}
	rs   []journalReading
}

func (g *groupJournal) reset() {
	clear(g.keys)
	g.rs = g.rs[:0]
}

func (g *groupJournal) add(rs []reading.Reading, recvMs int64) {
	if g.keys == nil {
		g.keys = map[readingKey]struct{}{}
	}
	for _, r := range rs {
		g.keys[keyOf(r)] = struct{}{}
		g.rs = append(g.rs, journalReading{r, recvMs})
	}
}

// fresh returns the readings of rs whose identity is stored nowhere yet: not
// earlier in rs, not in the journal (committed or of this group), not in
// readings. It returns rs itself when all are.
func (w *writer) fresh(rs []reading.Reading) ([]reading.Reading, error) {
	seen := make(map[readingKey]struct{}, len(rs))
	var out []reading.Reading // nil while every reading so far is fresh
	for i, r := range rs {
		k := keyOf(r)
		dup, err := w.stored(k, seen)
		if err != nil {
			return nil, err
		}
		switch {
		case dup && out == nil:
			out = append(make([]reading.Reading, 0, len(rs)), rs[:i]...)
		case !dup && out != nil:
			out = append(out, r)
		}
		seen[k] = struct{}{}
	}
	if out == nil {
		return rs, nil
	}
	return out, nil
}

// stored reports whether identity k is in seen, the journal or readings.
func (w *writer) stored(k readingKey, seen map[readingKey]struct{}) (bool, error) {
	if _, ok := seen[k]; ok {
		return true, nil
	}
	if _, ok := w.s.j.keys[k]; ok {
		return true, nil
	}
	if _, ok := w.gj.keys[k]; ok {
		return true, nil
	}
	newest, ok := w.s.j.merged[k.sensor]
	if !ok {
		err := w.newestMerged.QueryRowContext(w.bg, k.sensor).Scan(&newest)
		switch {
		case errors.Is(err, sql.ErrNoRows):
			newest = math.MinInt64
		case err != nil:
			return false, fmt.Errorf("read newest reading of %s: %w", k.sensor, err)
		}
		w.s.j.merged[k.sensor] = newest
	}
	if k.ts > newest {
		return false, nil
	}
	var one int
	err := w.getReading.QueryRowContext(w.bg, k.sensor, k.ts, k.typ).Scan(&one)
	if errors.Is(err, sql.ErrNoRows) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("look up reading of %s: %w", k.sensor, err)
	}
	return true, nil
}

const (
	// newestMerged is a sensor's newest reading time in readings.
	newestMerged = "SELECT ts_ms FROM readings WHERE sensor_id = ? ORDER BY ts_ms DESC LIMIT 1"
	// getReading looks one identity up in readings.
	getReading = "SELECT 1 FROM readings WHERE sensor_id = ? AND ts_ms = ? AND type = ?"
	// mergeChunk is the rows per INSERT of a merge.
	mergeChunk = 500
)

// merge moves the journal into readings in a transaction of its own and answers
// the merge requests waiting.
func (w *writer) merge() {
	var err error
	if w.s.j.rows > 0 || len(w.s.j.reg.reg.sensors) > 0 {
		err = w.mergeTx()
	}
	for _, req := range w.mergeWaiting {
		req.reply <- writeReply{err: err}
		w.s.inflight.Done()
	}
	clear(w.mergeWaiting)
	w.mergeWaiting = w.mergeWaiting[:0]
}

func (w *writer) mergeTx() error {
	if _, err := w.begin.ExecContext(w.bg); err != nil {
		return fmt.Errorf("merge journal: begin: %w", err)
	}
	n, err := w.mergeReadings()
	if err == nil {
		err = w.updateRegistry(w.s.j.reg.reg)
	}
	if err == nil {
		_, err = w.clearJournal.ExecContext(w.bg)
	}
	if err == nil {
		_, err = w.commit.ExecContext(w.bg)
	}
	if err != nil {
		if _, rerr := w.rollback.ExecContext(w.bg); rerr != nil {
			w.s.log.Error("sqlite rollback failed", "err", rerr)
		}
		w.s.log.Error("sqlite journal merge failed", "readings", w.s.j.rows, "err", err)
		return fmt.Errorf("merge journal: %w", err)
	}
	if n != w.s.j.rows {
		// Not expected: ingest checked every identity.
		w.s.log.Error("sqlite journal merge: readings already stored", "journal", w.s.j.rows, "merged", n)
	}
	w.s.j.emptied()
	w.s.commits.Add(1)
	w.checkpointAfter()
	return nil
}

// mergeReadings inserts the journal's readings into readings in key order, so
// that each page of readings is changed once, and returns how many were new.
func (w *writer) mergeReadings() (int, error) {
	rs := w.s.j.pending
	slices.SortFunc(rs, func(a, b journalReading) int {
		return cmp.Or(strings.Compare(a.SensorID, b.SensorID),
			cmp.Compare(a.Timestamp.UnixMilli(), b.Timestamp.UnixMilli()),
			strings.Compare(a.Type, b.Type))
	})
	args := make([]any, 0, 8*min(len(rs), mergeChunk))
	stored := 0
	for start := 0; start < len(rs); start += mergeChunk {
		chunk := rs[start:min(start+mergeChunk, len(rs))]
		args = args[:0]
		for _, r := range chunk {
			args = append(args, r.SensorID, r.Timestamp.UnixMilli(), r.Type, r.RoomID, r.Site, r.Value, r.Unit, r.recvMs)
		}
		st, err := w.stmt(&w.insReadings, len(chunk))
		if err != nil {
			return stored, fmt.Errorf("prepare insert: %w", err)
		}
		res, err := st.ExecContext(w.bg, args...)
		if err != nil {
			return stored, fmt.Errorf("insert readings: %w", err)
		}
		n, _ := res.RowsAffected()
		stored += int(n)
	}
	return stored, nil
}

// mergeLeftover merges what a previous process left in the journal; Open calls
// it before the writer starts.
func (w *writer) mergeLeftover() error {
	rows, err := w.conn.QueryContext(w.bg, "SELECT received_ms, body FROM journal ORDER BY seq")
	if err != nil {
		return fmt.Errorf("read journal: %w", err)
	}
	defer rows.Close()
	var rs []journalReading
	for rows.Next() {
		var recvMs int64
		var body []byte
		if err := rows.Scan(&recvMs, &body); err != nil {
			return fmt.Errorf("read journal: %w", err)
		}
		_, batch, err := decodeEvent(body)
		if err != nil {
			return fmt.Errorf("read journal: %w", err)
		}
		// The registry rows, batch by batch, as ingest made them.
		w.s.j.reg.add(newRegistry(batch, recvMs))
		for _, r := range batch {
			rs = append(rs, journalReading{r, recvMs})
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("read journal: %w", err)
	}
	rows.Close()
	if len(rs) == 0 {
		return nil
	}
	w.s.j.add(rs, registry{})
	if err := w.mergeTx(); err != nil {
		return err
	}
	n := len(rs)
	w.s.log.Info("sqlite journal left by the last run merged", "readings", n)
	return nil
}

// flush has the writer merge the journal into the readings table now.
func (s *Store) flush(ctx context.Context) error {
	if _, err := s.write(ctx, &writeReq{ctx: ctx, merge: true}, false); err != nil {
		return err
	}
	return nil
}
