package forward

import (
	"bytes"
	"context"
	"fmt"
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

// flight is one open batch of the window.
type flight struct {
	b       Batch
	sensors map[string]struct{} // nil: a reading without a readable sensor id
	started bool
}

// landing is how one attempt of a batch in the window ended.
type landing struct {
	fl       *flight
	left     bool // acknowledged or dead-lettered: it has left the spool
	queueErr bool // err is the spool's
	err      error
	out      outcome
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
// then leave the spool first.
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

// runWindow is Run with up to MaxInFlight batches open and in flight at once. A
// batch is sent only when no older open batch shares one of its sensors. After any
// failed attempt the window waits for the attempts still in flight, then sendOne
// sends the oldest open batch alone, with the usual retries, until it leaves the
// spool; then the window opens again.
func (f *Forwarder) runWindow(ctx context.Context, q WindowQueue) error {
	f.send.Lock()
	defer f.send.Unlock()
	ready := q.Ready()
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	done := make(chan landing)
	running := 0
	settle := func() {
		for ; running > 0; running-- {
			<-done
		}
	}
	defer settle()
	var open []*flight
	reload := true
	for {
		if ctx.Err() != nil {
			return nil
		}
		if reload {
			bs, err := q.OpenBatches()
			if err != nil {
				_ = f.queueError(ctx, fmt.Errorf("forward: open batches: %w", err))
				continue
			}
			open = open[:0]
			for _, b := range bs {
				open = append(open, &flight{b: b, sensors: sensorsOf(b)})
			}
			f.keepMismatches(bs)
			reload = false
		}
		wait := f.windowDue(open)
		if n := f.cfg.MaxInFlight - len(open); n > 0 && wait <= 0 {
			// Full batches only, unless none is open (then linger has run out).
			if len(open) > 0 {
				n = min(n, f.fullBatches(open))
			}
			bs, err := q.FormBatches(max(n, 1), f.cfg.MaxCount, int(f.maxBytes.Load()))
			if err != nil {
				_ = f.queueError(ctx, fmt.Errorf("forward: form batches: %w", err))
			}
			for _, b := range bs {
				open = append(open, &flight{b: b, sensors: sensorsOf(b)})
			}
		}
		for i, fl := range open {
			if fl.started || blocked(open[:i], fl) {
				continue
			}
			fl.started = true
			running++
			go func() { done <- f.deliver(ctx, q, fl) }()
		}
		if wait <= 0 || len(open) >= f.cfg.MaxInFlight {
			wait = f.idle() // a landing wakes us
		}
		timer.Reset(wait)
		select {
		case <-ctx.Done():
			return nil
		case l := <-done:
			running--
			open = remove(open, l.fl)
			// Batches answered by one commit of the cloud land together: take
			// every landing already there, so one FormBatches refills the window.
		landed:
			for l.left {
				select {
				case next := <-done:
					running--
					open = remove(open, next.fl)
					l = next
				default:
					break landed
				}
			}
			if l.left || ctx.Err() != nil {
				continue
			}
			// One at a time until the oldest open batch has left the spool.
			settle()
			if l.queueErr {
				_ = f.queueError(ctx, l.err, "batch_id", l.fl.b.ID)
			} else {
				f.mu.Lock()
				f.stats.Retries++
				f.mu.Unlock()
				f.failed(l.err)
				wait := f.backoff(0, l.out.retryAfter)
				f.log.WarnContext(ctx, "batch not delivered, will retry", "batch_id", l.fl.b.ID,
					"readings", len(l.fl.b.Readings), "status", l.out.status, "err", l.err, "backoff", wait)
				if !f.pause(ctx, wait, l.out.status == 0) {
					return nil
				}
			}
			_, _ = f.sendOneLocked(ctx) // failures are logged and kept in Stats
			reload = true
		case _, ok := <-ready:
			if !ok {
				ready = nil
			}
		case <-timer.C:
		}
	}
}

// fullBatches estimates how many full batches the readings outside open make.
func (f *Forwarder) fullBatches(open []*flight) int {
	n, _ := f.q.Pending()
	for _, fl := range open {
		n -= len(fl.b.Readings)
	}
	byCount := n / f.cfg.MaxCount
	byBytes := int(int64(n) * f.avgSize.Load() / max(f.maxBytes.Load(), 1))
	return max(byCount, byBytes)
}

func remove(open []*flight, fl *flight) []*flight {
	for i, o := range open {
		if o == fl {
			return append(open[:i], open[i+1:]...)
		}
	}
	return open
}

// windowDue says how long to wait before forming the next batch; 0 means now. With
// batches open, only full batches are formed: the rest waits for them to land.
func (f *Forwarder) windowDue(open []*flight) time.Duration {
	n, oldest := f.q.Pending()
	for _, fl := range open {
		n -= len(fl.b.Readings)
	}
	if n <= 0 {
		return f.idle()
	}
	if n >= f.cfg.MaxCount || int64(n)*f.avgSize.Load() >= f.maxBytes.Load() {
		return 0
	}
	if len(open) > 0 {
		return f.idle()
	}
	return f.dueFor(n, oldest)
}

// deliver makes one attempt of a batch of the window.
func (f *Forwarder) deliver(ctx context.Context, q WindowQueue, fl *flight) landing {
	b := fl.b
	if len(b.Readings) == 0 {
		if err := q.AckBatch(b.ID); err != nil {
			return landing{fl: fl, queueErr: true, err: fmt.Errorf("forward: ack batch: %w", err)}
		}
		return landing{fl: fl, left: true}
	}
	buf := bufPool.Get().(*bytes.Buffer)
	defer putBuffer(buf)
	if err := f.prepare(buf, b); err != nil {
		return landing{fl: fl, queueErr: true, err: err}
	}
	out := f.post(ctx, b, buf.Bytes())
	if ctx.Err() != nil {
		return landing{fl: fl, err: ctx.Err()} // stays spooled, same id next time
	}
	switch out.class {
	case delivered:
		if err := ackDelivered(q, b, out.result); err != nil {
			// The cloud has it; sent again it is answered from the idempotency key.
			return landing{fl: fl, queueErr: true, err: fmt.Errorf("forward: ack batch: %w", err)}
		}
		f.queueFails.Store(0)
		f.recordAck(ctx, b, out.result)
		return landing{fl: fl, left: true}
	case refused:
		if err := f.deadLetter(ctx, b, out); err != nil {
			return landing{fl: fl, queueErr: true, err: err}
		}
		return landing{fl: fl, left: true}
	case mismatch:
		if final, spent := f.mismatched(ctx, b, out); spent {
			if err := f.deadLetter(ctx, b, final); err != nil {
				return landing{fl: fl, queueErr: true, err: err}
			}
			return landing{fl: fl, left: true}
		}
	}
	return landing{fl: fl, out: out, err: out.err}
}
