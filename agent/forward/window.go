package forward

import (
	"bytes"
	"context"
	"fmt"
	"slices"
	"time"
)

// WindowQueue is what the forwarder needs of a queue to keep several batches in
// flight. A queue that has only the Queue methods is drained one batch at a time.
type WindowQueue interface {
	Queue
	// FormBatches forms up to n new batches from the oldest readings that are in
	// no open batch, persists them, and returns them, oldest first (none when there
	// are no such readings). Open batches keep their id and readings until
	// acknowledged or dead-lettered, in any order.
	FormBatches(n, maxCount, maxBytes int) ([]Batch, error)
	// OpenBatches returns the open batches, oldest first (also after a restart).
	OpenBatches() ([]Batch, error)
}

// window is the forwarding engine that Run and Flush drive: the batches open in the
// queue, oldest first, and the attempts in flight. A batch is sent only when no
// older open batch shares one of its sensors. After an attempt fails, the window
// lets the others end and then sends the oldest open batch alone, with backoff,
// until it has left the queue (retryAlone). A plain Queue, or MaxInFlight 1, is a
// window of one.
type window struct {
	f     *Forwarder
	q     WindowQueue
	size  int  // at most this many attempts in flight, and batches formed
	drain bool // Flush: form batches at once, ignoring Linger

	open    []*flight
	stale   bool // open must be read again from the queue
	running int  // attempts in flight; each ends with one landing on done
	done    chan landing
	ready   <-chan struct{}
	timer   *time.Timer
}

// flight is one open batch of the window.
type flight struct {
	b       Batch
	sensors map[string]struct{} // nil: a reading without a readable sensor id
	started bool
}

// landing is how one attempt of a batch ended.
type landing struct {
	fl       *flight
	left     bool // acknowledged or dead-lettered: it has left the queue
	queueErr bool // err is the queue's
	err      error
	out      outcome
}

func (f *Forwarder) newWindow(drain bool) *window {
	w := &window{
		f: f, size: 1, drain: drain, stale: true,
		done: make(chan landing), ready: f.q.Ready(), timer: time.NewTimer(time.Hour),
	}
	if q, ok := f.q.(WindowQueue); ok {
		w.q, w.size = q, f.cfg.MaxInFlight
	} else {
		w.q = &single{Queue: f.q}
	}
	return w
}

// step does one round: it reads the open batches again when they may have changed,
// forms the batches that are due, starts the attempts that may go, and waits for a
// landing, new readings or the timer. In Flush it returns false when there is
// nothing it could send.
func (w *window) step(ctx context.Context) bool {
	if w.stale {
		if err := w.reload(); err != nil {
			_ = w.f.queueError(ctx, err)
			return true
		}
	}
	wait, formErr := w.fill(ctx)
	w.launch(ctx)
	if w.drain && w.running == 0 && !formErr {
		return false
	}
	if wait <= 0 || len(w.open) >= w.size {
		wait = w.f.idle() // a landing wakes us
	}
	w.timer.Reset(wait)
	select {
	case <-ctx.Done():
	case l := <-w.done:
		w.land(ctx, l)
	case _, ok := <-w.ready:
		if !ok { // a closed channel would wake us forever: fall back on the timer
			w.ready = nil
		}
	case <-w.timer.C:
	}
	return true
}

// reload reads the open batches from the queue, keeping the mismatch counts of
// those still open.
func (w *window) reload() error {
	bs, err := w.q.OpenBatches()
	if err != nil {
		return fmt.Errorf("forward: open batches: %w", err)
	}
	if len(w.open) > 0 && len(bs) > 0 {
		// A full drop-oldest queue shrinks the oldest batch under a new id: its
		// mismatches go with it.
		old := w.open[0].b.ID
		isOld := func(b Batch) bool { return b.ID == old }
		wasOpen := func(fl *flight) bool { return fl.b.ID == bs[0].ID }
		if !slices.ContainsFunc(bs, isOld) && !slices.ContainsFunc(w.open, wasOpen) {
			w.f.renamed(old, bs[0].ID)
		}
	}
	w.open = w.open[:0]
	for _, b := range bs {
		w.open = append(w.open, &flight{b: b, sensors: sensorsOf(b)})
	}
	w.f.keepMismatches(bs)
	w.stale = false
	return nil
}

// fill forms new batches when they are due and there is room, and says how long
// to wait before the next are due. formErr is true when the queue failed.
func (w *window) fill(ctx context.Context) (wait time.Duration, formErr bool) {
	wait = w.due()
	n := w.size - len(w.open)
	if n <= 0 || wait > 0 {
		return wait, false
	}
	// Full batches only while others are open (a drain forms them all).
	if len(w.open) > 0 && !w.drain {
		n = min(n, w.fullBatches())
	}
	bs, err := w.q.FormBatches(max(n, 1), w.f.cfg.MaxCount, int(w.f.maxBytes.Load()))
	if err != nil {
		_ = w.f.queueError(ctx, fmt.Errorf("forward: form batches: %w", err))
	}
	for _, b := range bs {
		w.open = append(w.open, &flight{b: b, sensors: sensorsOf(b)})
	}
	return wait, err != nil
}

// due says how long to wait before forming the next batch; 0 means now. With
// batches open, only full batches are formed: the rest waits for them to land.
func (w *window) due() time.Duration {
	n, oldest := w.f.q.Pending()
	for _, fl := range w.open {
		n -= len(fl.b.Readings)
	}
	switch {
	case n <= 0:
		return w.f.idle()
	case w.drain, n >= w.f.cfg.MaxCount, int64(n)*w.f.avgSize.Load() >= w.f.maxBytes.Load():
		return 0
	case len(w.open) > 0:
		return w.f.idle()
	}
	return w.f.dueFor(n, oldest)
}

// fullBatches estimates how many full batches the readings outside the open
// batches make.
func (w *window) fullBatches() int {
	n, _ := w.f.q.Pending()
	for _, fl := range w.open {
		n -= len(fl.b.Readings)
	}
	byCount := n / w.f.cfg.MaxCount
	byBytes := int(int64(n) * w.f.avgSize.Load() / max(w.f.maxBytes.Load(), 1))
	return max(byCount, byBytes)
}

// launch starts an attempt for each open batch that may go: not started yet, no
// older open batch sharing a sensor with it, and room in the window.
func (w *window) launch(ctx context.Context) {
	for i, fl := range w.open {
		if w.running >= w.size {
			return
		}
		if fl.started || blocked(w.open[:i], fl) {
			continue
		}
		fl.started = true
		w.running++
		go func() { w.done <- w.f.deliver(ctx, w.q, fl) }()
	}
}

// land takes l and every other landing already there: batches answered by one
// commit of the cloud land together, so one FormBatches refills the window. A
// failed attempt among them turns the window to retryAlone.
func (w *window) land(ctx context.Context, l landing) {
	w.landed(l)
	for l.left {
		select {
		case next := <-w.done:
			w.landed(next)
			l = next
		default:
			return
		}
	}
	if ctx.Err() == nil {
		w.retryAlone(ctx, l)
	}
}

func (w *window) landed(l landing) {
	w.running--
	if i := slices.Index(w.open, l.fl); i >= 0 {
		w.open = slices.Delete(w.open, i, i+1)
	}
}

// close lets the attempts in flight end and stops the timer.
func (w *window) close() {
	w.settle()
	w.timer.Stop()
}

// settle waits for the attempts in flight to end. Their outcome is already in the
// queue and in Stats; what is still open is read again.
func (w *window) settle() {
	for ; w.running > 0; w.running-- {
		<-w.done
	}
	w.stale = true
}

// retryAlone follows the failed attempt l: once the attempts still in flight have
// ended, it sends the oldest open batch alone, backing off before each attempt,
// until that batch has left the queue or ctx ends. The open batches are read again
// before each attempt: a full drop-oldest queue may have shrunk or dropped the
// batch while it waited.
func (w *window) retryAlone(ctx context.Context, l landing) {
	w.settle()
	for attempt := 0; w.backOff(ctx, l, attempt); attempt++ {
		if err := w.reload(); err != nil {
			l = landing{queueErr: true, err: err}
			continue
		}
		if len(w.open) == 0 {
			return
		}
		fl := w.open[0]
		if l = w.f.deliver(ctx, w.q, fl); l.left || ctx.Err() != nil {
			w.stale = true
			return
		}
	}
}

// backOff records the failed attempt l, the attempt-th in a row, and waits before
// the next one; false when ctx ended meanwhile.
func (w *window) backOff(ctx context.Context, l landing, attempt int) bool {
	f := w.f
	if l.queueErr {
		args := []any{}
		if l.fl != nil {
			args = append(args, "batch_id", l.fl.b.ID)
		}
		_ = f.queueError(ctx, l.err, args...) // waits its own backoff
		return ctx.Err() == nil
	}
	f.mu.Lock()
	f.stats.Retries++
	f.mu.Unlock()
	f.failed(l.err)
	wait := f.backoff(attempt, l.out.retryAfter)
	b := l.fl.b
	f.log.WarnContext(ctx, "batch not delivered, will retry", "batch_id", b.ID, "readings", len(b.Readings),
		"attempt", attempt+1, "status", l.out.status, "err", l.err, "backoff", wait)
	return f.pause(ctx, wait, l.out.status == 0)
}

// deliver makes one attempt of an open batch.
func (f *Forwarder) deliver(ctx context.Context, q WindowQueue, fl *flight) landing {
	b := fl.b
	if len(b.Readings) == 0 { // nothing to send: let it go
		return f.acked(ctx, q, fl, result{})
	}
	buf := bufPool.Get().(*bytes.Buffer)
	defer putBuffer(buf)
	if err := f.prepare(buf, b); err != nil {
		return landing{fl: fl, queueErr: true, err: err}
	}
	out := f.post(ctx, b, buf.Bytes())
	if ctx.Err() != nil {
		return landing{fl: fl, err: ctx.Err()} // stays in the queue, same id next time
	}
	switch out.class {
	case delivered:
		return f.acked(ctx, q, fl, out.result)
	case refused:
		return f.deadLettered(ctx, q, fl, out)
	case mismatch:
		if final, spent := f.mismatched(ctx, b, out); spent {
			return f.deadLettered(ctx, q, fl, final)
		}
	}
	return landing{fl: fl, out: out, err: out.err}
}

// acked acknowledges a batch the cloud took.
func (f *Forwarder) acked(ctx context.Context, q WindowQueue, fl *flight, res result) landing {
	if err := ackDelivered(q, fl.b, res); err != nil {
		// The cloud has it; sent again it is answered from the idempotency key.
		return landing{fl: fl, queueErr: true, err: fmt.Errorf("forward: ack batch: %w", err)}
	}
	f.queueFails.Store(0)
	f.recordAck(ctx, fl.b, res)
	return landing{fl: fl, left: true}
}

// deadLettered dead-letters a batch the cloud will never take.
func (f *Forwarder) deadLettered(ctx context.Context, q WindowQueue, fl *flight, out outcome) landing {
	if err := f.deadLetter(ctx, q, fl.b, out); err != nil {
		return landing{fl: fl, queueErr: true, err: err}
	}
	return landing{fl: fl, left: true}
}

// sensorPrefix starts every reading as the agent spools it (reading.AppendJSON).
var sensorPrefix = []byte(`{"sensor_id":"`)

// sensorsOf returns the sensor ids of b's readings, or nil when one has none that
// can be read without decoding (then the batch conflicts with every other).
func sensorsOf(b Batch) map[string]struct{} {
	m := make(map[string]struct{}, len(b.Readings))
	for _, r := range b.Readings {
		if !bytes.HasPrefix(r, sensorPrefix) {
			return nil
		}
		v := r[len(sensorPrefix):]
		j := bytes.IndexByte(v, '"')
		if j < 0 || bytes.IndexByte(v[:j], '\\') >= 0 {
			return nil
		}
		m[string(v[:j])] = struct{}{}
	}
	return m
}

// blocked reports whether fl shares a sensor with an earlier open batch, which must
// then leave the queue first.
func blocked(earlier []*flight, fl *flight) bool {
	for _, e := range earlier {
		if e.sensors == nil || fl.sensors == nil {
			return true
		}
		small, big := e.sensors, fl.sensors
		if len(small) > len(big) {
			small, big = big, small
		}
		for s := range small {
			if _, ok := big[s]; ok {
				return true
			}
		}
	}
	return false
}

// single makes a plain Queue a WindowQueue of at most one open batch: the one
// NextBatch hands out, and hands out again until it leaves. Only one attempt is
// ever in flight, so its fields need no lock.
type single struct {
	Queue
	handed             bool // NextBatch handed out a batch that has not left
	maxCount, maxBytes int  // the limits it was formed with
}

var (
	_ WindowQueue    = (*single)(nil)
	_ RejectingQueue = (*single)(nil)
)

func (q *single) FormBatches(_, maxCount, maxBytes int) ([]Batch, error) {
	q.maxCount, q.maxBytes = maxCount, maxBytes
	return q.next()
}

func (q *single) OpenBatches() ([]Batch, error) {
	if !q.handed {
		return nil, nil
	}
	return q.next()
}

func (q *single) next() ([]Batch, error) {
	b, ok, err := q.NextBatch(q.maxCount, q.maxBytes)
	if err != nil {
		return nil, err
	}
	q.handed = ok
	if !ok {
		return nil, nil
	}
	return []Batch{b}, nil
}

func (q *single) AckBatch(id string) error {
	return q.left(q.Queue.AckBatch(id))
}

func (q *single) DeadLetterBatch(id, reason string) error {
	return q.left(q.Queue.DeadLetterBatch(id, reason))
}

func (q *single) AckBatchRejecting(id string, sent int, rejected []Rejection) error {
	if rq, ok := q.Queue.(RejectingQueue); ok {
		return q.left(rq.AckBatchRejecting(id, sent, rejected))
	}
	return q.AckBatch(id)
}

func (q *single) left(err error) error {
	if err == nil {
		q.handed = false
	}
	return err
}
