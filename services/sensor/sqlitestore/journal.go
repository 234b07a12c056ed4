package sqlitestore

import (
	"cmp"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math"
	"math/bits"
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
// The journal's readings are also kept in memory (journalPart.batches), so a merge
// reads nothing back.
//
// A merge takes the journal's readings as they are when it starts, sorts them,
// and inserts them in steps (mergeTx), each a transaction of its own after a
// group commit, while no request waits: ingest waits for one 500-row statement
// of a merge, not for the whole of it (unless ingest outruns merges: below). Its last
// step writes the registry rows of the merged batches and deletes their journal
// rows; readings that arrive meanwhile wait in the journal for the next merge.
// Should the process stop half-way, Open merges the journal again: the steps
// already done are ignored as the duplicates they are (INSERT OR IGNORE), and the
// registry rows are the same whether written once or twice.
//
// Nothing else changes for callers:
//   - Duplicates are still found at ingest, before the answer: a reading is a
//     duplicate if its identity is in the batch already, in the journal or the
//     merge under way (kept in memory), or in readings, which is looked up only for
//     a reading not newer than its sensor's newest merged one (see merged).
//   - Readings, the only query of the readings table, first has the journal merged
//     when its sensor has readings there, so an accepted reading is never missed;
//     so do the registry queries, whose rows are written with the merge. Prune
//     merges first too.
//   - A journal row commits with its batch; Open merges what a crash left.
//
// A merge starts when the journal holds defaultMergeRows readings, when the
// writer has been idle for defaultMergeIdle, or when a reader asks; the last two
// run it to the end at once. When ingest outruns the steps and the journal
// reaches twice defaultMergeRows, steps no longer yield: so the journal's
// readings in memory (the merge under way and the open part) stay under about
// 4 × 50,000 at worst (some 30 MB), and near 50,000 in steady state.
const (
	defaultMergeRows = 50_000
	defaultMergeIdle = 100 * time.Millisecond
	// defaultMergeStep is the most a step of a merge inserts: ~15 ms of the writer.
	defaultMergeStep = 4_000
)

// readingKey is a reading's identity.
type readingKey struct {
	sensor, typ string
	ts          int64 // Unix ms
}

func keyOf(r reading.Reading) readingKey {
	return readingKey{r.SensorID, r.Type, r.Timestamp.UnixMilli()}
}

// idSet is a set of reading identities, by sensor: a reading newer than every
// one of its sensor's (the usual case: a sensor's readings come in time order)
// is known to be absent after one lookup; an older one is looked for by time in
// its sensor's identities, by binary search while they came in time order, else
// in a set built for it.
type idSet map[string]*sensorIDs

type sensorIDs struct {
	newest  int64
	ids     []idEntry             // in arrival order
	inOrder bool                  // ids are in time order
	set     map[typeTime]struct{} // built once a lookup needs it
}

type typeTime struct {
	ts  int64
	typ string
}

// idEntry is an identity and where its reading is: in a journalPart or a
// groupJournal, reading i of batch b.
type idEntry struct {
	typeTime
	b, i int32
}

func (s idSet) has(k readingKey) bool {
	sid := s[k.sensor]
	if sid == nil || k.ts > sid.newest {
		return false
	}
	if sid.inOrder {
		i, _ := slices.BinarySearchFunc(sid.ids, k.ts, func(id idEntry, ts int64) int { return cmp.Compare(id.ts, ts) })
		for ; i < len(sid.ids) && sid.ids[i].ts == k.ts; i++ {
			if sid.ids[i].typ == k.typ {
				return true
			}
		}
		return false
	}
	if sid.set == nil {
		sid.set = make(map[typeTime]struct{}, len(sid.ids))
		for _, id := range sid.ids {
			sid.set[id.typeTime] = struct{}{}
		}
	}
	_, ok := sid.set[typeTime{k.ts, k.typ}]
	return ok
}

// add adds identity k of reading i of batch b.
func (s idSet) add(k readingKey, b, i int32) {
	sid := s[k.sensor]
	if sid == nil {
		sid = &sensorIDs{newest: k.ts, inOrder: true}
		s[k.sensor] = sid
	}
	if k.ts < sid.newest {
		sid.inOrder = false
	}
	sid.newest = max(sid.newest, k.ts)
	sid.ids = append(sid.ids, idEntry{typeTime{k.ts, k.typ}, b, i})
	if sid.set != nil {
		sid.set[typeTime{k.ts, k.typ}] = struct{}{}
	}
}

// absorb moves the identities of o into s, sensor by sensor, their batch
// numbers raised by db; o must not be used afterwards. A sensor s does not
// hold yet takes o's entry as it is.
func (s idSet) absorb(o idSet, db int32) {
	for sensor, from := range o {
		if db != 0 {
			for i := range from.ids {
				from.ids[i].b += db
			}
		}
		to := s[sensor]
		if to == nil {
			s[sensor] = from
			continue
		}
		if len(from.ids) == 0 {
			continue
		}
		if !from.inOrder || from.ids[0].ts < to.newest {
			to.inOrder = false
		}
		to.newest = max(to.newest, from.newest)
		to.ids = append(to.ids, from.ids...)
		if to.set != nil {
			for _, id := range from.ids {
				to.set[id.typeTime] = struct{}{}
			}
		}
	}
}

// journalBatch is the new readings of a batch, as its journal row holds them,
// and the time it was received.
type journalBatch struct {
	rs     []reading.Reading
	recvMs int64
}

// journalReading is a reading in the journal and the time its batch was received.
type journalReading struct {
	reading.Reading
	recvMs int64
}

// journalPart is a set of journal readings: those not yet taken by a merge, or
// those of the merge under way. It keeps the batches' readings as they came
// (copied nowhere): ids tells where each identity's reading is.
type journalPart struct {
	batches []journalBatch
	n       int   // readings in batches
	ids     idSet // guarded by journal.mu: readers look sensors up
	// reg is the registry rows of the part's batches, written to the registry
	// tables by the merge's last step.
	reg groupRegistry
	seq int64 // the newest journal row holding them
}

func (p *journalPart) reset() {
	clear(p.batches)
	p.batches = p.batches[:0]
	p.n = 0
	clear(p.ids)
	p.reg.reset()
	p.seq = 0
}

func (p *journalPart) has(k readingKey) bool {
	return p.ids.has(k)
}

// journal is what the store knows of the journal table. Only the writer changes
// it; readers ask has and empty, under mu.
type journal struct {
	open    journalPart      // readings no merge has taken yet
	merging journalPart      // the merge under way
	rs      []journalReading // the merge's readings, sorted by key
	next    int              // rs[:next] are in readings
	active  bool             // a merge is under way

	mu sync.RWMutex // guards the ids maps

	// merged holds, per sensor looked up, an upper bound of its newest reading's
	// time in readings (math.MinInt64: none). Prunes only lower the true value.
	merged map[string]int64
}

func newJournal() *journal {
	part := func() journalPart {
		return journalPart{ids: idSet{}}
	}
	return &journal{open: part(), merging: part(), merged: map[string]int64{}}
}

// has reports whether sensor has readings in the journal; safe for any goroutine.
func (j *journal) has(sensor string) bool {
	j.mu.RLock()
	defer j.mu.RUnlock()
	_, open := j.open.ids[sensor]
	_, merging := j.merging.ids[sensor]
	return open || merging
}

// empty reports whether the journal is empty; safe for any goroutine.
func (j *journal) empty() bool {
	j.mu.RLock()
	defer j.mu.RUnlock()
	return len(j.open.ids) == 0 && len(j.merging.ids) == 0
}

// pending reports whether a merge has anything to do.
func (j *journal) pending() bool {
	return j.active || j.open.n > 0 || len(j.open.reg.reg.sensors) > 0
}

// add records what a committed group wrote to the journal table: its batches'
// readings (the group's identities move to the journal), up to row g.seq, and
// the group's registry rows.
func (j *journal) add(g *groupJournal, reg registry) {
	j.open.reg.add(reg)
	j.open.seq = max(j.open.seq, g.seq)
	if g.n == 0 {
		return
	}
	db := int32(len(j.open.batches))
	j.open.batches = append(j.open.batches, g.batches...)
	j.open.n += g.n
	j.mu.Lock()
	defer j.mu.Unlock()
	j.open.ids.absorb(g.ids, db)
}

// start makes the open readings the merge under way, sorted by key.
func (j *journal) start() {
	j.mu.Lock()
	j.open, j.merging = j.merging, j.open // merging was reset when its merge ended
	j.mu.Unlock()
	// Sort by key: sensors by id, each sensor's readings (already in time order
	// when its device sends them so) by time and type.
	sensors := make([]string, 0, len(j.merging.ids))
	for id := range j.merging.ids {
		sensors = append(sensors, id)
	}
	slices.Sort(sensors)
	byKey := func(a, b idEntry) int { return cmp.Or(cmp.Compare(a.ts, b.ts), strings.Compare(a.typ, b.typ)) }
	sorted := slices.Grow(j.rs[:0], j.merging.n)
	for _, id := range sensors {
		ids := j.merging.ids[id].ids
		if !slices.IsSortedFunc(ids, byKey) {
			ids = slices.SortedFunc(slices.Values(ids), byKey)
		}
		for _, id := range ids {
			b := &j.merging.batches[id.b]
			sorted = append(sorted, journalReading{b.rs[id.i], b.recvMs})
		}
	}
	j.rs = sorted
	j.next = 0
	j.active = true
}

// finished records the end of the merge under way: its readings are in readings.
func (j *journal) finished() {
	j.mu.Lock()
	defer j.mu.Unlock()
	for id, sid := range j.merging.ids {
		if m, ok := j.merged[id]; ok && sid.newest > m {
			j.merged[id] = sid.newest
		}
	}
	j.merging.reset()
	clear(j.rs) // let go of the readings' strings
	j.rs = j.rs[:0]
	j.next = 0
	j.active = false
}

// groupJournal is what the batches of the open group add to the journal, folded
// into journal once the group is committed.
type groupJournal struct {
	ids     idSet
	batches []journalBatch
	n       int
	seq     int64 // the newest journal row of the group
}

func (g *groupJournal) reset() {
	clear(g.ids)
	clear(g.batches)
	g.batches = g.batches[:0]
	g.n = 0
	g.seq = 0
}

// add adds a batch's new readings rs, written to journal row seq. ids, when
// not nil, are rs's identities (batch 0) and move to g; else they are computed.
func (g *groupJournal) add(rs []reading.Reading, ids idSet, recvMs, seq int64) {
	if g.ids == nil {
		g.ids = idSet{}
	}
	g.seq = max(g.seq, seq)
	if len(rs) == 0 {
		return
	}
	b := int32(len(g.batches))
	g.batches = append(g.batches, journalBatch{rs, recvMs})
	g.n += len(rs)
	if ids != nil {
		g.ids.absorb(ids, b)
		return
	}
	for i, r := range rs {
		g.ids.add(keyOf(r), b, int32(i))
	}
}

// fresh returns the readings of rs whose identity is stored nowhere yet: not
// earlier in rs, not in the journal (committed or of this group), not in
// readings. When all are, it returns rs itself and their identities (reading i
// of batch 0, for groupJournal.add); else ids is nil.
func (w *writer) fresh(rs []reading.Reading) (_ []reading.Reading, ids idSet, _ error) {
	seen := idSet{}
	var out []reading.Reading // nil while every reading so far is fresh
	for i, r := range rs {
		k := keyOf(r)
		dup, err := w.stored(k, seen)
		if err != nil {
			return nil, nil, err
		}
		switch {
		case dup && out == nil:
			out = append(make([]reading.Reading, 0, len(rs)), rs[:i]...)
		case !dup && out != nil:
			out = append(out, r)
		}
		seen.add(k, 0, int32(i))
	}
	if out == nil {
		return rs, seen, nil
	}
	return out, nil, nil
}

// stored reports whether identity k is in seen, the journal or readings.
func (w *writer) stored(k readingKey, seen idSet) (bool, error) {
	if seen.has(k) {
		return true, nil
	}
	if w.s.j.open.has(k) || w.s.j.merging.has(k) {
		return true, nil
	}
	if w.gj.ids.has(k) {
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
	// mergeChunk is the most rows a merge inserts between two looks at the
	// requests waiting.
	mergeChunk = 512
)

// mergeSteps goes on with the merge under way, or starts one when the journal
// holds Store.mergeRows readings, step by step while no request waits for the writer.
// A step ends early when one comes, unless the journal has grown to twice
// mergeRows: then merges must catch up.
func (w *writer) mergeSteps() {
	j := w.s.j
	for {
		if !j.active {
			if j.open.n < w.s.mergeRows {
				return
			}
			j.start()
		}
		behind := j.open.n >= 2*w.s.mergeRows
		if err := w.mergeTx(w.s.mergeStep, !behind); err != nil {
			w.s.db.Log.Error("sqlite journal merge failed", "readings", len(j.rs)-j.next, "err", err)
			return
		}
		if w.gc.Queued() > 0 && !behind {
			return
		}
	}
}

// mergeAll merges the whole journal now; it logs its error too.
func (w *writer) mergeAll() error {
	j := w.s.j
	var err error
	for err == nil && j.pending() {
		if !j.active {
			j.start()
		}
		err = w.mergeTx(len(j.rs), false)
	}
	if err != nil {
		w.s.db.Log.Error("sqlite journal merge failed", "readings", len(j.rs)-j.next, "err", err)
	}
	return err
}

// mergeTx inserts up to the next n readings of the merge under way in a
// transaction, stopping after mergeChunk of them when a request waits for the
// writer if yield is set; with the last readings, it writes the
// merge's registry rows and deletes its journal rows.
func (w *writer) mergeTx(n int, yield bool) error {
	// A merge need not be durable: its readings are in the journal until its
	// last step has committed, and merging them again changes nothing.
	return w.unsynced(func() error { return w.mergeTxUnsynced(n, yield) })
}

// unsynced runs f, whose commits need not be durable, with synchronous
// NORMAL: they skip the fsync (in WAL mode NORMAL keeps the database
// consistent after a power cut, losing at most the latest commits), and the
// next durable commit's fsync makes them durable with it.
func (w *writer) unsynced(f func() error) error {
	restore, err := w.relaxed()
	if err != nil {
		return err
	}
	defer restore()
	return f()
}

// relaxed sets synchronous NORMAL (see unsynced) and returns what restores the
// store's mode.
func (w *writer) relaxed() (restore func(), _ error) {
	if w.s.db.Sync != "FULL" && w.s.db.Sync != "EXTRA" {
		return func() {}, nil
	}
	if _, err := w.syncNormal.ExecContext(w.bg); err != nil {
		return nil, fmt.Errorf("synchronous normal: %w", err)
	}
	return func() {
		if _, err := w.syncFull.ExecContext(w.bg); err != nil {
			w.s.db.Log.Error("sqlite synchronous mode not restored", "err", err)
		}
	}, nil
}

func (w *writer) mergeTxUnsynced(n int, yield bool) error {
	j := w.s.j
	rs := j.rs
	if _, err := w.begin.ExecContext(w.bg); err != nil {
		return fmt.Errorf("merge journal: begin: %w", err)
	}
	start, end, stored := j.next, j.next, 0
	var err error
	for end < len(rs) && end-start < n {
		chunk := rs[end:min(end+mergeChunk, len(rs))]
		var k int
		if k, err = w.insertReadings(chunk); err != nil {
			break
		}
		stored += k
		end += len(chunk)
		if yield && w.gc.Queued() > 0 {
			break
		}
	}
	last := end == len(rs)
	if err == nil && last {
		err = w.updateRegistry(j.merging.reg.reg)
		if err == nil {
			_, err = w.clearJournal.ExecContext(w.bg, j.merging.seq)
		}
	}
	if err == nil {
		_, err = w.commit.ExecContext(w.bg)
	}
	if err != nil {
		if _, rerr := w.rollback.ExecContext(w.bg); rerr != nil {
			w.s.db.Log.Error("sqlite rollback failed", "err", rerr)
		}
		return fmt.Errorf("merge journal: %w", err)
	}
	if stored != end-start {
		// Expected only when merging again what an interrupted merge had begun.
		w.s.db.Log.Info("sqlite journal merge: readings already stored", "readings", end-start, "new", stored)
	}
	j.next = end
	if last {
		j.finished()
	}
	w.s.commits.Add(1)
	w.checkpointAfter()
	return nil
}

// insertReadings inserts rs (at most mergeChunk, sorted by key) into readings,
// a run of rows sharing columns per statement (see seriesRow), and returns how
// many were new.
func (w *writer) insertReadings(rs []journalReading) (int, error) {
	stored := 0
	for len(rs) > 0 {
		r0 := &rs[0]
		sensor := 1 // rows of r0's sensor, room and site
		for sensor < len(rs) && sensor < maxRun && rs[sensor].SensorID == r0.SensorID &&
			rs[sensor].RoomID == r0.RoomID && rs[sensor].Site == r0.Site {
			sensor++
		}
		series := 1 // of those, rows of r0's type and unit too
		for series < sensor && rs[series].Type == r0.Type && rs[series].Unit == r0.Unit {
			series++
		}
		m, n := &w.insSensor, sensor
		if series >= minSeries || series == sensor {
			m, n = &w.insSeries, series
		}
		// A power of two, so that few statements are ever prepared.
		n = 1 << (bits.Len(uint(n)) - 1)
		st, err := w.stmt(m, n)
		if err != nil {
			return stored, fmt.Errorf("prepare insert: %w", err)
		}
		w.args = append(w.args[:0], r0.SensorID, r0.Timestamp.UnixMilli(), r0.Type, r0.RoomID, r0.Site, r0.Value, r0.Unit, r0.recvMs)
		for i := 1; i < n; i++ {
			r := &rs[i]
			if m == &w.insSeries {
				w.args = append(w.args, r.Timestamp.UnixMilli(), r.Value, r.recvMs)
			} else {
				w.args = append(w.args, r.Timestamp.UnixMilli(), r.Type, r.Value, r.Unit, r.recvMs)
			}
		}
		res, err := st.ExecContext(w.bg, w.args...)
		clear(w.args) // let go of the strings
		if err != nil {
			return stored, fmt.Errorf("insert readings: %w", err)
		}
		k, _ := res.RowsAffected()
		stored += int(k)
		rs = rs[n:]
	}
	return stored, nil
}

const (
	// maxRun is the most rows of one INSERT of a merge.
	maxRun = 256
	// minSeries is the least rows of one series written apart from the
	// other readings of its sensor.
	minSeries = 8
)

// mergeLeftover merges what a previous process left in the journal; Open calls
// it before the writer starts.
func (w *writer) mergeLeftover() error {
	rows, err := w.conn.QueryContext(w.bg, "SELECT seq, received_ms, body FROM journal ORDER BY seq")
	if err != nil {
		return fmt.Errorf("read journal: %w", err)
	}
	defer rows.Close()
	j := w.s.j
	var n int
	for rows.Next() {
		var seq, recvMs int64
		var body []byte
		if err := rows.Scan(&seq, &recvMs, &body); err != nil {
			return fmt.Errorf("read journal: %w", err)
		}
		_, batch, err := decodeEvent(body)
		if err != nil {
			return fmt.Errorf("read journal row %d: %w", seq, err)
		}
		// The registry rows batch by batch, as ingest made them.
		var g groupJournal
		g.add(batch, nil, recvMs, seq)
		j.add(&g, newRegistry(batch, recvMs))
		n += len(batch)
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("read journal: %w", err)
	}
	rows.Close()
	if n == 0 {
		return nil
	}
	if w.mergeAll() != nil {
		return errors.New("merge journal: failed (see the log)")
	}
	w.s.db.Log.Info("sqlite journal left by the last run merged", "readings", n)
	return nil
}

// flush has the writer merge the journal into the readings table now.
func (s *Store) flush(ctx context.Context) error {
	if _, err := s.write(ctx, &writeReq{merge: true}, false); err != nil {
		return err
	}
	return nil
}
