// Package forward is the edge agent's batching HTTP forwarder: it takes batches of
// readings from the spool and POSTs them to the cloud sensor service as one
// gzip-compressed JSON body per batch, with the batch id as Idempotency-Key.
//
// # Batches in flight
//
// With a Queue that is also a WindowQueue (the agent's spool), Run and Flush keep up
// to MaxInFlight (default 4) batches open and send those they may at once, so the
// sensor service can commit several of them in one transaction (its group commit
// serves concurrent requests only). With a plain Queue, or MaxInFlight 1, batches go
// one at a time, oldest first: the same engine with a window of one.
//
// Ordering guarantee. A reading's sensor is the sensor_id its spooled JSON starts
// with. For two readings r1 and r2 of one sensor, spooled in that order: either they
// are in the same batch, r1 first in the body, or no request carrying r2 (first
// attempt or retry) starts before r1's batch has left the spool, that is before the
// cloud answered 2xx to it (then it was committed there first) or refused it for
// good (then it is dead-lettered and r2 may arrive without it, as with one batch at
// a time). Concretely, a batch is sent only when no older open batch shares a sensor
// with it; a batch with a reading whose sensor cannot be read that way shares one
// with every batch. Readings of different sensors have no order between them:
// batches without a common sensor may be in flight together, be committed by the
// cloud in any order and be acknowledged in any order. Open batches found at start
// (left by a crash or by a shutdown) are the oldest, so the rule covers restarts too;
// they go again with their ids and readings.
//
// After any attempt in the window fails (network error, retryable status, spool
// error), the forwarder lets the attempts still in flight end, then sends the oldest open
// batch alone with the retry rules below until it has left the spool, and then opens
// the window again. A batch of the window is sent as it was formed; if a full
// drop-oldest spool shrinks it meanwhile, the cloud may still get the dropped
// readings under the old id (one id, one content still holds, and the spool applies
// the answer to what is left).
//
// When a batch goes out:
//
//   - as soon as MaxCount readings are waiting;
//   - as soon as the waiting readings are estimated to fill MaxBytes (Pending gives
//     no sizes: the estimate is the mean reading size of the last batch sent, 100
//     bytes before the first);
//   - when the oldest waiting reading has waited Linger;
//   - on Flush, at once, until the spool is empty.
//
// What the cloud's answer does to a batch:
//
//   - 2xx, when the answer matches the batch (see below): the batch is acknowledged
//     and leaves the spool. The readings the answer rejects (its "rejected" list)
//     stay as dead letters with the cloud's reasons when the queue is a
//     RejectingQueue (the agent's spool is).
//   - 2xx that does not match the batch, and 422: see "Answers that do not match".
//   - 408, 409, 425, 429, 5xx and network errors: the same batch (same id, same
//     readings) is sent again after an exponential backoff with full jitter between
//     MinBackoff and MaxBackoff; a Retry-After header (seconds or HTTP date) is a
//     floor, honoured up to MaxRetryAfter. After a network error the cloud's
//     /healthz is probed every ProbeInterval during the backoff, so sending resumes
//     within about a second of the cloud coming back, whatever the backoff.
//   - 3xx, 401, 403, 404, 405, 407 and 415: the agent's configuration (URL, token,
//     proxy) is wrong, not the batch. The batch is held and retried with backoff and
//     the error is logged and shown in Stats; dead-lettering it would empty the whole
//     spool into the dead-letter bucket because of one wrong flag.
//   - 413: the batch is too large for something between the agent and the cloud
//     (the sensor service accepts 8 MiB, the agent sends at most MaxBytes). The
//     spool fixes a batch's composition when it first hands it out, so the batch
//     cannot be split: it is dead-lettered with the reason, and the forwarder halves
//     the byte budget of the batches after it (down to 64 KiB).
//   - every other 4xx (400, …): the cloud will never take this batch; it is
//     dead-lettered with the reason "cloud answered <status>: <problem detail>" and
//     the next batch goes.
//
// # Answers that do not match
//
// A batch leaves the spool as delivered only on a 2xx whose body is the sensor
// service's ingest answer for that very batch: its batch_id is the id sent, every
// index in "rejected" names a reading of the batch (0 ≤ index < readings, each once),
// and accepted + duplicates + len(rejected) is the number of readings sent. Anything
// else (another or no batch id, counts that do not add up, a body that is not such an
// answer) is a mismatch, as is a 422: the cloud holds this batch id with other
// readings (an idempotency conflict). An answer kept for someone else's request under
// this batch id, a proxy that answers for the cloud, or a cloud that lost the batch
// must not make the agent delete readings as stored.
//
// A mismatch is counted (Stats.AnswerMismatches, by reason: MismatchReasons), logged
// with the batch id and the numbers, and the same batch is sent again with the
// backoff above. When MismatchRetries retries have mismatched too, the batch's
// readings are dead-lettered with the reason "cloud answer did not match the batch
// <n> times: …", from where `atrium-agent spool requeue` sends them again as a new
// batch: nothing is deleted as stored. Other failures in between (503, network) do
// not use up the budget.
package forward

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Batch is a group of spooled readings, each one reading's JSON as spooled.
type Batch struct {
	ID       string
	Readings [][]byte
}

// Queue is what the forwarder needs of the spool.
type Queue interface {
	// NextBatch returns the oldest readings, at most maxCount of them and at most
	// maxBytes of JSON (but at least one), and false when there are none. Until the
	// batch is acknowledged or dead-lettered it returns the same id and readings.
	NextBatch(maxCount, maxBytes int) (Batch, bool, error)
	// AckBatch removes a batch the cloud has taken.
	AckBatch(id string) error
	// DeadLetterBatch moves a batch the cloud refused to the dead letters, with why.
	DeadLetterBatch(id, reason string) error
	// Ready receives a value when readings have been added.
	Ready() <-chan struct{}
	// Pending is how many readings are spooled and when the oldest was added
	// (zero when there are none).
	Pending() (readings int, oldest time.Time)
}

// Defaults for the zero fields of Config.
const (
	DefaultMaxCount      = 500
	DefaultMaxBytes      = 1 << 20
	DefaultLinger        = time.Second
	DefaultMinBackoff    = 200 * time.Millisecond
	DefaultMaxBackoff    = 30 * time.Second
	DefaultTimeout       = 30 * time.Second
	DefaultProbeInterval = time.Second
	DefaultUserAgent     = "atrium-agent"
	DefaultMaxInFlight   = 4
	// DefaultMismatchRetries is how many times a batch whose answer does not match it
	// is sent again before it is dead-lettered: with the default backoff the last
	// try is some seconds after the first, long enough for a transient fault, short
	// enough for a batch that can never be answered right.
	DefaultMismatchRetries = 5
)

// Reasons of an answer that does not match its batch, the label values of the
// mismatch counter.
const (
	MismatchBatchID  = "batch_id"       // a 2xx answer for another batch id, or none
	MismatchCounts   = "counts"         // accepted + duplicates + rejected ≠ readings sent
	MismatchRejected = "rejected_index" // a rejected index out of range, or repeated
	MismatchBody     = "body"           // a 2xx body that is not an ingest answer
	MismatchConflict = "conflict"       // 422: the cloud holds the id with other readings
)

// MismatchReasons lists every reason of a mismatch.
var MismatchReasons = []string{MismatchBatchID, MismatchCounts, MismatchRejected, MismatchBody, MismatchConflict}

// MaxRetryAfter caps how long a cloud's Retry-After can hold a batch back.
const MaxRetryAfter = 5 * time.Minute

// minMaxBytes is the floor of the byte budget after 413 answers.
const minMaxBytes = 64 << 10

// initialReadingSize is the estimate of a reading's JSON size before the first batch
// has measured it (a typical reading is 100–140 bytes).
const initialReadingSize = 100

// freshSuccess is how recent a delivery must be for Probe to skip the network.
const freshSuccess = time.Minute

// Config sets up a Forwarder. Zero fields take the defaults above.
type Config struct {
	// URL is the cloud's base URL; batches go to URL + "/sensors/data".
	URL string
	// Token, when set, is sent as "Authorization: Bearer <Token>".
	Token string
	// MaxCount and MaxBytes bound one batch (readings, bytes of uncompressed JSON).
	MaxCount int
	MaxBytes int
	// Linger is how long the oldest reading may wait for a batch to fill.
	Linger time.Duration
	// MinBackoff and MaxBackoff bound the wait between two attempts of a batch.
	MinBackoff time.Duration
	MaxBackoff time.Duration
	// MaxInFlight bounds how many batches are open and in flight at once when the
	// queue is a WindowQueue (see the package doc); 1 sends one batch at a time.
	MaxInFlight int
	// MismatchRetries is how many times a batch whose answer does not match it is
	// sent again before its readings are dead-lettered (see the package doc). Zero
	// means DefaultMismatchRetries; negative means none: dead-lettered at the first.
	MismatchRetries int
	// Timeout bounds one HTTP attempt.
	Timeout time.Duration
	// ProbeInterval is how often the cloud's /healthz is tried while a batch waits
	// out its backoff after a network error.
	ProbeInterval time.Duration
	// UserAgent is sent with every request.
	UserAgent string
	// Client sends the requests; it must not follow redirects for POSTs on its own
	// (the forwarder turns redirect-following off on its copy).
	Client *http.Client
	Logger *slog.Logger
	// Now is the clock, for linger and Retry-After dates.
	Now func() time.Time
}

// Stats is what the forwarder has done since it started.
type Stats struct {
	Forwarded    int64 // readings in batches the cloud answered 2xx
	Duplicates   int64 // of those, readings the cloud already had
	Rejected     int64 // of those, readings the cloud refused (its "rejected" list)
	Batches      int64 // batches the cloud answered 2xx
	Retries      int64 // attempts that failed and were retried
	DeadLettered int64 // readings in batches dead-lettered
	// AnswerMismatches counts the answers that did not match their batch, by
	// reason (MismatchReasons).
	AnswerMismatches map[string]int64
	LastError        string    // the last failure, empty until one happens
	LastErrorAt      time.Time // when it happened
	LastSuccess      time.Time // when the cloud last took a batch
	CloudReachable   bool      // the last request to the cloud (batch or probe) got a 2xx
}

// Forwarder sends spooled readings to the cloud. Run it; call Flush on shutdown.
type Forwarder struct {
	q         Queue
	cfg       Config
	log       *slog.Logger
	client    *http.Client
	dataURL   string
	healthURL string

	send       sync.Mutex   // held by Run and Flush: one window at a time
	queueFails atomic.Int64 // consecutive queue errors

	maxBytes atomic.Int64 // the byte budget of the next batch (MaxBytes, halved by 413s)
	avgSize  atomic.Int64 // mean bytes of a reading in the last batch sent

	mu    sync.Mutex
	stats Stats
	// mismatches counts, per open batch id, the answers that did not match it.
	mismatches map[string]int
}

// New makes a Forwarder that takes batches from q.
func New(q Queue, cfg Config) *Forwarder {
	setDefault(&cfg.MaxCount, DefaultMaxCount)
	setDefault(&cfg.MaxBytes, DefaultMaxBytes)
	setDefault(&cfg.Linger, DefaultLinger)
	setDefault(&cfg.MinBackoff, DefaultMinBackoff)
	setDefault(&cfg.MaxBackoff, DefaultMaxBackoff)
	setDefault(&cfg.MaxInFlight, DefaultMaxInFlight)
	setDefault(&cfg.Timeout, DefaultTimeout)
	setDefault(&cfg.ProbeInterval, DefaultProbeInterval)
	setDefault(&cfg.UserAgent, DefaultUserAgent)
	setDefault(&cfg.MismatchRetries, DefaultMismatchRetries)
	cfg.MismatchRetries = max(cfg.MismatchRetries, 0)
	if cfg.MaxBackoff < cfg.MinBackoff {
		cfg.MaxBackoff = cfg.MinBackoff
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	var client http.Client
	if cfg.Client != nil {
		client = *cfg.Client
	} else if t, ok := http.DefaultTransport.(*http.Transport); ok {
		client.Transport = t.Clone()
	}
	// A POST redirected to a GET would be "answered" by whatever the GET returns.
	client.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }

	base := strings.TrimRight(cfg.URL, "/")
	f := &Forwarder{
		q: q, cfg: cfg, log: cfg.Logger, client: &client,
		dataURL: base + "/sensors/data", healthURL: base + "/healthz",
		mismatches: map[string]int{},
	}
	f.stats.AnswerMismatches = map[string]int64{}
	for _, r := range MismatchReasons {
		f.stats.AnswerMismatches[r] = 0
	}
	f.maxBytes.Store(int64(cfg.MaxBytes))
	f.avgSize.Store(initialReadingSize)
	return f
}

func setDefault[T comparable](v *T, def T) {
	var zero T
	if *v == zero {
		*v = def
	}
}

// Run forwards batches until ctx ends, then returns nil. A batch in flight when ctx
// ends stays in the spool, to go again (same id) with the next Run or Flush.
func (f *Forwarder) Run(ctx context.Context) error {
	f.send.Lock()
	defer f.send.Unlock()
	w := f.newWindow(false)
	defer w.close()
	for ctx.Err() == nil {
		w.step(ctx)
	}
	return nil
}

// dueFor is due for n waiting readings, the oldest added at oldest.
func (f *Forwarder) dueFor(n int, oldest time.Time) time.Duration {
	if n <= 0 {
		return f.idle()
	}
	if n >= f.cfg.MaxCount || oldest.IsZero() {
		return 0
	}
	if int64(n)*f.avgSize.Load() >= f.maxBytes.Load() {
		return 0
	}
	age := f.cfg.Now().Sub(oldest)
	if age >= f.cfg.Linger {
		return 0
	}
	return min(f.cfg.Linger-age, f.cfg.Linger) // a clock set back must not stall sending

}

// idle is how long Run waits with nothing to send: Ready wakes it sooner, the timer
// is a safety net.
func (f *Forwarder) idle() time.Duration {
	return min(max(f.cfg.Linger, 10*time.Millisecond), time.Second)
}

// Flush sends everything spooled, ignoring Linger, until the spool is empty (nil)
// or ctx ends (an error saying how many readings are left). Use it on shutdown,
// after Run has returned, with a deadline.
func (f *Forwarder) Flush(ctx context.Context) error {
	f.send.Lock()
	defer f.send.Unlock()
	w := f.newWindow(true)
	defer w.close()
	for {
		n, _ := f.q.Pending()
		if n == 0 {
			return nil
		}
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("forward: flush: %d readings left in the spool: %w", n, err)
		}
		if !w.step(ctx) {
			return nil // the spool has no batch to give
		}
	}
}

// Stats returns a snapshot of what the forwarder has done.
func (f *Forwarder) Stats() Stats {
	f.mu.Lock()
	defer f.mu.Unlock()
	st := f.stats
	st.AnswerMismatches = maps.Clone(f.stats.AnswerMismatches)
	return st
}

// Probe reports whether the cloud is reachable, for the agent's /readyz: nil when a
// batch was delivered in the last minute and nothing has failed since, else the
// answer of GET <URL>/healthz.
func (f *Forwarder) Probe(ctx context.Context) error {
	st := f.Stats()
	if st.CloudReachable && !st.LastSuccess.IsZero() && f.cfg.Now().Sub(st.LastSuccess) < freshSuccess {
		return nil
	}
	return f.probe(ctx)
}

func (f *Forwarder) probe(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, min(f.cfg.Timeout, 5*time.Second))
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, f.healthURL, nil)
	if err != nil {
		return fmt.Errorf("forward: probe: %w", err)
	}
	f.setHeaders(req)
	resp, err := f.client.Do(req)
	if err != nil {
		f.setReachable(false)
		return fmt.Errorf("forward: probe: %w", err)
	}
	drain(resp.Body)
	if resp.StatusCode/100 != 2 {
		f.setReachable(false)
		return fmt.Errorf("forward: probe: cloud answered %d", resp.StatusCode)
	}
	f.setReachable(true)
	return nil
}

func (f *Forwarder) setHeaders(req *http.Request) {
	req.Header.Set("User-Agent", f.cfg.UserAgent)
	if f.cfg.Token != "" {
		req.Header.Set("Authorization", "Bearer "+f.cfg.Token)
	}
}

func (f *Forwarder) setReachable(ok bool) {
	f.mu.Lock()
	f.stats.CloudReachable = ok
	f.mu.Unlock()
}

// prepare encodes b into buf (reset first) and updates the mean reading size.
func (f *Forwarder) prepare(buf *bytes.Buffer, b Batch) error {
	buf.Reset()
	if err := encode(buf, b); err != nil {
		return fmt.Errorf("forward: encode batch: %w", err)
	}
	size := 0
	for _, r := range b.Readings {
		size += len(r)
	}
	f.avgSize.Store(int64(max(size/len(b.Readings), 1)))
	return nil
}

// RejectingQueue is a Queue that keeps the readings the cloud rejected in an answer
// that took their batch. Without it they leave the queue with the batch, counted in
// Stats.Rejected and logged.
type RejectingQueue interface {
	// AckBatchRejecting is AckBatch, except that the readings at the rejected
	// indexes of the batch as sent (sent readings) are kept as dead letters with the
	// cloud's reasons, in the same step.
	AckBatchRejecting(id string, sent int, rejected []Rejection) error
}

// Rejection is a reading the cloud rejected: its index in the batch and the reason.
type Rejection struct {
	Index  int
	Reason string
}

// ackDelivered acknowledges a batch the cloud took, handing its rejected readings
// to a RejectingQueue.
func ackDelivered(q Queue, b Batch, res result) error {
	rq, ok := q.(RejectingQueue)
	if !ok || len(res.Rejected) == 0 {
		return q.AckBatch(b.ID)
	}
	rj := make([]Rejection, len(res.Rejected))
	for i, r := range res.Rejected {
		rj[i] = Rejection{Index: r.Index, Reason: r.Reason}
	}
	return rq.AckBatchRejecting(b.ID, len(b.Readings), rj)
}

// recordAck counts a batch the cloud took and logs what it said.
func (f *Forwarder) recordAck(ctx context.Context, b Batch, res result) {
	now := f.cfg.Now()
	f.mu.Lock()
	outage := !f.stats.CloudReachable && !f.stats.LastErrorAt.IsZero()
	f.stats.Forwarded += int64(len(b.Readings))
	f.stats.Duplicates += int64(res.Duplicates)
	f.stats.Rejected += int64(len(res.Rejected))
	f.stats.Batches++
	f.stats.LastSuccess = now
	f.stats.CloudReachable = true
	delete(f.mismatches, b.ID)
	f.mu.Unlock()
	if outage {
		f.log.InfoContext(ctx, "cloud reachable again", "batch_id", b.ID)
	}
	if len(res.Rejected) > 0 {
		first := res.Rejected[0]
		f.log.WarnContext(ctx, "cloud rejected readings", "batch_id", b.ID, "rejected", len(res.Rejected),
			"first_index", first.Index, "first_reason", first.Reason)
	}
	f.log.DebugContext(ctx, "batch forwarded", "batch_id", b.ID, "readings", len(b.Readings), "duplicates", res.Duplicates)
}

// deadLetter moves b to q's dead letters with the reason in out; after a 413 the
// byte budget of the next batches is halved.
func (f *Forwarder) deadLetter(ctx context.Context, q Queue, b Batch, out outcome) error {
	reason := out.err.Error()
	if out.status == http.StatusRequestEntityTooLarge {
		if mb := f.maxBytes.Load(); mb > minMaxBytes {
			f.maxBytes.Store(max(mb/2, minMaxBytes))
		}
	}
	f.failed(out.err)
	f.log.ErrorContext(ctx, "batch dead-lettered", "batch_id", b.ID, "readings", len(b.Readings),
		"status", out.status, "reason", reason, "max_bytes", f.maxBytes.Load())
	if err := q.DeadLetterBatch(b.ID, reason); err != nil {
		return fmt.Errorf("forward: dead-letter batch: %w", err)
	}
	f.queueFails.Store(0)
	f.mu.Lock()
	f.stats.DeadLettered += int64(len(b.Readings))
	f.stats.CloudReachable = true // it answered, and the next batch may well go
	delete(f.mismatches, b.ID)
	f.mu.Unlock()
	return nil
}

// mismatched counts and logs an answer that does not match batch b. spent is true
// when b has used up its MismatchRetries: then final is the outcome to dead-letter
// it with.
func (f *Forwarder) mismatched(ctx context.Context, b Batch, out outcome) (final outcome, spent bool) {
	f.mu.Lock()
	f.stats.AnswerMismatches[out.reason]++
	f.mismatches[b.ID]++
	n := f.mismatches[b.ID]
	f.mu.Unlock()
	r := out.result
	f.log.ErrorContext(ctx, "cloud answer does not match the batch", "batch_id", b.ID,
		"answer_batch_id", r.BatchID, "status", out.status, "reason", out.reason, "readings", len(b.Readings),
		"accepted", r.Accepted, "duplicates", r.Duplicates, "rejected", len(r.Rejected),
		"err", out.err, "mismatches", n, "budget", f.cfg.MismatchRetries+1)
	if n <= f.cfg.MismatchRetries {
		return out, false
	}
	out.err = fmt.Errorf("cloud answer did not match the batch %d times: %w", n, out.err)
	return out, true
}

// renamed carries the mismatches of a batch over to its new id (drop-oldest shrank it).
func (f *Forwarder) renamed(old, id string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if n, ok := f.mismatches[old]; ok {
		delete(f.mismatches, old)
		f.mismatches[id] = n
	}
}

// keepMismatches forgets the mismatches of batches that are no longer open (dropped
// by a full spool, or renamed while in the window).
func (f *Forwarder) keepMismatches(open []Batch) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.mismatches) == 0 {
		return
	}
	ids := make(map[string]bool, len(open))
	for _, b := range open {
		ids[b.ID] = true
	}
	for id := range f.mismatches {
		if !ids[id] {
			delete(f.mismatches, id)
		}
	}
}

// queueError records a spool failure and backs off before the next try, so a
// broken spool is not hammered. Batch ids go to the log (args), never into err: the
// last error is shown on the agent's status page.
func (f *Forwarder) queueError(ctx context.Context, err error, args ...any) error {
	f.log.ErrorContext(ctx, "spool operation failed", append([]any{"err", err}, args...)...)
	f.mu.Lock()
	f.stats.LastError = err.Error()
	f.stats.LastErrorAt = f.cfg.Now()
	f.mu.Unlock()
	f.pause(ctx, f.backoff(int(min(f.queueFails.Add(1)-1, 32)), 0), false)
	return err
}

func (f *Forwarder) failed(err error) {
	now := f.cfg.Now()
	f.mu.Lock()
	f.stats.LastError = err.Error()
	f.stats.LastErrorAt = now
	f.stats.CloudReachable = false
	f.mu.Unlock()
}

// backoff is the wait before attempt+1: full jitter in [MinBackoff, MinBackoff·2^attempt]
// capped at MaxBackoff, and never less than floor (a Retry-After, capped at MaxRetryAfter).
func (f *Forwarder) backoff(attempt int, floor time.Duration) time.Duration {
	lo, hi := f.cfg.MinBackoff, f.cfg.MaxBackoff
	ceil := hi
	if attempt < 32 {
		if c := lo << attempt; c > 0 && c < hi {
			ceil = c
		}
	}
	d := lo
	if ceil > lo {
		d += rand.N(ceil - lo + 1)
	}
	return max(d, min(floor, MaxRetryAfter))
}

// pause waits d, or less when probing (after a network error) finds the cloud back.
// It returns false when ctx ends.
func (f *Forwarder) pause(ctx context.Context, d time.Duration, probe bool) bool {
	timer := time.NewTimer(d)
	defer timer.Stop()
	var tick <-chan time.Time
	if probe && d > f.cfg.ProbeInterval {
		t := time.NewTicker(f.cfg.ProbeInterval)
		defer t.Stop()
		tick = t.C
	}
	for {
		select {
		case <-ctx.Done():
			return false
		case <-timer.C:
			return true
		case <-tick:
			if f.probe(ctx) == nil {
				f.log.InfoContext(ctx, "cloud answers its health check, resending now")
				return true
			}
		}
	}
}

// The classes of an answer.
const (
	delivered = iota // 2xx with an answer that matches the batch
	retry            // transient or configuration trouble: send the same batch again
	refused          // the cloud will never take this batch
	mismatch         // an answer that does not match the batch, or 422
)

// outcome is what one attempt came to.
type outcome struct {
	class      int
	status     int // 0 for a network error
	err        error
	retryAfter time.Duration
	result     result
	reason     string // of a mismatch
}

// result is the sensor service's answer to a batch.
type result struct {
	BatchID    string `json:"batch_id"`
	Accepted   int    `json:"accepted"`
	Duplicates int    `json:"duplicates"`
	Rejected   []struct {
		Index  int    `json:"index"`
		Reason string `json:"reason"`
	} `json:"rejected"`
}

// maxAnswer bounds how much of an error answer is read; a 2xx answer may also have
// answerPerReading bytes per reading sent (its rejections).
const (
	maxAnswer        = 64 << 10
	answerPerReading = 512
)

// checkAnswer reads a 2xx body: the ingest answer for batch id of n readings. It
// returns the mismatch reason ("" when it matches) and what is wrong.
func checkAnswer(body []byte, id string, n int) (result, string, error) {
	var a struct {
		BatchID    *string `json:"batch_id"`
		Accepted   *int    `json:"accepted"`
		Duplicates *int    `json:"duplicates"`
		Rejected   []struct {
			Index  *int   `json:"index"`
			Reason string `json:"reason"`
		} `json:"rejected"`
	}
	if err := json.Unmarshal(body, &a); err != nil {
		return result{}, MismatchBody, fmt.Errorf("the answer is not an ingest answer: %w", err)
	}
	if a.Accepted == nil || a.Duplicates == nil {
		return result{}, MismatchBody, errors.New("the answer has no accepted or duplicates count")
	}
	var r result
	r.Accepted, r.Duplicates = *a.Accepted, *a.Duplicates
	if a.BatchID != nil {
		r.BatchID = *a.BatchID
	}
	seen := make(map[int]bool, len(a.Rejected))
	for _, rj := range a.Rejected {
		if rj.Index == nil {
			return r, MismatchBody, errors.New("the answer rejects a reading without an index")
		}
		r.Rejected = append(r.Rejected, struct {
			Index  int    `json:"index"`
			Reason string `json:"reason"`
		}{*rj.Index, rj.Reason})
	}
	switch {
	case a.BatchID == nil:
		return r, MismatchBatchID, errors.New("the answer names no batch id")
	case r.BatchID != id:
		return r, MismatchBatchID, errors.New("the answer is for another batch id")
	}
	for _, rj := range r.Rejected {
		if rj.Index < 0 || rj.Index >= n {
			return r, MismatchRejected, fmt.Errorf("the answer rejects reading %d of %d", rj.Index, n)
		}
		if seen[rj.Index] {
			return r, MismatchRejected, fmt.Errorf("the answer rejects reading %d twice", rj.Index)
		}
		seen[rj.Index] = true
	}
	if r.Accepted < 0 || r.Duplicates < 0 || r.Accepted+r.Duplicates+len(r.Rejected) != n {
		return r, MismatchCounts, fmt.Errorf("%d accepted, %d duplicates and %d rejected for %d readings sent",
			r.Accepted, r.Duplicates, len(r.Rejected), n)
	}
	return r, "", nil
}

func (f *Forwarder) post(ctx context.Context, b Batch, body []byte) outcome {
	id := b.ID
	ctx, cancel := context.WithTimeout(ctx, f.cfg.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, f.dataURL, bytes.NewReader(body))
	if err != nil {
		return outcome{class: retry, err: fmt.Errorf("forward: post: %w", err)}
	}
	f.setHeaders(req)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Content-Encoding", "gzip")
	req.Header.Set("Idempotency-Key", id)
	resp, err := f.client.Do(req)
	if err != nil {
		return outcome{class: retry, err: fmt.Errorf("forward: post: %w", err)}
	}
	limit := int64(maxAnswer)
	if resp.StatusCode/100 == 2 {
		limit += int64(answerPerReading * len(b.Readings))
	}
	answer, err := io.ReadAll(io.LimitReader(resp.Body, limit))
	drain(resp.Body)
	if err != nil && resp.StatusCode/100 == 2 {
		// The cloud may have stored the batch: sent again, it is answered from its id.
		return outcome{class: retry, status: resp.StatusCode, err: fmt.Errorf("forward: read answer: %w", err)}
	}

	out := outcome{status: resp.StatusCode}
	code := resp.StatusCode
	switch {
	case code/100 == 2:
		res, reason, err := checkAnswer(answer, id, len(b.Readings))
		out.result = res
		if reason == "" {
			out.class = delivered
			return out
		}
		out.class, out.reason = mismatch, reason
		out.err = fmt.Errorf("cloud answered %d: %w", code, err)
		return out
	case code == http.StatusUnprocessableEntity:
		out.class, out.reason = mismatch, MismatchConflict
		out.retryAfter = parseRetryAfter(resp.Header.Get("Retry-After"), f.cfg.Now())
	case code == http.StatusRequestTimeout, code == http.StatusConflict, code == http.StatusTooEarly,
		code == http.StatusTooManyRequests, code >= 500:
		out.class = retry
		out.retryAfter = parseRetryAfter(resp.Header.Get("Retry-After"), f.cfg.Now())
	case code/100 == 4 && code != http.StatusUnauthorized && code != http.StatusForbidden &&
		code != http.StatusNotFound && code != http.StatusMethodNotAllowed &&
		code != http.StatusProxyAuthRequired && code != http.StatusUnsupportedMediaType:
		out.class = refused
	default: // 1xx, 3xx, and the 4xx that say the agent's configuration is wrong
		out.class = retry
		out.retryAfter = parseRetryAfter(resp.Header.Get("Retry-After"), f.cfg.Now())
	}
	// The detail may quote the batch id; errors reach the status page, ids do not.
	detail := strings.ReplaceAll(problemDetail(code, resp.Header, answer), id, "<batch id>")
	out.err = fmt.Errorf("cloud answered %d: %s", code, detail)
	return out
}

// problemDetail is the best one-line reason in an error answer.
func problemDetail(code int, h http.Header, body []byte) string {
	if strings.Contains(h.Get("Content-Type"), "json") {
		var p struct {
			Title  string `json:"title"`
			Detail string `json:"detail"`
		}
		if json.Unmarshal(body, &p) == nil {
			if p.Detail != "" {
				return clip(p.Detail, 300)
			}
			if p.Title != "" {
				return clip(p.Title, 300)
			}
		}
	}
	if code/100 == 3 {
		if loc := h.Get("Location"); loc != "" {
			return "redirected to " + clip(loc, 200) + "; point the agent at the final URL"
		}
	}
	if text := strings.Join(strings.Fields(string(body)), " "); text != "" && !strings.HasPrefix(h.Get("Content-Type"), "text/html") {
		return clip(text, 300)
	}
	if s := http.StatusText(code); s != "" {
		return s
	}
	return "no detail"
}

// parseRetryAfter reads a Retry-After header: delay seconds or an HTTP date.
func parseRetryAfter(v string, now time.Time) time.Duration {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0
	}
	if secs, err := strconv.ParseInt(v, 10, 64); err == nil {
		if secs <= 0 {
			return 0
		}
		return time.Duration(min(secs, int64(MaxRetryAfter/time.Second))) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil && t.After(now) {
		return min(t.Sub(now), MaxRetryAfter)
	}
	return 0
}

func drain(body io.ReadCloser) {
	_, _ = io.Copy(io.Discard, io.LimitReader(body, 256<<10))
	_ = body.Close()
}

func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

var (
	// zw is the one gzip writer every batch is compressed with, one at a time. A
	// compress/flate writer holds about 1.2 MiB whatever its level; a sync.Pool kept one
	// per batch being encoded and dropped them at every GC, so each GC cycle allocated
	// them again. Compressing a batch takes well under a millisecond, so batches in
	// flight hardly ever wait for it.
	zw struct {
		sync.Mutex
		w *gzip.Writer
	}
	bufPool = sync.Pool{New: func() any { return new(bytes.Buffer) }}
)

func putBuffer(b *bytes.Buffer) {
	if b.Cap() > 4<<20 {
		return // let an outsized buffer go
	}
	b.Reset()
	bufPool.Put(b)
}

// The fixed parts of a batch body.
var (
	bodyStart    = []byte(`{"batch_id":`)
	bodyReadings = []byte(`,"readings":[`)
	bodyComma    = []byte(`,`)
	bodyEnd      = []byte(`]}`)
)

// encode writes {"batch_id":…,"readings":[…]} gzip-compressed into dst, the
// readings as spooled, without decoding them.
func encode(dst *bytes.Buffer, b Batch) error {
	id, err := json.Marshal(b.ID)
	if err != nil {
		return err
	}
	zw.Lock()
	defer zw.Unlock()
	if zw.w == nil {
		zw.w, _ = gzip.NewWriterLevel(dst, gzip.BestSpeed) // BestSpeed is a valid level
	} else {
		zw.w.Reset(dst)
	}
	w := zw.w
	if _, err := w.Write(bodyStart); err != nil {
		return err
	}
	if _, err := w.Write(id); err != nil {
		return err
	}
	if _, err := w.Write(bodyReadings); err != nil {
		return err
	}
	for i, r := range b.Readings {
		if i > 0 {
			if _, err := w.Write(bodyComma); err != nil {
				return err
			}
		}
		if _, err := w.Write(r); err != nil {
			return err
		}
	}
	if _, err := w.Write(bodyEnd); err != nil {
		return err
	}
	return w.Close()
}
