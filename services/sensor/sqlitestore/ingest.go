package sqlitestore

import (
	"cmp"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/atrium-iot/atrium/internal/apperr"
	"github.com/atrium-iot/atrium/internal/groupcommit"
	"github.com/atrium-iot/atrium/internal/reading"
	"github.com/atrium-iot/atrium/internal/sqlitex"
	"github.com/atrium-iot/atrium/services/sensor"
)

// A group commit takes every request waiting when the writer is free, up to
// 20,000 readings and 512 requests, so that one transaction never grows
// without limit; a durable group waits up to 2 ms for Ingest calls preparing
// a batch (never when none is).
var groupOptions = groupcommit.Options{MaxSize: 20000, MaxCalls: 512, MaxWait: 2 * time.Millisecond, Queue: 1024}

// writeReq is one unit of work for the writer: a batch to ingest, an outbox
// event to acknowledge (ack != ""), a sensor's status mark (mark != nil), a
// chunk of a prune (prune != nil), or a merge of the journal (merge).
type writeReq struct {
	ctx   context.Context // the caller's (set by write)
	batch *prepared
	ack   string
	mark  *sensor.StatusMark
	prune *pruneReq
	merge bool
}

func (r *writeReq) size() int {
	if r.batch == nil {
		return 1
	}
	return len(r.batch.rs)
}

func (r *writeReq) id() string {
	switch {
	case r.merge:
		return "merge"
	case r.prune != nil:
		return "prune"
	case r.mark != nil:
		return "mark " + r.mark.SensorID
	case r.batch == nil:
		return r.ack
	}
	return r.batch.key
}

type writeReply struct {
	out    sensor.Outcome
	pruned pruned
	err    error
}

// Ingest stores b; see sensor.Store. Readings keep millisecond precision; a
// reading without a site takes the batch's site. The call returns once the
// transaction holding b is committed.
func (s *Store) Ingest(ctx context.Context, b sensor.Batch) (sensor.Outcome, error) {
	if b.ID == "" {
		return sensor.Outcome{}, fmt.Errorf("sqlitestore: ingest: %w: empty batch id", apperr.ErrInvalid)
	}
	if s.db.Closed() {
		return sensor.Outcome{}, fmt.Errorf("sqlitestore: ingest %s: %w", b.ID, sqlitex.ErrClosed)
	}
	// A resent batch is answered from the read pool without queueing for the
	// writer; the writer checks again inside its transaction.
	if out, ok, err := s.replay(ctx, b.Key(), b.Fingerprint); err != nil {
		return sensor.Outcome{}, wrapErr("sqlitestore: ingest "+b.ID, err)
	} else if ok {
		return out, nil
	}
	// The writer holds its transaction open a little for batches being prepared.
	s.w.gc.Coming()
	r, err := s.write(ctx, &writeReq{batch: prepare(b, s.now)}, true)
	if err != nil {
		return sensor.Outcome{}, wrapErr("sqlitestore: ingest "+b.ID, err)
	}
	return r.out, nil
}

// AckEvent deletes the outbox entry of batchID. Acknowledging an unknown or
// already acknowledged batch is not an error.
func (s *Store) AckEvent(ctx context.Context, batchID string) error {
	if batchID == "" {
		return fmt.Errorf("sqlitestore: ack event: %w: empty batch id", apperr.ErrInvalid)
	}
	if _, err := s.write(ctx, &writeReq{ack: batchID}, false); err != nil {
		return wrapErr("sqlitestore: ack event "+batchID, err)
	}
	return nil
}

// PendingEvents lists up to limit (<= 0 means 100) unacknowledged outbox events,
// oldest first.
func (s *Store) PendingEvents(ctx context.Context, limit int) ([]sensor.Event, error) {
	if err := s.db.Check("sqlitestore: pending events"); err != nil {
		return nil, err
	}
	if limit <= 0 {
		limit = 100
	}
	rows, err := s.db.Readers.QueryContext(ctx, "SELECT batch_id, body FROM outbox ORDER BY seq LIMIT ?", limit)
	if err != nil {
		return nil, wrapErr("sqlitestore: pending events", err)
	}
	defer rows.Close()
	evs := []sensor.Event{}
	for rows.Next() {
		var ev sensor.Event
		var event []byte
		if err := rows.Scan(&ev.BatchID, &event); err != nil {
			return nil, wrapErr("sqlitestore: pending events", err)
		}
		if ev.Body, err = eventBody(ev.BatchID, event); err != nil {
			return nil, fmt.Errorf("sqlitestore: pending events: batch %s: %w", ev.BatchID, err)
		}
		evs = append(evs, ev)
	}
	if err := rows.Err(); err != nil {
		return nil, wrapErr("sqlitestore: pending events", err)
	}
	return evs, nil
}

// write hands req to the writer and waits for its answer, which comes after the
// transaction holding it is committed. When coming is set, the caller has
// announced req (groupcommit.Writer.Coming).
//
// A caller that gives up while its request still waits in the queue gets ctx's
// error and the writer passes the request over; once the request is in a group,
// write waits for that group's commit even if the caller gave up, so the outcome
// (and what the service counts) matches what is on disk.
func (s *Store) write(ctx context.Context, req *writeReq, coming bool) (writeReply, error) {
	if !s.db.Enter() {
		if coming {
			s.w.gc.NotComing()
		}
		return writeReply{}, sqlitex.ErrClosed
	}
	defer s.db.Leave()
	req.ctx = ctx
	do := s.w.gc.Do
	if coming {
		do = s.w.gc.DoComing
	}
	r, err := do(ctx, req)
	if err == nil {
		err = r.err
	}
	return r, err
}

// replay answers a batch key already committed, reading from the pool; a key
// recorded with another fingerprint is sensor.ErrBatchConflict.
func (s *Store) replay(ctx context.Context, id, fingerprint string) (sensor.Outcome, bool, error) {
	var raw, fp string
	err := s.db.Readers.QueryRowContext(ctx, "SELECT result, fingerprint FROM batches WHERE id = ?", id).Scan(&raw, &fp)
	if errors.Is(err, sql.ErrNoRows) {
		return sensor.Outcome{}, false, nil
	}
	if err != nil {
		return sensor.Outcome{}, false, err
	}
	if fp != fingerprint {
		return sensor.Outcome{}, false, sensor.ErrBatchConflict
	}
	var event []byte
	err = s.db.Readers.QueryRowContext(ctx, "SELECT body FROM outbox WHERE batch_id = ?", id).Scan(&event)
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return sensor.Outcome{}, false, err
	}
	out, err := replayedOutcome(id, raw, event)
	return out, err == nil, err
}

// replayedOutcome is the answer to a resent batch: its stored result and, while
// it is in the outbox, its event.
func replayedOutcome(id, raw string, event []byte) (sensor.Outcome, error) {
	out := sensor.Outcome{Replayed: true}
	if err := json.Unmarshal([]byte(raw), &out.Result); err != nil {
		return sensor.Outcome{}, fmt.Errorf("decode stored result: %w", err)
	}
	if out.Result.Rejected == nil {
		out.Result.Rejected = []sensor.Rejection{}
	}
	if event != nil {
		body, err := eventBody(id, event)
		if err != nil {
			return sensor.Outcome{}, fmt.Errorf("decode outbox entry: %w", err)
		}
		out.Pending = &sensor.Event{BatchID: id, Body: body}
	}
	return out, nil
}

// writer owns the write connection and its prepared statements.
type writer struct {
	s    *Store
	conn *sql.Conn
	bg   context.Context // never cancelled: a group is not abandoned half-way
	// gc hands the requests to the writer's goroutine and groups them (see
	// txGroup).
	gc *groupcommit.Writer[*writeReq, writeReply]

	begin, commit, rollback        *sql.Stmt
	savepoint, release, rollbackTo *sql.Stmt
	roomOf, newestMerged           *sql.Stmt
	getReading                     *sql.Stmt
	insJournal, clearJournal       *sql.Stmt
	syncNormal, syncFull           *sql.Stmt
	getBatch, getPending           *sql.Stmt
	insBatch, insOutbox, delOutbox *sql.Stmt
	upStatus                       *sql.Stmt
	nextSensor, delOld             *sql.Stmt
	truncate                       *sql.Stmt
	stmts                          []*sql.Stmt

	// Multi-row statements, prepared on first use for each row count, and
	// the arguments of the readings' inserts, reused.
	insSeries, insSensor, upSensors, upTypes multiRow
	args                                     []any

	// group and gj collect the registry rows and the journal readings of the
	// group's batches, added to the journal once the group is committed;
	// batchOut is what the batch being applied brings (nil: nothing).
	group    groupRegistry
	gj       groupJournal
	batchOut *appliedBatch
	// refused is set when a group refused a request, which begins the next
	// group at once: no merge step comes between them.
	refused bool
}

// multiRow is one INSERT whose VALUES list has n rows: first (row when empty),
// then row n-1 times.
type multiRow struct {
	head, first, row, tail string
	byRows                 map[int]*sql.Stmt
}

// stmt returns the statement for n rows.
func (w *writer) stmt(m *multiRow, n int) (*sql.Stmt, error) {
	if st, ok := m.byRows[n]; ok {
		return st, nil
	}
	q := m.head + cmp.Or(m.first, m.row) + strings.Repeat(", "+m.row, n-1) + m.tail
	st, err := w.conn.PrepareContext(w.bg, q)
	if err != nil {
		return nil, err
	}
	if m.byRows == nil {
		m.byRows = make(map[int]*sql.Stmt)
	}
	m.byRows[n] = st
	w.stmts = append(w.stmts, st)
	return st, nil
}

// The readings a merge inserts come in runs that share columns: a sensor's
// readings (sensor_id, room_id, site), and among them often the readings of one
// type (type, unit too). One INSERT writes a run: its first row binds every
// column and the next ones refer back to the first row's parameters (?1, ...)
// for the shared columns, so a reading of a series binds three values instead
// of eight (the binding of each text value, copied into C memory and freed
// again, was a third of a merge's CPU time).
const (
	readingColumns   = "INSERT OR IGNORE INTO readings (sensor_id, ts_ms, type, room_id, site, value, unit, received_ms) VALUES "
	readingRow       = "(?, ?, ?, ?, ?, ?, ?, ?)"
	seriesRow        = "(?1, ?, ?3, ?4, ?5, ?, ?7, ?)" // sensor_id, type, room_id, site and unit shared
	sensorReadingRow = "(?1, ?, ?, ?4, ?5, ?, ?, ?)"   // sensor_id, room_id and site shared
)

func newWriter(ctx context.Context, s *Store) (*writer, error) {
	conn, err := s.db.Writer.Conn(ctx)
	if err != nil {
		return nil, err
	}
	w := &writer{s: s, conn: conn, bg: context.Background()}
	w.insSeries = multiRow{head: readingColumns, first: readingRow, row: seriesRow}
	w.insSensor = multiRow{head: readingColumns, first: readingRow, row: sensorReadingRow}
	w.upSensors = multiRow{
		head: "INSERT INTO sensors (id, room_id, site, first_seen_ms, last_seen_ms) VALUES ",
		row:  "(?, ?, ?, ?, ?)",
		tail: ` ON CONFLICT (id) DO UPDATE SET
			room_id = CASE WHEN excluded.room_id <> '' THEN excluded.room_id ELSE sensors.room_id END,
			site = CASE WHEN excluded.site <> '' THEN excluded.site ELSE sensors.site END,
			first_seen_ms = min(sensors.first_seen_ms, excluded.first_seen_ms),
			last_seen_ms = max(sensors.last_seen_ms, excluded.last_seen_ms)`,
	}
	w.upTypes = multiRow{
		head: "INSERT INTO sensor_types (sensor_id, type, value, unit, ts_ms) VALUES ",
		row:  "(?, ?, ?, ?, ?)",
		tail: ` ON CONFLICT (sensor_id, type) DO UPDATE SET
			value = excluded.value, unit = excluded.unit, ts_ms = excluded.ts_ms
			WHERE excluded.ts_ms > sensor_types.ts_ms`,
	}
	for _, p := range []struct {
		st  **sql.Stmt
		sql string
	}{
		{&w.begin, "BEGIN IMMEDIATE"},
		{&w.commit, "COMMIT"},
		{&w.rollback, "ROLLBACK"},
		{&w.savepoint, "SAVEPOINT batch"},
		{&w.release, "RELEASE batch"},
		{&w.rollbackTo, "ROLLBACK TO batch"},
		{&w.roomOf, "SELECT room_id FROM sensors WHERE id = ?"},
		{&w.newestMerged, newestMerged},
		{&w.getReading, getReading},
		{&w.insJournal, "INSERT INTO journal (received_ms, body) VALUES (?, ?)"},
		{&w.clearJournal, "DELETE FROM journal WHERE seq <= ?"},
		{&w.syncNormal, "PRAGMA synchronous = NORMAL"},
		{&w.syncFull, "PRAGMA synchronous = " + s.db.Sync},
		{&w.getBatch, "SELECT result, fingerprint FROM batches WHERE id = ?"},
		{&w.getPending, "SELECT body FROM outbox WHERE batch_id = ?"},
		{&w.insBatch, "INSERT INTO batches (id, result, received_ms, principal, fingerprint) VALUES (?, ?, ?, ?, ?)"},
		{&w.insOutbox, "INSERT INTO outbox (batch_id, body) VALUES (?, ?)"},
		{&w.delOutbox, "DELETE FROM outbox WHERE batch_id = ?"},
		{&w.upStatus, `INSERT INTO sensor_status (sensor_id, status, at_ms) VALUES (?, ?, ?)
			ON CONFLICT (sensor_id) DO UPDATE SET status = excluded.status, at_ms = excluded.at_ms`},
		{&w.nextSensor, nextSensorWithReadings},
		{&w.delOld, deleteOldReadings},
		{&w.truncate, "PRAGMA wal_checkpoint(TRUNCATE)"},
	} {
		st, err := conn.PrepareContext(ctx, p.sql)
		if err != nil {
			w.close()
			return nil, fmt.Errorf("%s: %w", p.sql, err)
		}
		*p.st = st
		w.stmts = append(w.stmts, st)
	}
	return w, nil
}

func (w *writer) close() {
	for _, st := range w.stmts {
		st.Close()
	}
	w.conn.Close()
}

// start starts the writer's goroutine, which commits groups of requests (see
// txGroup) and merges the journal: a step after each group while a merge is
// under way, all of it when asked or when the writer is idle.
func (w *writer) start() {
	opts := groupOptions
	opts.After = func() {
		if !w.refused {
			w.mergeSteps()
		}
		w.refused = false
	}
	if w.s.mergeIdle > 0 {
		opts.IdleAfter = w.s.mergeIdle
		opts.Idle = func() {
			if w.s.j.pending() {
				_ = w.mergeAll() // logged
			}
		}
	}
	w.gc = groupcommit.NewGroups(func() groupcommit.Group[*writeReq, writeReply] { return &txGroup{w: w} },
		(*writeReq).size, opts)
}

// stop answers the requests handed over, stops the writer's goroutine and
// closes the connection.
func (w *writer) stop() {
	w.gc.Close()
	w.close()
}

// txGroup is one group commit: a transaction that each request joins as the
// writer takes it. Requests are applied directly until one fails; from then
// on, each has its own savepoint (see apply). Commit writes the group's
// readings and registry rows down for the next merge, and answers every
// request once the transaction is committed.
//
// An outbox acknowledgement needs no fsync: losing one to a power cut only has
// its event published again, and every consumer is idempotent. So a group
// whose first request is an ack commits without an fsync (synchronous NORMAL;
// the next durable commit's fsync covers it) and takes only acks: the first
// other request begins the next group, which is durable. A lone client's
// batch then costs one fsync, not two (its ack follows it).
//
// A merge request joins any group and is answered after the whole journal is
// merged, once the group is committed. The transaction begins with the first
// other request, so a group of merges alone opens none.
type txGroup struct {
	w       *writer
	reqs    []*writeReq // every request taken, merges too
	replies []writeReply
	merges  bool // a merge request was taken
	tx      bool // the transaction has begun
	durable bool
	restore func() // restores the synchronous mode after a group that is not durable
	// savepoints is set once a request has failed or needed a rollback: the
	// group is then applied one savepoint per request.
	savepoints bool
	// err is set when the transaction could not begin or be restarted: the
	// group takes no more requests, and those taken fail with it.
	err error
}

func (g *txGroup) Wait() bool { return g.tx && g.durable }

func (g *txGroup) Add(req *writeReq) bool {
	if g.err != nil {
		g.w.refused = true
		return false
	}
	switch {
	case req.merge:
		g.merges = true
		g.reqs, g.replies = append(g.reqs, req), append(g.replies, writeReply{})
	case !g.tx:
		g.begin(req.ack == "")
		g.apply(req)
	case !g.durable && req.ack == "":
		g.w.refused = true
		return false
	default:
		g.apply(req)
	}
	return true
}

// begin opens the group's transaction, under synchronous NORMAL unless the
// group is durable.
func (g *txGroup) begin(durable bool) {
	w := g.w
	g.durable = durable
	if !durable {
		restore, err := w.relaxed()
		if err != nil {
			w.s.db.Log.Warn("sqlite unsynced group not possible", "err", err)
			g.durable = true
		}
		g.restore = restore
	}
	w.s.begun.Add(1)
	if _, err := w.begin.ExecContext(w.bg); err != nil {
		g.err = fmt.Errorf("begin: %w", err)
		return
	}
	g.tx = true
	w.group.reset()
	w.gj.reset()
}

// apply applies req in the open transaction.
func (g *txGroup) apply(req *writeReq) {
	w := g.w
	g.reqs = append(g.reqs, req)
	switch {
	case g.err != nil:
		g.replies = append(g.replies, writeReply{err: g.err})
		return
	case g.savepoints:
		g.replies = append(g.replies, w.inSavepoint(req))
		return
	}
	// A conflict is found before the request writes anything: the
	// transaction goes on as it was.
	if r := w.direct(req); r.err == nil || errors.Is(r.err, sensor.ErrBatchConflict) {
		g.replies = append(g.replies, r)
		return
	}
	// The request failed, or needs to roll back (duplicates), and there is
	// no savepoint to return to: restart the transaction and apply the
	// group again, each request in its own savepoint, as for the rest of it.
	g.replies = g.replies[:0]
	g.savepoints = true
	if err := w.restart(); err != nil {
		g.err = fmt.Errorf("restart group: %w", err)
	}
	for _, req := range g.reqs {
		switch {
		case req.merge:
			g.replies = append(g.replies, writeReply{})
		case g.err != nil:
			g.replies = append(g.replies, writeReply{err: g.err})
		case req.ctx.Err() != nil:
			g.replies = append(g.replies, writeReply{err: req.ctx.Err()})
		default:
			g.replies = append(g.replies, w.inSavepoint(req))
		}
	}
}

func (g *txGroup) Commit() ([]writeReply, error) {
	w := g.w
	if g.tx {
		g.commit()
	}
	if g.restore != nil {
		g.restore()
	}
	if g.merges {
		err := w.mergeAll()
		for i, req := range g.reqs {
			if req.merge {
				g.replies[i].err = err
			}
		}
	}
	return g.replies, nil
}

// commit commits the transaction, or rolls it back when it is broken.
func (g *txGroup) commit() {
	w := g.w
	if g.err != nil {
		if _, err := w.rollback.ExecContext(w.bg); err != nil {
			w.s.db.Log.Warn("sqlite rollback failed", "err", err)
		}
		return
	}
	if _, err := w.commit.ExecContext(w.bg); err != nil {
		err = fmt.Errorf("commit: %w", err)
		if _, rerr := w.rollback.ExecContext(w.bg); rerr != nil {
			w.s.db.Log.Error("sqlite rollback failed", "err", rerr)
		}
		w.s.db.Log.Error("sqlite group commit failed", "requests", len(g.reqs), "err", err)
		for i := range g.replies {
			if g.replies[i].err == nil && !g.reqs[i].merge {
				g.replies[i] = writeReply{err: err}
			}
		}
		return
	}
	w.s.commits.Add(1)
	w.s.j.add(&w.gj, w.group.reg)
	w.checkpointAfter()
}

// checkpointAfter follows a commit: it rewinds the WAL when the checkpointer
// asked, and wakes the checkpointer.
func (w *writer) checkpointAfter() {
	if w.s.restartWAL.CompareAndSwap(true, false) {
		// Most frames are already copied by the checkpointer; readers still on
		// old frames make this wait up to the busy timeout, then it gives up
		// and is asked again later.
		if _, err := w.truncate.ExecContext(w.bg); err != nil {
			w.s.db.Log.Warn("sqlite wal truncate failed", "err", err)
		}
	}
	select {
	case w.s.checkpoint <- struct{}{}:
	default:
	}
}

// direct applies req without a savepoint of its own: a savepoint makes SQLite
// copy every page the request changes into its statement journal, a large
// share of the writer's work. An error leaves the transaction half-changed:
// the caller must then restart it.
func (w *writer) direct(req *writeReq) writeReply {
	w.batchOut = nil
	r := w.do(req)
	if r.err == nil {
		w.applied()
	}
	return r
}

// appliedBatch is what an ingested batch brings to its group: its registry rows,
// its new readings (and their identities, or nil), when it was received and its
// journal row.
type appliedBatch struct {
	reg    registry
	stored []reading.Reading
	ids    idSet
	recvMs int64
	seq    int64
}

// applied adds what the request just applied brought to the group.
func (w *writer) applied() {
	if b := w.batchOut; b != nil {
		w.group.add(b.reg)
		w.gj.add(b.stored, b.ids, b.recvMs, b.seq)
	}
}

// do applies req in the open transaction.
func (w *writer) do(req *writeReq) writeReply {
	var r writeReply
	switch {
	case req.prune != nil:
		r.pruned, r.err = w.prune(req.prune)
	case req.ack != "":
		_, r.err = w.delOutbox.ExecContext(w.bg, req.ack)
	case req.mark != nil:
		_, r.err = w.upStatus.ExecContext(w.bg, req.mark.SensorID, req.mark.Status, req.mark.At.UnixMilli())
	default:
		r.out, r.err = w.ingest(req.batch)
	}
	return r
}

// restart rolls back the open transaction and begins another, in which every
// request is to be applied in its own savepoint.
func (w *writer) restart() error {
	if _, err := w.rollback.ExecContext(w.bg); err != nil {
		return fmt.Errorf("rollback: %w", err)
	}
	if _, err := w.begin.ExecContext(w.bg); err != nil {
		return fmt.Errorf("begin: %w", err)
	}
	w.group.reset()
	w.gj.reset()
	return nil
}

// inSavepoint applies req in a savepoint: if it fails, it is rolled back
// alone and the rest of the group goes on.
func (w *writer) inSavepoint(req *writeReq) writeReply {
	if _, err := w.savepoint.ExecContext(w.bg); err != nil {
		return writeReply{err: fmt.Errorf("savepoint: %w", err)}
	}
	w.batchOut = nil
	r := w.do(req)
	if r.err != nil {
		if !errors.Is(r.err, sensor.ErrBatchConflict) {
			w.s.db.Log.Warn("sqlite batch rolled back", "batch_id", req.id(), "err", r.err)
		}
		if _, err := w.rollbackTo.ExecContext(w.bg); err != nil {
			return writeReply{err: errors.Join(r.err, fmt.Errorf("rollback to savepoint: %w", err))}
		}
	}
	if _, err := w.release.ExecContext(w.bg); err != nil {
		return writeReply{err: errors.Join(r.err, fmt.Errorf("release savepoint: %w", err))}
	}
	if r.err == nil {
		w.applied()
	}
	return r
}
