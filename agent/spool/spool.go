package spool

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/atrium-iot/atrium/internal/groupcommit"
)

// Full policies.
const (
	// PolicyDropOldest makes room for new readings by deleting the oldest ones.
	PolicyDropOldest = "drop-oldest"
	// PolicyRejectNew refuses an Append that does not fit with ErrFull.
	PolicyRejectNew = "reject-new"
)

// Defaults for Options.
const (
	DefaultMaxBytes       int64 = 1 << 30
	DefaultMaxDelay             = 2 * time.Millisecond
	DefaultMaxDeadLetters       = 100_000
	// DefaultBatchCount is what NextBatch uses when maxCount <= 0.
	DefaultBatchCount = 500
)

// recordOverhead is what one reading costs on top of its JSON: the 8-byte key, the
// 8-byte append time and bbolt's 16-byte leaf element header.
const recordOverhead = 32

// deadOverhead is a dead letter's key and leaf element header.
const deadOverhead = 24

// maxGroup bounds how many calls one transaction carries.
const maxGroup = 4096

// lockTimeout bounds the wait for another process's lock on the file.
const lockTimeout = 10 * time.Second

// formatVersion 2 keeps a random nonce with each open batch (56-byte records);
// version 1 files (24-byte records, ids made of the instance id and the first seq)
// are upgraded on Open.
const formatVersion = "2"

// Open batch record sizes: version 1 (orig, first, last) and version 2 (plus the nonce).
const (
	batchRecV1 = 24
	batchRecV2 = 24 + nonceLen
)

// nonceLen is the size of a batch's random nonce.
const nonceLen = 32

// idLen is the size of a batch id's tag in bytes (hex encoded in the id).
const idLen = 16

var (
	bucketReadings = []byte("readings")
	bucketDead     = []byte("dead")
	bucketMeta     = []byte("meta")

	metaVersion = []byte("version")
	metaBatch   = []byte("batch")
)

// Errors returned by the spool; match them with errors.Is.
var (
	// ErrFull: the spool is full and the policy is reject-new; nothing of the call was stored.
	ErrFull = errors.New("spool full")
	// ErrTooLarge: the call alone is larger than the spool (or dead-letter) capacity.
	ErrTooLarge = errors.New("larger than the spool capacity")
	// ErrClosed: the spool has been closed.
	ErrClosed = errors.New("spool closed")
	// ErrUnknownBatch: the id names no open batch (already acked, dropped, or never issued).
	ErrUnknownBatch = errors.New("unknown batch")
	// ErrEmptyReading: a reading of zero bytes.
	ErrEmptyReading = errors.New("empty reading")
)

// Options tune a Spool. The zero value is usable.
type Options struct {
	// MaxBytes bounds the spooled readings: their JSON plus 32 bytes each. Default 1 GiB.
	MaxBytes int64
	// Policy when full: PolicyDropOldest (default) or PolicyRejectNew.
	Policy string
	// MaxDelay bounds how long the writer waits for callers that are already inside
	// Append or DeadLetter before it commits. Default 2ms; negative means never wait.
	MaxDelay time.Duration
	// MaxDeadLetters bounds the number of dead letters. Default 100,000. Their bytes
	// are bounded by MaxBytes/10.
	MaxDeadLetters int
	// Logger receives the spool's events. Default: discard.
	Logger *slog.Logger
	// Now is the clock. Default time.Now.
	Now func() time.Time
}

// DeadLetter is a message the agent could not use, kept with the reason.
type DeadLetter struct {
	// ID is assigned by the spool; the value passed to Spool.DeadLetter is ignored.
	ID uint64
	// Topic is the MQTT topic the payload came on (empty for a rejected batch).
	Topic string
	// Payload is the raw MQTT payload, or one reading's JSON when Batch is set.
	Payload []byte
	// Reason says why.
	Reason string
	// At is when it was dead-lettered (the spool's clock when zero).
	At time.Time
	// Batch is the id of the batch the cloud rejected, when the payload came from one.
	Batch string
}

// Batch is a contiguous range of spooled readings, to be sent as one request.
type Batch struct {
	ID       string
	Readings [][]byte
	Bytes    int
	First    uint64
	Last     uint64
}

// Stats is a snapshot of the spool's contents and counters. Counters count readings
// (or dead letters) since Open.
type Stats struct {
	Readings        int64
	Bytes           int64 // JSON bytes of the spooled readings
	FileBytes       int64 // size of the bbolt file
	OldestAppend    time.Time
	DeadLetters     int64
	DeadLetterBytes int64 // payload bytes of the dead letters
	OpenBatches     int   // how many batches are open; their ids are not shown (see the package doc)

	Appended     uint64
	Acked        uint64
	Dropped      uint64 // drop-oldest
	Rejected     uint64 // reject-new
	DeadLettered uint64 // dead letters stored, including readings of rejected batches
	DeadEvicted  uint64 // oldest dead letters evicted to make room
	Commits      uint64
	Compactions  uint64
}

// batchRec is the persisted open batch: orig is the first seq it was formed with (ids
// from orig up to first name the same batch), first..last what is left of it, and
// nonce the random bytes its ids are derived from (see batchID).
type batchRec struct {
	ok                bool
	orig, first, last uint64
	nonce             [nonceLen]byte
}

// newBatchRec is a batch record with a fresh random nonce.
func newBatchRec(first, last uint64) batchRec {
	r := batchRec{ok: true, orig: first, first: first, last: last}
	_, _ = rand.Read(r.nonce[:]) // never fails (crypto/rand, Go 1.24+)
	return r
}

func (r batchRec) encode() []byte {
	b := make([]byte, batchRecV2)
	binary.BigEndian.PutUint64(b[0:], r.orig)
	binary.BigEndian.PutUint64(b[8:], r.first)
	binary.BigEndian.PutUint64(b[16:], r.last)
	copy(b[24:], r.nonce[:])
	return b
}

// decodeBatchRec returns the oldest open batch of a batch record.
func decodeBatchRec(v []byte) (batchRec, error) {
	recs, err := decodeBatchRecs(v, batchRecV2)
	if err != nil || len(recs) == 0 {
		return batchRec{}, err
	}
	return recs[0], nil
}

// decodeBatchRecs reads the open batches, oldest first, of size bytes each
// (batchRecV1 records get no nonce).
func decodeBatchRecs(v []byte, size int) ([]batchRec, error) {
	if len(v)%size != 0 {
		return nil, fmt.Errorf("batch record: %d bytes, want a multiple of %d", len(v), size)
	}
	var recs []batchRec
	for ; len(v) > 0; v = v[size:] {
		r := batchRec{
			ok:    true,
			orig:  binary.BigEndian.Uint64(v[0:]),
			first: binary.BigEndian.Uint64(v[8:]),
			last:  binary.BigEndian.Uint64(v[16:]),
		}
		copy(r.nonce[:], v[24:size])
		recs = append(recs, r)
	}
	return recs, nil
}

// batchID is the id of the open batch rec when its first seq is seq: the first 16
// bytes of HMAC-SHA256(nonce, seq), hex encoded. See "Batch ids" in the package doc.
func batchID(rec batchRec, seq uint64) string {
	m := hmac.New(sha256.New, rec.nonce[:])
	var k [8]byte
	binary.BigEndian.PutUint64(k[:], seq)
	m.Write(k[:])
	return hex.EncodeToString(m.Sum(nil)[:idLen])
}

// findBatch returns the index of the open batch id names, or -1: its current id, or
// an earlier one (a first seq from orig up to first, given out before drop-oldest
// shrank it). The earlier ids are recomputed: at most one per reading of the batch,
// and only when the id is not a current one.
func findBatch(recs []batchRec, id string) int {
	want, err := hex.DecodeString(id)
	if err != nil || len(want) != idLen {
		return -1
	}
	for i, r := range recs {
		if hmac.Equal([]byte(batchID(r, r.first)), []byte(id)) {
			return i
		}
	}
	for i, r := range recs {
		for seq := r.orig; seq < r.first; seq++ {
			if hmac.Equal([]byte(batchID(r, seq)), []byte(id)) {
				return i
			}
		}
	}
	return -1
}

// state is what the writer knows about the file. The writer works on a copy inside a
// transaction and publishes it only after the commit succeeded.
type state struct {
	next     uint64 // next reading seq
	readings int64
	bytes    int64 // JSON bytes
	cost     int64 // bytes counted against MaxBytes
	oldest   time.Time
	// batches are the open batches, oldest first. The writer replaces the slice
	// instead of changing it in place: the published state shares it.
	batches []batchRec

	deadCount int64
	deadBytes int64 // payload bytes
	deadCost  int64 // encoded bytes + overhead

	appended, acked, dropped, rejected uint64
	deadLettered, deadEvicted, commits uint64
	compactions                        uint64
	compactedSize                      int64
}

// Spool is a durable, bounded queue of readings on a bbolt file. It is safe for
// concurrent use.
type Spool struct {
	path     string
	maxBytes int64
	deadCap  int64
	maxDead  int
	policy   string
	maxDelay time.Duration
	log      *slog.Logger
	now      func() time.Time

	dbMu   sync.RWMutex // guards db against the swap done by compaction and Close
	db     *bolt.DB
	broken error // set by the writer when the file could not be reopened

	mu sync.Mutex // guards st
	st state

	writer *groupcommit.Writer[*op, result]
	ready  chan struct{}

	lastFullLog time.Time
}

// Open opens (creating it if needed) the spool file at path, recounts its contents and
// starts the writer.
func Open(path string, opts Options) (*Spool, error) {
	if opts.MaxBytes <= 0 {
		opts.MaxBytes = DefaultMaxBytes
	}
	switch opts.Policy {
	case "":
		opts.Policy = PolicyDropOldest
	case PolicyDropOldest, PolicyRejectNew:
	default:
		return nil, fmt.Errorf("spool: open: policy %q: want %q or %q", opts.Policy, PolicyDropOldest, PolicyRejectNew)
	}
	if opts.MaxDelay == 0 {
		opts.MaxDelay = DefaultMaxDelay
	}
	if opts.MaxDeadLetters <= 0 {
		opts.MaxDeadLetters = DefaultMaxDeadLetters
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	s := &Spool{
		path:     path,
		maxBytes: opts.MaxBytes,
		deadCap:  max(opts.MaxBytes/10, 1),
		maxDead:  opts.MaxDeadLetters,
		policy:   opts.Policy,
		maxDelay: opts.MaxDelay,
		log:      opts.Logger,
		now:      opts.Now,
		ready:    make(chan struct{}, 1),
	}
	// A compaction interrupted before its rename leaves this behind; the spool file
	// itself is intact.
	if err := os.Remove(compactPath(path)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("spool: open: remove leftover compaction file: %w", err)
	}
	db, err := openDB(path)
	if err != nil {
		return nil, fmt.Errorf("spool: open %s: %w", path, err)
	}
	if err := syncDir(filepath.Dir(path)); err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("spool: open: sync directory: %w", err)
	}
	s.db = db
	if err := s.init(); err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("spool: open %s: %w", path, err)
	}
	s.writer = s.newWriter()
	s.log.Info("spool opened", "path", path, "readings", s.st.readings, "bytes", s.st.bytes,
		"dead_letters", s.st.deadCount, "open_batches", len(s.st.batches), "policy", s.policy, "max_bytes", s.maxBytes)
	return s, nil
}

func openDB(path string) (*bolt.DB, error) {
	return bolt.Open(path, 0o600, &bolt.Options{
		Timeout:      lockTimeout,
		FreelistType: bolt.FreelistMapType,
		// The freelist is rebuilt on Open instead of being rewritten on every commit:
		// after a drain it holds thousands of pages, which cost each commit a write.
		NoFreelistSync: true,
	})
}

func compactPath(path string) string { return path + ".compact" }

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// init creates the buckets, upgrades a version 1 file, repairs an open batch record
// that does not match the readings (defensive: it cannot happen through this package)
// and recounts everything.
func (s *Spool) init() error {
	return s.db.Update(func(tx *bolt.Tx) error {
		meta, err := tx.CreateBucketIfNotExists(bucketMeta)
		if err != nil {
			return err
		}
		rb, err := tx.CreateBucketIfNotExists(bucketReadings)
		if err != nil {
			return err
		}
		db, err := tx.CreateBucketIfNotExists(bucketDead)
		if err != nil {
			return err
		}
		recSize := batchRecV2
		switch v := meta.Get(metaVersion); {
		case v == nil:
			if err := meta.Put(metaVersion, []byte(formatVersion)); err != nil {
				return err
			}
		case string(v) == "1":
			// Version 1: open batches without a nonce, ids "<instance uuid>-<first seq>".
			// They get a nonce, so new ids: the cloud takes them as new batches and
			// counts the readings it already has as duplicates.
			recSize = batchRecV1
			if err := meta.Put(metaVersion, []byte(formatVersion)); err != nil {
				return err
			}
			s.log.Info("spool format upgraded", "from", "1", "to", formatVersion)
		case string(v) != formatVersion:
			return fmt.Errorf("format version %q: this build reads %q", v, formatVersion)
		}

		st := state{next: rb.Sequence() + 1}
		c := rb.Cursor()
		var head, last uint64
		for k, v := c.First(); k != nil; k, v = c.Next() {
			seq := binary.BigEndian.Uint64(k)
			if st.readings == 0 {
				head = seq
				st.oldest = appendTime(v)
			}
			last = seq
			st.readings++
			st.bytes += int64(len(readingJSON(v)))
			st.cost += readingCost(v)
		}
		if st.readings > 0 && last >= st.next {
			st.next = last + 1
		}
		recs, err := decodeBatchRecs(meta.Get(metaBatch), recSize)
		if err != nil {
			return err
		}
		var kept []batchRec
		for _, rec := range recs {
			if recSize == batchRecV1 {
				rec = newBatchRec(rec.first, rec.last) // the old ids are not kept
			}
			switch {
			case st.readings == 0 || rec.last < head:
				continue
			case rec.first < head:
				rec.first = head
			}
			kept = append(kept, rec)
		}
		if len(recs) > 0 {
			if err := putBatches(meta, kept); err != nil {
				return err
			}
		}
		st.batches = kept

		dc := db.Cursor()
		for k, v := dc.First(); k != nil; k, v = dc.Next() {
			var d deadRecord
			if err := json.Unmarshal(v, &d); err != nil {
				return fmt.Errorf("dead letter %d: %w", binary.BigEndian.Uint64(k), err)
			}
			st.deadCount++
			st.deadBytes += int64(len(d.Payload))
			st.deadCost += int64(len(v)) + deadOverhead
		}
		s.st = st
		return nil
	})
}

// Append stores readings (each one reading's JSON) and returns once they are committed
// to disk. Concurrent calls share commits. When the spool is full, drop-oldest deletes
// the oldest readings to make room; reject-new returns ErrFull and stores nothing.
func (s *Spool) Append(ctx context.Context, readings [][]byte) error {
	if len(readings) == 0 {
		return nil
	}
	s.writer.Coming()
	at := s.now()
	o := &op{kind: opAppend, at: at}
	var total int
	for _, r := range readings {
		if len(r) == 0 {
			s.writer.NotComing()
			return fmt.Errorf("spool: append: %w", ErrEmptyReading)
		}
		total += 8 + len(r)
	}
	// One allocation for all values: the append time followed by the JSON. The
	// caller's slices are not kept.
	buf := make([]byte, total)
	o.values = make([][]byte, len(readings))
	ts := uint64(at.UnixNano())
	for i, r := range readings {
		v := buf[: 8+len(r) : 8+len(r)]
		buf = buf[8+len(r):]
		binary.BigEndian.PutUint64(v, ts)
		copy(v[8:], r)
		o.values[i] = v
		o.bytes += int64(len(r))
		o.cost += int64(len(r)) + recordOverhead
	}
	if o.cost > s.maxBytes {
		s.writer.NotComing()
		return fmt.Errorf("spool: append %d readings of %d bytes: %w", len(readings), o.bytes, ErrTooLarge)
	}
	if _, err := s.submit(ctx, o, true); err != nil {
		return fmt.Errorf("spool: append: %w", err)
	}
	return nil
}

// DeadLetter stores d durably (group-committed like Append). The spool assigns its
// ID; the oldest dead letters are evicted when the dead-letter allowance is used up.
func (s *Spool) DeadLetter(ctx context.Context, d DeadLetter) error {
	s.writer.Coming()
	if d.At.IsZero() {
		d.At = s.now()
	}
	o := &op{kind: opDead, dead: d}
	if _, err := s.submit(ctx, o, true); err != nil {
		return fmt.Errorf("spool: dead letter: %w", err)
	}
	return nil
}

// DeadLetters lists up to limit dead letters, oldest first (all when limit <= 0).
func (s *Spool) DeadLetters(limit int) ([]DeadLetter, error) {
	var out []DeadLetter
	err := s.view(func(tx *bolt.Tx) error {
		c := tx.Bucket(bucketDead).Cursor()
		for k, v := c.First(); k != nil && (limit <= 0 || len(out) < limit); k, v = c.Next() {
			d, err := decodeDead(k, v)
			if err != nil {
				return err
			}
			out = append(out, d)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("spool: dead letters: %w", err)
	}
	return out, nil
}

// TakeDeadLetters removes the dead letters with the given ids and returns them (ids
// not found are skipped), for the caller to decode and requeue them.
func (s *Spool) TakeDeadLetters(ctx context.Context, ids []uint64) ([]DeadLetter, error) {
	if len(ids) == 0 {
		return nil, nil
	}
	o := &op{kind: opTake, ids: ids}
	r, err := s.submit(ctx, o, false)
	if err != nil {
		return nil, fmt.Errorf("spool: take dead letters: %w", err)
	}
	return r.dead, nil
}

// Ready receives a value (without blocking the writer; capacity 1) after each commit
// that stored readings.
func (s *Spool) Ready() <-chan struct{} { return s.ready }

// NextBatch returns the open batch unchanged if there is one (also after a restart);
// otherwise it forms one from the oldest readings, at most maxCount of them (500 when
// <= 0) and at most maxBytes of JSON (no limit when <= 0; always at least one reading),
// persists its id and range, and returns it. ok is false when the spool is empty.
func (s *Spool) NextBatch(maxCount, maxBytes int) (Batch, bool, error) {
	if maxCount <= 0 {
		maxCount = DefaultBatchCount
	}
	var (
		b     Batch
		found bool
	)
	err := s.view(func(tx *bolt.Tx) error {
		rec, err := decodeBatchRec(tx.Bucket(bucketMeta).Get(metaBatch))
		if err != nil || !rec.ok {
			return err
		}
		b, found = s.readBatch(tx.Bucket(bucketReadings), rec), true
		return nil
	})
	if err != nil {
		return Batch{}, false, fmt.Errorf("spool: next batch: %w", err)
	}
	if found {
		return b, true, nil
	}
	b, ok, err := s.form(maxCount, maxBytes)
	if err != nil {
		return Batch{}, false, fmt.Errorf("spool: next batch: %w", err)
	}
	return b, ok, nil
}

// FormBatch forms a new batch from the oldest readings after the newest open batch,
// with NextBatch's limits, persists it next to the open ones, and returns it. ok is
// false when no reading is left outside the open batches. With FormBatch several
// batches can be open at once; they may be acked or dead-lettered in any order.
func (s *Spool) FormBatch(maxCount, maxBytes int) (Batch, bool, error) {
	bs, err := s.FormBatches(1, maxCount, maxBytes)
	if err != nil || len(bs) == 0 {
		return Batch{}, false, err
	}
	return bs[0], true, nil
}

// FormBatches is FormBatch up to n times in one commit: it returns the batches
// formed, oldest first, none when no reading is left outside the open batches.
func (s *Spool) FormBatches(n, maxCount, maxBytes int) ([]Batch, error) {
	if maxCount <= 0 {
		maxCount = DefaultBatchCount
	}
	o := &op{kind: opForm, maxCount: maxCount, maxBytes: maxBytes, fresh: max(n, 1)}
	r, err := s.submit(context.Background(), o, false)
	if err != nil {
		return nil, fmt.Errorf("spool: form batches: %w", err)
	}
	return r.batches, nil
}

func (s *Spool) form(maxCount, maxBytes int) (Batch, bool, error) {
	o := &op{kind: opForm, maxCount: maxCount, maxBytes: maxBytes}
	r, err := s.submit(context.Background(), o, false)
	if err != nil {
		return Batch{}, false, err
	}
	return r.batch, r.ok, nil
}

// OpenBatches returns every open batch, oldest first, each with the id and readings
// it was handed out with (or what drop-oldest left of it, under a new id).
func (s *Spool) OpenBatches() ([]Batch, error) {
	var out []Batch
	err := s.view(func(tx *bolt.Tx) error {
		recs, err := decodeBatchRecs(tx.Bucket(bucketMeta).Get(metaBatch), batchRecV2)
		if err != nil {
			return err
		}
		for _, rec := range recs {
			out = append(out, s.readBatch(tx.Bucket(bucketReadings), rec))
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("spool: open batches: %w", err)
	}
	return out, nil
}

// AckBatch deletes the batch's readings and its record in one commit: the cloud has
// them. id may also be an earlier id of the open batch (see the package doc).
func (s *Spool) AckBatch(id string) error {
	return s.AckBatchRejecting(id, 0, nil)
}

// Rejection is a reading of a batch the cloud refused in an answer that took the
// batch: its index in the batch as sent, and the cloud's reason.
type Rejection struct {
	Index  int
	Reason string
}

// AckBatchRejecting is AckBatch for a batch of which the cloud rejected some
// readings: those become dead letters with the cloud's reason (and the batch id), the
// others are deleted as stored, in one commit. sent is how many readings the batch
// had when it was sent: if a full drop-oldest spool shrank it since, indexes are
// counted from its newest reading, and a rejected reading already dropped is skipped.
func (s *Spool) AckBatchRejecting(id string, sent int, rejected []Rejection) error {
	o := &op{kind: opAck, batchID: id, sent: sent, rejected: rejected}
	if _, err := s.submit(context.Background(), o, false); err != nil {
		return fmt.Errorf("spool: ack batch: %w", err) // no id: errors reach the status page
	}
	return nil
}

// DeadLetterBatch moves the batch's readings to the dead letters with reason, in one
// commit: the cloud rejected the batch for good.
func (s *Spool) DeadLetterBatch(id string, reason string) error {
	o := &op{kind: opDeadBatch, batchID: id, reason: reason}
	if _, err := s.submit(context.Background(), o, false); err != nil {
		return fmt.Errorf("spool: dead-letter batch: %w", err)
	}
	return nil
}

// Stats returns a snapshot of the spool's contents and counters.
func (s *Spool) Stats() Stats {
	s.mu.Lock()
	st := s.st
	s.mu.Unlock()
	out := Stats{
		Readings:        st.readings,
		Bytes:           st.bytes,
		OldestAppend:    st.oldest,
		DeadLetters:     st.deadCount,
		DeadLetterBytes: st.deadBytes,
		Appended:        st.appended,
		Acked:           st.acked,
		Dropped:         st.dropped,
		Rejected:        st.rejected,
		DeadLettered:    st.deadLettered,
		DeadEvicted:     st.deadEvicted,
		Commits:         st.commits,
		Compactions:     st.compactions,
	}
	out.OpenBatches = len(st.batches)
	if fi, err := os.Stat(s.path); err == nil {
		out.FileBytes = fi.Size()
	}
	return out
}

// Close stops taking calls, waits for the queued ones to commit, then closes the file.
// Calling it again does nothing.
func (s *Spool) Close() error {
	s.writer.Close()

	s.dbMu.Lock()
	defer s.dbMu.Unlock()
	if s.db == nil {
		return nil
	}
	err := s.db.Close()
	s.db = nil
	if err != nil {
		return fmt.Errorf("spool: close: %w", err)
	}
	s.log.Info("spool closed", "path", s.path)
	return nil
}

// submit hands o to the writer and waits for its result; the error is the result's
// own (r.err), or why o was never taken. coming marks Append and DeadLetter, which
// announced their call to the writer (Coming) while they prepared it.
func (s *Spool) submit(ctx context.Context, o *op, coming bool) (result, error) {
	do := s.writer.Do
	if coming {
		do = s.writer.DoComing
	}
	r, err := do(ctx, o)
	if errors.Is(err, groupcommit.ErrClosed) {
		return result{}, ErrClosed
	}
	if err == nil {
		err = r.err
	}
	return r, err
}

// view runs fn in a read transaction on the current file.
func (s *Spool) view(fn func(*bolt.Tx) error) error {
	s.dbMu.RLock()
	defer s.dbMu.RUnlock()
	if s.broken != nil {
		return s.broken
	}
	if s.db == nil {
		return ErrClosed
	}
	return s.db.View(fn)
}

// readBatch copies the readings of rec out of the transaction.
func (s *Spool) readBatch(rb *bolt.Bucket, rec batchRec) Batch {
	b := Batch{ID: batchID(rec, rec.first), First: rec.first, Last: rec.last}
	var vals [][]byte
	total := 0
	c := rb.Cursor()
	for k, v := c.Seek(seqKey(rec.first)); k != nil && binary.BigEndian.Uint64(k) <= rec.last; k, v = c.Next() {
		j := readingJSON(v)
		vals = append(vals, j)
		total += len(j)
	}
	buf := make([]byte, total)
	b.Readings = make([][]byte, len(vals))
	for i, j := range vals {
		n := copy(buf, j)
		b.Readings[i] = buf[:n:n]
		buf = buf[n:]
	}
	b.Bytes = total
	return b
}

func seqKey(seq uint64) []byte {
	k := make([]byte, 8)
	binary.BigEndian.PutUint64(k, seq)
	return k
}

func appendTime(v []byte) time.Time {
	if len(v) < 8 {
		return time.Time{}
	}
	return time.Unix(0, int64(binary.BigEndian.Uint64(v)))
}

func readingJSON(v []byte) []byte {
	if len(v) < 8 {
		return v
	}
	return v[8:]
}

func readingCost(v []byte) int64 { return int64(len(readingJSON(v))) + recordOverhead }

// putBatches persists the open batches, oldest first.
func putBatches(meta *bolt.Bucket, recs []batchRec) error {
	if len(recs) == 0 {
		return meta.Delete(metaBatch)
	}
	v := make([]byte, 0, batchRecV2*len(recs))
	for _, r := range recs {
		v = append(v, r.encode()...)
	}
	return meta.Put(metaBatch, v)
}

// deadRecord is a dead letter as stored.
type deadRecord struct {
	Topic   string    `json:"topic,omitempty"`
	Payload []byte    `json:"payload"`
	Reason  string    `json:"reason"`
	At      time.Time `json:"at"`
	Batch   string    `json:"batch,omitempty"`
}

func decodeDead(k, v []byte) (DeadLetter, error) {
	var d deadRecord
	dec := json.NewDecoder(bytes.NewReader(v))
	if err := dec.Decode(&d); err != nil {
		return DeadLetter{}, fmt.Errorf("dead letter %d: %w", binary.BigEndian.Uint64(k), err)
	}
	return DeadLetter{
		ID:      binary.BigEndian.Uint64(k),
		Topic:   d.Topic,
		Payload: d.Payload,
		Reason:  d.Reason,
		At:      d.At,
		Batch:   d.Batch,
	}, nil
}
