// Package groupcommit is the single writer of a store that commits the calls
// waiting at the same time together (group commit): one transaction, one
// fsync or one INSERT serves them all, so many small concurrent writes cost
// about what one large write does.
//
// A Writer runs one goroutine. Do hands a call to it and waits for the commit
// of the group the call went into. The writer opens a group with the first
// call it takes and adds to it every call already waiting, in order, until
// the queue is empty or the group is full; then it commits the group. While
// the writer commits, the next calls queue up: they form the next group, so a
// lone caller never waits for company, and a crowd shares one commit. A call
// that finds the writer idle (nothing being committed, nothing queued) is not
// handed over: its caller opens and commits the group itself, with the same
// rules, and saves the two goroutine switches of a handoff.
//
// A group may also wait, up to Options.MaxWait, for calls that are on their
// way: a caller announces its call with Coming before it prepares it (encodes
// it, say) and hands it over with DoComing. The wait happens only while such
// calls are announced and not yet taken, the extra wait of PostgreSQL's
// commit_delay that acts only with commit_siblings.
//
// New commits a group with one function over all its calls. NewGroups gives
// each group to a Group, which sees the calls as they join: it can apply
// each in an open transaction at once, and can refuse one to make it begin
// the next group.
package groupcommit

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
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
	// MaxCalls closes a group once it holds this many calls; 0 means no limit.
	MaxCalls int
	// MaxWait is how long an open group, counted from its first call, waits
	// for calls announced by Coming and not yet taken; 0 never waits.
	MaxWait time.Duration
	// Queue is how many calls may wait for the writer; 0 means 256.
	Queue int
	// After, when set, runs on the writer's goroutine after each group.
	After func()
	// Idle, when set, runs on the writer's goroutine when no call has waited
	// for IdleAfter since the last group (at once when IdleAfter is 0), once
	// per idle spell.
	Idle      func()
	IdleAfter time.Duration
}

// Group is one group of calls being committed, made by the begin function
// given to NewGroups when the writer takes a group's first call.
type Group[In, Out any] interface {
	// Add takes in into the group, in the order the calls arrive, and reports
	// whether it did. A call refused begins the next group; the first call of
	// a group must be taken.
	Add(in In) bool
	// Wait reports whether the open group may wait for calls on their way
	// (Options.MaxWait).
	Wait() bool
	// Commit ends the group and returns one answer per call taken, in order,
	// or an error that answers them all. An answer may carry a failure of its
	// own call (a field of Out).
	Commit() ([]Out, error)
}

// Commit commits a group of calls, in the order they were handed over, and
// returns one answer per call, or an error that answers them all.
type Commit[In, Out any] func(group []In) ([]Out, error)

// Writer is a single writer committing calls In with answers Out.
type Writer[In, Out any] struct {
	begin func() Group[In, Out]
	size  func(In) int
	opts  Options

	reqs   chan *call[In, Out]
	quit   chan struct{}
	done   chan struct{}
	coming atomic.Int64 // calls announced by Coming and not yet taken by the writer

	// role is held by whoever commits a group or runs Idle: the writer's
	// goroutine, or a caller that found the writer idle (see alone). kick tells
	// the writer's goroutine that a caller committed a group, for Idle.
	role     sync.Mutex
	handover *call[In, Out] // refused by a caller's group (see alone); guarded by role
	ready    chan struct{}  // a call was queued or handed over
	kick     chan struct{}

	life     sync.RWMutex
	closed   bool
	inflight sync.WaitGroup
	once     sync.Once
}

type call[In, Out any] struct {
	ctx    context.Context
	in     In
	coming bool             // announced by Coming: the writer counts it out when it takes it
	reply  chan answer[Out] // buffered, capacity 1
	// state is queued until the writer adds the call to a group (grouped) or
	// its caller gives up first (abandoned); whichever comes first wins.
	state atomic.Int32
}

// The states of a call.
const (
	queued int32 = iota
	grouped
	abandoned
)

type answer[Out any] struct {
	out Out
	err error
}

// New starts a writer that commits each group with commit. size weighs a call
// against Options.MaxSize; nil counts each call as 1.
func New[In, Out any](commit Commit[In, Out], size func(In) int, opts Options) *Writer[In, Out] {
	return NewGroups(func() Group[In, Out] { return &batch[In, Out]{commit: commit} }, size, opts)
}

// NewGroups starts a writer that gives each group to a Group made by begin.
func NewGroups[In, Out any](begin func() Group[In, Out], size func(In) int, opts Options) *Writer[In, Out] {
	if size == nil {
		size = func(In) int { return 1 }
	}
	if opts.Queue <= 0 {
		opts.Queue = 256
	}
	w := &Writer[In, Out]{begin: begin, size: size, opts: opts,
		reqs: make(chan *call[In, Out], opts.Queue), quit: make(chan struct{}), done: make(chan struct{}),
		ready: make(chan struct{}, 1), kick: make(chan struct{}, 1)}
	go w.run()
	return w
}

// batch is the Group of New: it keeps the calls and commits them together.
type batch[In, Out any] struct {
	commit Commit[In, Out]
	ins    []In
}

func (b *batch[In, Out]) Add(in In) bool         { b.ins = append(b.ins, in); return true }
func (b *batch[In, Out]) Wait() bool             { return true }
func (b *batch[In, Out]) Commit() ([]Out, error) { return b.commit(b.ins) }

// Do hands in to the writer and waits for the commit of its group. When ctx
// ends before the writer has added the call to a group, the call is left out
// and Do returns ctx's error at once; once the call is in a group, Do waits for
// that group's commit. Either way an answer never leaves in doubt whether the
// call was committed.
func (w *Writer[In, Out]) Do(ctx context.Context, in In) (Out, error) {
	return w.do(ctx, in, false)
}

// Coming announces a call on its way: its caller is preparing it and will
// hand it over with DoComing, or give it up with NotComing. While calls are
// coming, an open group waits for them (Options.MaxWait).
func (w *Writer[In, Out]) Coming() { w.coming.Add(1) }

// NotComing withdraws a call announced by Coming that will not be handed over.
func (w *Writer[In, Out]) NotComing() { w.coming.Add(-1) }

// Queued reports how many calls are handed over and wait for the writer to
// take them: a Group or a hook (Options.After) may cut work short when callers
// wait.
func (w *Writer[In, Out]) Queued() int { return len(w.reqs) }

// DoComing is Do for a call announced by Coming.
func (w *Writer[In, Out]) DoComing(ctx context.Context, in In) (Out, error) {
	return w.do(ctx, in, true)
}

func (w *Writer[In, Out]) do(ctx context.Context, in In, coming bool) (Out, error) {
	var zero Out
	w.life.RLock()
	if w.closed {
		w.life.RUnlock()
		if coming {
			w.NotComing()
		}
		return zero, ErrClosed
	}
	w.inflight.Add(1)
	w.life.RUnlock()
	defer w.inflight.Done()
	if err := ctx.Err(); err != nil {
		if coming {
			w.NotComing()
		}
		return zero, err
	}
	c := &call[In, Out]{ctx: ctx, in: in, coming: coming, reply: make(chan answer[Out], 1)}
	if w.alone(c) {
		a := <-c.reply
		return a.out, a.err
	}
	select {
	case w.reqs <- c: // the writer counts c out of coming when it takes it
		signal(w.ready)
	case <-ctx.Done():
		if coming {
			w.NotComing()
		}
		return zero, ctx.Err()
	}
	select {
	case a := <-c.reply:
		return a.out, a.err
	case <-ctx.Done():
		if c.state.CompareAndSwap(queued, abandoned) {
			return zero, ctx.Err() // the writer will pass it over
		}
		a := <-c.reply // in a group already: its answer comes with the commit
		return a.out, a.err
	}
}

// alone commits c's group on the caller's goroutine when the writer is idle
// (no group is being committed and no call waits): the group begins with c and
// takes the calls that come while it is open, exactly as the writer's goroutine
// would, and is answered before alone returns true. A lone caller saves handing
// the call to the writer's goroutine and its answer back, two goroutine
// switches that cost it more than the rest of the writer's work.
func (w *Writer[In, Out]) alone(c *call[In, Out]) bool {
	if !w.role.TryLock() {
		return false
	}
	if len(w.reqs) > 0 || w.handover != nil { // calls handed over before c go first
		w.role.Unlock()
		return false
	}
	w.took(c)
	next := w.group(c)
	if w.opts.After != nil {
		w.opts.After()
	}
	w.handover = next // a call the group refused begins the next group, on the writer's goroutine
	w.role.Unlock()
	switch {
	case next != nil:
		signal(w.ready)
	case w.opts.Idle != nil:
		signal(w.kick)
	}
	return true
}

// signal wakes the writer's goroutine with ch unless a signal is pending.
func signal(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
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
	var idle *time.Timer
	var idleC <-chan time.Time
	if w.opts.Idle != nil && w.opts.IdleAfter > 0 {
		idle = time.NewTimer(time.Hour)
		idle.Stop()
		defer idle.Stop()
	}
	var next *call[In, Out]
	for {
		kicked := false
		if next == nil && len(w.reqs) == 0 { // a handover comes with a signal on ready
			select {
			case <-w.ready:
			case <-w.kick: // a caller committed a group (see alone)
				kicked = true
			case <-idleC:
				idleC = nil
				w.idle()
				continue
			case <-w.quit:
				return
			}
		}
		// Calls are taken only with the role held, so that they wait in the
		// queue (Queued) while a caller commits alone.
		w.role.Lock()
		if next == nil && w.handover != nil {
			next, w.handover = w.handover, nil
		}
		if next == nil {
			select {
			case next = <-w.reqs:
				w.took(next)
			default: // taken by the group before: its signal is stale
			}
		}
		ran := next != nil
		if ran {
			if idleC != nil {
				idle.Stop()
				idleC = nil
			}
			next = w.group(next)
			if w.opts.After != nil {
				w.opts.After()
			}
		}
		w.role.Unlock()
		if (!ran && !kicked) || next != nil || len(w.reqs) > 0 || w.opts.Idle == nil {
			continue
		}
		if idle == nil {
			w.idle()
			continue
		}
		idle.Reset(w.opts.IdleAfter)
		idleC = idle.C
	}
}

// idle runs Options.Idle, holding the role.
func (w *Writer[In, Out]) idle() {
	w.role.Lock()
	defer w.role.Unlock()
	w.opts.Idle()
}

// took counts c out of the calls coming.
func (w *Writer[In, Out]) took(c *call[In, Out]) {
	if c.coming {
		w.coming.Add(-1)
	}
}

// group commits a group beginning with first: it adds the calls waiting and,
// while the group may wait, those coming within MaxWait, until the group is
// full. It answers every call it took and returns a call the group refused,
// which begins the next one, or nil.
func (w *Writer[In, Out]) group(first *call[In, Out]) (next *call[In, Out]) {
	g := w.begin()
	var (
		taken []*call[In, Out]
		size  int
		start time.Time
		timer *time.Timer
	)
	if w.opts.MaxWait > 0 {
		start = time.Now()
	}
	add := func(c *call[In, Out]) bool {
		if !c.state.CompareAndSwap(queued, grouped) {
			return true // abandoned by its caller: nobody waits for it
		}
		if err := c.ctx.Err(); err != nil {
			c.reply <- answer[Out]{err: err}
			return true
		}
		if !g.Add(c.in) {
			c.state.Store(queued) // it begins the next group: its caller may still give up
			return false
		}
		taken = append(taken, c)
		size += w.size(c.in)
		return true
	}
	if !add(first) {
		first.reply <- answer[Out]{err: fmt.Errorf("groupcommit: a group refused its first call")}
	}
	for (w.opts.MaxSize <= 0 || size < w.opts.MaxSize) && (w.opts.MaxCalls <= 0 || len(taken) < w.opts.MaxCalls) {
		var c *call[In, Out]
		select {
		case c = <-w.reqs:
		default:
			if w.opts.MaxWait <= 0 || w.coming.Load() <= 0 || len(taken) == 0 || !g.Wait() {
				break
			}
			if timer == nil {
				left := w.opts.MaxWait - time.Since(start)
				if left <= 0 {
					break
				}
				timer = time.NewTimer(left)
				defer timer.Stop()
			}
			select {
			case c = <-w.reqs:
			case <-timer.C:
			}
		}
		if c == nil {
			break
		}
		w.took(c)
		if !add(c) {
			next = c
			break
		}
	}
	w.commit(g, taken)
	return next
}

// commit commits g and answers the calls it took.
func (w *Writer[In, Out]) commit(g Group[In, Out], taken []*call[In, Out]) {
	if len(taken) == 0 {
		return
	}
	outs, err := g.Commit()
	if err == nil && len(outs) != len(taken) {
		err = fmt.Errorf("groupcommit: commit answered %d calls of %d", len(outs), len(taken))
	}
	for i, c := range taken {
		if err != nil {
			c.reply <- answer[Out]{err: err}
			continue
		}
		c.reply <- answer[Out]{out: outs[i]}
	}
}
