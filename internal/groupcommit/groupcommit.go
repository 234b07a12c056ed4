// Package groupcommit is the single writer of a store that commits the calls
// waiting at the same time together (group commit): one transaction, one
// fsync or one INSERT serves them all, so many small concurrent writes cost
// about what one large write does.
//
// A Writer runs one goroutine. Do hands a call to it and waits for the commit
// of the group the call went into; the writer gathers every call waiting when
// it is free (and, with Options.MaxWait, those arriving shortly after), leaves
// out the calls whose context ended meanwhile, and commits the rest with the
// function given to New.
package groupcommit

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/atrium-iot/atrium/internal/apperr"
)

// ErrClosed is returned by Do once Close has begun; it is an
// apperr.ErrUnavailable.
var ErrClosed = fmt.Errorf("%w: writer closed", apperr.ErrUnavailable)

// Options tune a Writer. The zero value is ready to use.
type Options struct {
	// MaxSize closes a group once the sizes of its calls reach it (the call
	// that reaches it is the group's last); 0 means no limit.
	MaxSize int
	// MaxWait is how long an open group waits for more calls after its first
	// before it is committed, unless MaxSize is reached; 0 takes only the calls
	// already waiting.
	MaxWait time.Duration
	// Queue is how many calls may wait for the writer; 0 means 256.
	Queue int
}

// Commit commits a group of calls, in the order they were handed over, and
// returns one answer per call, or an error that answers them all. An answer
// may carry a failure of its own call (a field of Out).
type Commit[In, Out any] func(group []In) ([]Out, error)

// Writer is a single writer committing calls In with answers Out.
type Writer[In, Out any] struct {
	commit Commit[In, Out]
	size   func(In) int
	opts   Options

	reqs chan *call[In, Out]
	quit chan struct{}
	done chan struct{}

	life     sync.RWMutex
	closed   bool
	inflight sync.WaitGroup
	once     sync.Once
}

type call[In, Out any] struct {
	ctx   context.Context
	in    In
	reply chan answer[Out] // buffered, capacity 1
}

type answer[Out any] struct {
	out Out
	err error
}

// New starts a writer. size weighs a call against Options.MaxSize; nil
// counts each call as 1.
func New[In, Out any](commit Commit[In, Out], size func(In) int, opts Options) *Writer[In, Out] {
	if size == nil {
		size = func(In) int { return 1 }
	}
	if opts.Queue <= 0 {
		opts.Queue = 256
	}
	w := &Writer[In, Out]{commit: commit, size: size, opts: opts,
		reqs: make(chan *call[In, Out], opts.Queue), quit: make(chan struct{}), done: make(chan struct{})}
	go w.run()
	return w
}

// Do hands in to the writer and waits for the commit of its group. When ctx
// ends first, Do returns ctx's error; the call is then left out of its group
// unless the group is already being committed.
func (w *Writer[In, Out]) Do(ctx context.Context, in In) (Out, error) {
	var zero Out
	w.life.RLock()
	if w.closed {
		w.life.RUnlock()
		return zero, ErrClosed
	}
	w.inflight.Add(1)
	w.life.RUnlock()
	defer w.inflight.Done()
	c := &call[In, Out]{ctx: ctx, in: in, reply: make(chan answer[Out], 1)}
	select {
	case w.reqs <- c:
	case <-ctx.Done():
		return zero, ctx.Err()
	}
	select {
	case a := <-c.reply:
		return a.out, a.err
	case <-ctx.Done():
		return zero, ctx.Err()
	}
}

// Close answers every call already handed to Do, then stops the writer. Do
// fails with ErrClosed from the moment Close begins. Calling Close again
// waits for the first.
func (w *Writer[In, Out]) Close() {
	w.once.Do(func() {
		w.life.Lock()
		w.closed = true
		w.life.Unlock()
		w.inflight.Wait()
		close(w.quit)
	})
	<-w.done
}

func (w *Writer[In, Out]) run() {
	defer close(w.done)
	for {
		var first *call[In, Out]
		select {
		case first = <-w.reqs:
		case <-w.quit:
			return
		}
		w.commitGroup(w.gather(first))
	}
}

// gather returns first and the calls that join its group: those waiting, or
// with MaxWait those arriving until it is over, until MaxSize is reached.
func (w *Writer[In, Out]) gather(first *call[In, Out]) []*call[In, Out] {
	group, n := []*call[In, Out]{first}, w.size(first.in)
	var timeout <-chan time.Time
	if w.opts.MaxWait > 0 {
		t := time.NewTimer(w.opts.MaxWait)
		defer t.Stop()
		timeout = t.C
	}
	for w.opts.MaxSize <= 0 || n < w.opts.MaxSize {
		var c *call[In, Out]
		if timeout == nil {
			select {
			case c = <-w.reqs:
			default:
				return group
			}
		} else {
			select {
			case c = <-w.reqs:
			case <-timeout:
				return group
			}
		}
		group, n = append(group, c), n+w.size(c.in)
	}
	return group
}

// commitGroup commits the live calls of group and answers every call.
func (w *Writer[In, Out]) commitGroup(group []*call[In, Out]) {
	live := group[:0]
	for _, c := range group {
		if err := c.ctx.Err(); err != nil {
			c.reply <- answer[Out]{err: err}
			continue
		}
		live = append(live, c)
	}
	if len(live) == 0 {
		return
	}
	ins := make([]In, len(live))
	for i, c := range live {
		ins[i] = c.in
	}
	outs, err := w.commit(ins)
	if err == nil && len(outs) != len(live) {
		err = fmt.Errorf("groupcommit: commit answered %d calls of %d", len(outs), len(live))
	}
	for i, c := range live {
		if err != nil {
			c.reply <- answer[Out]{err: err}
			continue
		}
		c.reply <- answer[Out]{out: outs[i]}
	}
}
