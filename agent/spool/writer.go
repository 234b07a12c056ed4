package spool

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/atrium-iot/atrium/internal/groupcommit"
)

type opKind int

const (
	opAppend opKind = iota
	opDead
	opTake
	opForm
	opAck
	opDeadBatch
)

// op is one call for the writer.
type op struct {
	kind opKind

	// opAppend
	at     time.Time
	values [][]byte // append time + JSON
	bytes  int64
	cost   int64
	// opDead
	dead DeadLetter
	// opTake
	ids []uint64
	// opForm
	maxCount, maxBytes int
	fresh              int // FormBatches: form up to this many new batches after the open ones
	// opAck, opDeadBatch
	batchID string
	reason  string
	// opAck of a batch of sent readings, some of which the cloud rejected
	sent     int
	rejected []Rejection
}

type result struct {
	err     error
	batch   Batch
	ok      bool
	batches []Batch // FormBatches
	dead    []DeadLetter
}

// errFatal marks an error that aborts the whole transaction.
type errFatal struct{ err error }

func (e errFatal) Error() string { return e.err.Error() }
func (e errFatal) Unwrap() error { return e.err }

// newWriter starts the single writer (see internal/groupcommit): a group of calls
// is one transaction, each call applied as it joins; Append and DeadLetter announce
// themselves while they prepare their call, and an open group waits up to maxDelay
// for them. The file is compacted when the writer is idle.
func (s *Spool) newWriter() *groupcommit.Writer[*op, result] {
	return groupcommit.NewGroups(func() groupcommit.Group[*op, result] { return &group{s: s} }, nil,
		groupcommit.Options{MaxCalls: maxGroup, MaxWait: max(s.maxDelay, 0), Queue: maxGroup, Idle: s.maybeCompact})
}

// group is one transaction of the writer.
type group struct {
	s       *Spool
	txn     *txState // nil until the first call
	st      state    // the spool's state as the transaction has changed it
	results []result
	stored  bool  // readings appended: Ready gets a signal
	err     error // the transaction failed: every call without an error of its own gets it
}

// Add applies o in the group's transaction, which it begins with the first call.
func (g *group) Add(o *op) bool {
	if g.txn == nil && g.err == nil {
		g.begin()
	}
	if g.err != nil {
		g.results = append(g.results, result{})
		return true
	}
	r := g.s.apply(g.txn, &g.st, o)
	var fe errFatal
	if errors.As(r.err, &fe) {
		_ = g.txn.tx.Rollback()
		g.s.log.Error("spool commit failed", "err", fe.err, "calls", len(g.results)+1)
		g.err, r = fe.err, result{}
	}
	if r.err == nil && o.kind == opAppend {
		g.stored = true
	}
	g.results = append(g.results, r)
	return true
}

func (g *group) begin() {
	if g.s.broken != nil {
		g.err = g.s.broken
		return
	}
	tx, err := g.s.db.Begin(true)
	if err != nil {
		g.err = err
		return
	}
	g.txn = &txState{tx: tx, rb: tx.Bucket(bucketReadings)}
	g.txn.rb.FillPercent = 1.0 // appends go to the end of the key space
	g.st = g.s.st
}

// Wait lets every group wait for the calls on their way.
func (g *group) Wait() bool { return true }

// Commit commits the transaction and answers every call.
func (g *group) Commit() ([]result, error) {
	if g.err == nil {
		g.err = g.commit()
	}
	if g.err != nil {
		for i := range g.results {
			if g.results[i].err == nil {
				g.results[i] = result{err: g.err}
			}
		}
	}
	return g.results, nil
}

func (g *group) commit() error {
	s, tx := g.s, g.txn.tx
	if g.st.next != s.st.next {
		if err := g.txn.rb.SetSequence(g.st.next - 1); err != nil {
			_ = tx.Rollback()
			return err
		}
	}
	if err := tx.Commit(); err != nil {
		s.log.Error("spool commit failed", "err", err, "calls", len(g.results))
		return err
	}
	g.st.commits++
	s.mu.Lock()
	s.st = g.st
	s.mu.Unlock()
	if g.stored { // before answering: when Append returns, Ready has its signal
		select {
		case s.ready <- struct{}{}:
		default:
		}
	}
	return nil
}

// txState is a commit's transaction and its buckets. The readings bucket is looked
// up for every commit; the dead letters and the batch records only by the calls
// that use them (a bucket lookup is a search of the root bucket, and most commits
// only append).
type txState struct {
	tx       *bolt.Tx
	rb       *bolt.Bucket
	db, meta *bolt.Bucket // nil until dead and batches look them up
}

// dead is the dead letters' bucket.
func (t *txState) dead() *bolt.Bucket {
	if t.db == nil {
		t.db = t.tx.Bucket(bucketDead)
	}
	return t.db
}

// batches is the bucket of the open batches' records.
func (t *txState) batches() *bolt.Bucket {
	if t.meta == nil {
		t.meta = t.tx.Bucket(bucketMeta)
	}
	return t.meta
}

// apply performs one call on the staged state. A plain error refuses that call only
// and has changed nothing; an errFatal aborts the transaction.
func (s *Spool) apply(t *txState, st *state, o *op) result {
	switch o.kind {
	case opAppend:
		return s.applyAppend(t, st, o)
	case opDead:
		d := o.dead
		if err := s.putDead(t, st, &d); err != nil {
			return result{err: err}
		}
		return result{}
	case opTake:
		return s.applyTake(t, st, o)
	case opForm:
		return s.applyForm(t, st, o)
	case opAck, opDeadBatch:
		return s.applyFinish(t, st, o)
	}
	return result{err: errFatal{fmt.Errorf("unknown op %d", o.kind)}}
}

func (s *Spool) applyAppend(t *txState, st *state, o *op) result {
	if over := st.cost + o.cost - s.maxBytes; over > 0 {
		if s.policy == PolicyRejectNew {
			st.rejected += uint64(len(o.values))
			s.logFull(st)
			return result{err: ErrFull}
		}
		if err := s.dropOldest(t, st, over); err != nil {
			return result{err: errFatal{err}}
		}
		s.logFull(st)
	}
	for _, v := range o.values {
		if err := t.rb.Put(seqKey(st.next), v); err != nil {
			return result{err: errFatal{err}}
		}
		st.next++
	}
	if st.readings == 0 {
		st.oldest = o.at
	}
	st.readings += int64(len(o.values))
	st.bytes += o.bytes
	st.cost += o.cost
	st.appended += uint64(len(o.values))
	return result{}
}

// dropOldest deletes the oldest readings until at least need bytes are free, shrinking
// or removing the open batch when they belong to it.
func (s *Spool) dropOldest(t *txState, st *state, need int64) error {
	var (
		keys  [][]byte
		freed int64
		bytes int64
		last  uint64
	)
	c := t.rb.Cursor()
	for k, v := c.First(); k != nil && freed < need; k, v = c.Next() {
		keys = append(keys, append([]byte(nil), k...))
		freed += readingCost(v)
		bytes += int64(len(readingJSON(v)))
		last = binary.BigEndian.Uint64(k)
	}
	for _, k := range keys {
		if err := t.rb.Delete(k); err != nil {
			return err
		}
	}
	st.readings -= int64(len(keys))
	st.bytes -= bytes
	st.cost -= freed
	st.dropped += uint64(len(keys))
	if len(keys) > 0 && len(st.batches) > 0 && st.batches[0].first <= last {
		kept := make([]batchRec, 0, len(st.batches))
		for _, b := range st.batches {
			switch {
			case b.last <= last:
				continue // dropped whole
			case b.first <= last:
				b.first = last + 1 // shrunk: new id
			}
			kept = append(kept, b)
		}
		if err := putBatches(t.batches(), kept); err != nil {
			return err
		}
		st.batches = kept
	}
	s.refreshOldest(t, st)
	return nil
}

func (s *Spool) refreshOldest(t *txState, st *state) {
	if _, v := t.rb.Cursor().First(); v != nil {
		st.oldest = appendTime(v)
	} else {
		st.oldest = time.Time{}
	}
}

func (s *Spool) applyForm(t *txState, st *state, o *op) result {
	if o.fresh == 0 && len(st.batches) > 0 { // formed by a concurrent NextBatch
		return result{batch: s.readBatch(t.rb, st.batches[0]), ok: true}
	}
	if o.fresh == 0 {
		return s.formOne(t, st, o)
	}
	var out []Batch
	for range o.fresh {
		r := s.formOne(t, st, o)
		if r.err != nil {
			return r
		}
		if !r.ok {
			break
		}
		out = append(out, r.batch)
	}
	return result{batches: out, ok: len(out) > 0}
}

// formOne forms a batch after the newest open one.
func (s *Spool) formOne(t *txState, st *state, o *op) result {
	var (
		first, last uint64
		n, size     int
	)
	c := t.rb.Cursor()
	k, v := c.First()
	if nb := len(st.batches); nb > 0 {
		k, v = c.Seek(seqKey(st.batches[nb-1].last + 1))
	}
	for ; k != nil && n < o.maxCount; k, v = c.Next() {
		l := len(readingJSON(v))
		if n > 0 && o.maxBytes > 0 && size+l > o.maxBytes {
			break
		}
		seq := binary.BigEndian.Uint64(k)
		if n == 0 {
			first = seq
		}
		last = seq
		n++
		size += l
	}
	if n == 0 {
		return result{}
	}
	rec := newBatchRec(first, last)
	recs := append(append(make([]batchRec, 0, len(st.batches)+1), st.batches...), rec)
	if err := putBatches(t.batches(), recs); err != nil {
		return result{err: errFatal{err}}
	}
	st.batches = recs
	return result{batch: s.readBatch(t.rb, rec), ok: true}
}

// applyFinish acks or dead-letters an open batch.
func (s *Spool) applyFinish(t *txState, st *state, o *op) result {
	idx := findBatch(st.batches, o.batchID)
	if idx < 0 {
		return result{err: ErrUnknownBatch}
	}
	b := st.batches[idx]
	// The seqs of the rejected readings: counted back from the batch's newest, as a
	// drop-oldest spool may have shrunk the batch from its oldest since it was sent.
	var rejected map[uint64]string
	for _, r := range o.rejected {
		if back := uint64(o.sent - 1 - r.Index); r.Index >= 0 && r.Index < o.sent && back <= b.last-b.first {
			if rejected == nil {
				rejected = make(map[uint64]string, len(o.rejected))
			}
			rejected[b.last-back] = r.Reason
		}
	}
	var (
		keys    [][]byte
		vals    [][]byte
		reasons []string // of the rejected readings of an ack, one per value
		freed   int64
		bytes   int64
	)
	c := t.rb.Cursor()
	for k, v := c.Seek(seqKey(b.first)); k != nil && binary.BigEndian.Uint64(k) <= b.last; k, v = c.Next() {
		keys = append(keys, append([]byte(nil), k...))
		if o.kind == opDeadBatch {
			vals = append(vals, append([]byte(nil), readingJSON(v)...))
		} else if why, ok := rejected[binary.BigEndian.Uint64(k)]; ok {
			vals = append(vals, append([]byte(nil), readingJSON(v)...))
			reasons = append(reasons, "cloud rejected the reading: "+why)
		}
		freed += readingCost(v)
		bytes += int64(len(readingJSON(v)))
	}
	for _, k := range keys {
		if err := t.rb.Delete(k); err != nil {
			return result{err: errFatal{err}}
		}
	}
	if len(vals) > 0 {
		at := s.now()
		id := batchID(b, b.first)
		for i, v := range vals {
			d := DeadLetter{Payload: v, Reason: o.reason, At: at, Batch: id}
			if o.kind == opAck {
				d.Reason = reasons[i]
			}
			if err := s.putDead(t, st, &d); err != nil {
				// A reading larger than the whole dead-letter allowance cannot be kept.
				var fe errFatal
				if errors.As(err, &fe) {
					return result{err: err}
				}
				s.log.Warn("spool dead letter too large, discarded", "batch", id, "bytes", len(v))
				st.deadEvicted++
			}
		}
	}
	if o.kind == opAck {
		st.acked += uint64(len(keys) - len(vals))
	}
	recs := append(append(make([]batchRec, 0, len(st.batches)-1), st.batches[:idx]...), st.batches[idx+1:]...)
	if err := putBatches(t.batches(), recs); err != nil {
		return result{err: errFatal{err}}
	}
	st.batches = recs
	st.readings -= int64(len(keys))
	st.bytes -= bytes
	st.cost -= freed
	s.refreshOldest(t, st)
	return result{}
}

// putDead stores d, evicting the oldest dead letters to stay in the allowance. It sets
// d.ID.
func (s *Spool) putDead(t *txState, st *state, d *DeadLetter) error {
	v, err := json.Marshal(deadRecord{Topic: d.Topic, Payload: d.Payload, Reason: d.Reason, At: d.At.UTC(), Batch: d.Batch})
	if err != nil {
		return err
	}
	cost := int64(len(v)) + deadOverhead
	if cost > s.deadCap {
		return fmt.Errorf("dead letter of %d bytes: %w", len(v), ErrTooLarge)
	}
	if st.deadCost+cost > s.deadCap || st.deadCount+1 > int64(s.maxDead) {
		var keys [][]byte
		c := t.dead().Cursor()
		for k, v := c.First(); k != nil && (st.deadCost+cost > s.deadCap || st.deadCount+1 > int64(s.maxDead)); k, v = c.Next() {
			old, err := decodeDead(k, v)
			if err != nil {
				return errFatal{err}
			}
			keys = append(keys, append([]byte(nil), k...))
			st.deadCost -= int64(len(v)) + deadOverhead
			st.deadBytes -= int64(len(old.Payload))
			st.deadCount--
			st.deadEvicted++
		}
		for _, k := range keys {
			if err := t.dead().Delete(k); err != nil {
				return errFatal{err}
			}
		}
	}
	id, err := t.dead().NextSequence()
	if err != nil {
		return errFatal{err}
	}
	if err := t.dead().Put(seqKey(id), v); err != nil {
		return errFatal{err}
	}
	d.ID = id
	st.deadCount++
	st.deadBytes += int64(len(d.Payload))
	st.deadCost += cost
	st.deadLettered++
	return nil
}

func (s *Spool) applyTake(t *txState, st *state, o *op) result {
	var out []DeadLetter
	for _, id := range o.ids {
		k := seqKey(id)
		v := t.dead().Get(k)
		if v == nil {
			continue
		}
		d, err := decodeDead(k, v)
		if err != nil {
			return result{err: errFatal{err}}
		}
		cost := int64(len(v)) + deadOverhead
		if err := t.dead().Delete(k); err != nil {
			return result{err: errFatal{err}}
		}
		st.deadCount--
		st.deadBytes -= int64(len(d.Payload))
		st.deadCost -= cost
		out = append(out, d)
	}
	return result{dead: out}
}

func (s *Spool) logFull(st *state) {
	if now := s.now(); now.Sub(s.lastFullLog) >= time.Minute {
		s.lastFullLog = now
		s.log.Warn("spool full", "policy", s.policy, "max_bytes", s.maxBytes,
			"dropped", st.dropped, "rejected", st.rejected)
	}
}

// maybeCompact compacts the file when it has grown past MaxBytes and the live data is
// under a quarter of it. It runs on the writer goroutine, so no write interleaves.
func (s *Spool) maybeCompact() {
	if s.broken != nil || s.db == nil {
		return
	}
	fi, err := os.Stat(s.path)
	if err != nil {
		return
	}
	size := fi.Size()
	live := s.st.cost + s.st.deadCost
	if size <= s.maxBytes || live*4 >= size || (s.st.compactedSize > 0 && size < 2*s.st.compactedSize) {
		return
	}
	if err := s.compact(); err != nil {
		s.log.Error("spool compaction failed", "err", err, "path", s.path)
	}
}

// compact copies the live data into a new file and swaps it in.
func (s *Spool) compact() error {
	start := time.Now()
	before, _ := os.Stat(s.path)
	tmp := compactPath(s.path)
	if err := os.Remove(tmp); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	dst, err := bolt.Open(tmp, 0o600, &bolt.Options{Timeout: lockTimeout, FreelistType: bolt.FreelistMapType, NoFreelistSync: true, NoSync: true})
	if err != nil {
		return err
	}
	if err := bolt.Compact(dst, s.db, 64<<20); err != nil {
		_ = dst.Close()
		_ = os.Remove(tmp)
		return err
	}
	if err := dst.Sync(); err != nil {
		_ = dst.Close()
		_ = os.Remove(tmp)
		return err
	}
	if err := dst.Close(); err != nil {
		_ = os.Remove(tmp)
		return err
	}
	if err := fsyncFile(tmp); err != nil {
		_ = os.Remove(tmp)
		return err
	}

	s.dbMu.Lock()
	defer s.dbMu.Unlock()
	if err := s.db.Close(); err != nil {
		s.broken = fmt.Errorf("spool: closed for compaction: %w", err)
		return err
	}
	s.db = nil
	renameErr := os.Rename(tmp, s.path)
	if renameErr == nil {
		renameErr = syncDir(filepath.Dir(s.path))
	}
	db, err := openDB(s.path)
	if err != nil {
		s.broken = fmt.Errorf("spool: reopen after compaction: %w", err)
		return err
	}
	s.db = db
	if renameErr != nil {
		_ = os.Remove(tmp)
		return renameErr
	}
	after, _ := os.Stat(s.path)
	s.mu.Lock()
	s.st.compactions++
	if after != nil {
		s.st.compactedSize = after.Size()
	}
	s.mu.Unlock()
	var beforeSize, afterSize int64
	if before != nil {
		beforeSize = before.Size()
	}
	if after != nil {
		afterSize = after.Size()
	}
	s.log.Info("spool compacted", "path", s.path, "before_bytes", beforeSize, "after_bytes", afterSize,
		"took", time.Since(start))
	return nil
}

func fsyncFile(path string) error {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return err
	}
	if err := f.Sync(); err != nil {
		_ = f.Close()
		return err
	}
	return f.Close()
}
