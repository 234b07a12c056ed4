// Package membus is the in-process Bus: the embedded default when every service runs
// in one process. Each queue has a bounded buffer; Publish waits for room (back
// pressure, nothing dropped); a failing handler is retried with backoff and the
// message dead-lettered (logged, counted and handed to OnDeadLetter) after
// MaxAttempts. A queue lives as long as the bus: it keeps buffering while it has no
// consumer, so a consumer that stops and starts again misses nothing. Nothing
// survives the process.
//
// Start-up: in one process the publisher (the sensor service) may take its first
// request before every consumer has subscribed. For StartupGrace after New the bus
// keeps a copy of what it publishes (up to startupBacklog messages), and a queue
// created in that time first receives the copies that match it. Consumers are
// idempotent, so the rare copy a queue also got directly changes nothing.
package membus

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/atrium-iot/atrium/internal/bus"
)

var _ bus.Bus = (*Bus)(nil)

// ErrClosed is returned by Publish, Subscribe and Ping after Close.
var ErrClosed = errors.New("membus: closed")

// queueBuffer is how many messages each queue holds before Publish waits.
const queueBuffer = 4096

// startupBacklog bounds the copies kept during StartupGrace.
const startupBacklog = 4096

// Bus is an in-process message bus. Set the exported fields before the first
// Subscribe.
type Bus struct {
	// MaxAttempts is how many times a message is handed to a handler before it is
	// dead-lettered.
	MaxAttempts int
	// Backoff is the wait before the second attempt; it doubles after each failure.
	Backoff time.Duration
	// OnDeadLetter, when set, is called with each message given up on, the queue it
	// was in and the handler's last error.
	OnDeadLetter func(queue string, m bus.Message, reason error)
	// DeadLettered counts the messages given up on.
	DeadLettered atomic.Int64
	// StartupGrace is how long after New the bus keeps copies for queues created
	// later (default 10 s).
	StartupGrace time.Duration

	log     *slog.Logger
	started time.Time

	backlogMu sync.Mutex
	backlog   []envelope // copies kept during the start-up grace

	mu      sync.RWMutex
	queues  map[string]*queue
	closed  bool
	closing chan struct{} // closed by Close: publishers stop waiting
	drain   chan struct{} // closed by Close once publishers are done: consumers empty their queues and stop
	pubs    sync.WaitGroup
	subs    sync.WaitGroup
}

// envelope is a message with the number of times it was already handed to a handler.
type envelope struct {
	m        bus.Message
	attempts int
}

type queue struct {
	name     string
	patterns []string // guarded by Bus.mu
	ch       chan envelope

	mu      sync.Mutex
	retries []envelope    // messages a stopping consumer handed back; served first
	wake    chan struct{} // signalled when retries grows
}

// New makes an in-process bus with a buffer of 4096 messages per queue.
func New(log *slog.Logger) *Bus {
	return &Bus{
		log:          log,
		started:      time.Now(),
		StartupGrace: 10 * time.Second,
		MaxAttempts:  5,
		Backoff:      50 * time.Millisecond,
		queues:       map[string]*queue{},
		closing:      make(chan struct{}),
		drain:        make(chan struct{}),
	}
}

func newID() string {
	var b [12]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// Publish puts the message in the buffer of every queue bound to a matching
// pattern, waiting for room while ctx lasts. A message that matches no queue is
// dropped, as on a topic exchange.
func (b *Bus) Publish(ctx context.Context, subject string, body []byte) error {
	b.mu.RLock()
	if b.closed {
		b.mu.RUnlock()
		return ErrClosed
	}
	var targets []*queue
	for _, q := range b.queues {
		if q.matches(subject) {
			targets = append(targets, q)
		}
	}
	env := envelope{m: bus.Message{ID: newID(), Subject: subject, Body: append([]byte(nil), body...)}}
	if time.Since(b.started) < b.StartupGrace {
		b.backlogMu.Lock()
		if len(b.backlog) < startupBacklog {
			b.backlog = append(b.backlog, env)
		}
		b.backlogMu.Unlock()
	}
	b.pubs.Add(1)
	b.mu.RUnlock()
	defer b.pubs.Done()

	for _, q := range targets {
		select {
		case q.ch <- env:
		case <-ctx.Done():
			return ctx.Err()
		case <-b.closing:
			return ErrClosed
		}
	}
	return nil
}

// matches must be called with Bus.mu held.
func (q *queue) matches(subject string) bool {
	for _, p := range q.patterns {
		if bus.Match(p, subject) {
			return true
		}
	}
	return false
}

// Subscribe starts a consumer on queue, creating the queue on first use and
// binding it to patterns, and returns. The consumer handles one message at a time
// until ctx ends or the bus closes; several consumers of one queue share it.
func (b *Bus) Subscribe(ctx context.Context, name string, patterns []string, h bus.Handler) error {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return ErrClosed
	}
	q, ok := b.queues[name]
	if !ok {
		q = &queue{name: name, ch: make(chan envelope, queueBuffer), wake: make(chan struct{}, 1)}
		b.queues[name] = q
	}
	for _, p := range patterns {
		if !contains(q.patterns, p) {
			q.patterns = append(q.patterns, p)
		}
	}
	var early []envelope
	if !ok && time.Since(b.started) < b.StartupGrace {
		b.backlogMu.Lock()
		for _, env := range b.backlog {
			if q.matches(env.m.Subject) {
				early = append(early, env)
			}
		}
		b.backlogMu.Unlock()
	}
	b.subs.Add(1)
	b.mu.Unlock()
	if len(early) > 0 {
		// handed back like a stopping consumer's messages: served before the buffer
		q.mu.Lock()
		q.retries = append(q.retries, early...)
		q.mu.Unlock()
		select {
		case q.wake <- struct{}{}:
		default:
		}
	}
	go b.consume(ctx, q, h)
	return nil
}

func (b *Bus) consume(ctx context.Context, q *queue, h bus.Handler) {
	defer b.subs.Done()
	for {
		if ctx.Err() != nil {
			return
		}
		if env, ok := q.popRetry(); ok {
			b.deliver(ctx, q, env, h)
			continue
		}
		select {
		case <-ctx.Done():
			return
		case <-q.wake:
		case env := <-q.ch:
			b.deliver(ctx, q, env, h)
		case <-b.drain:
			for {
				env, ok := q.popRetry()
				if !ok {
					select {
					case env = <-q.ch:
					default:
						return
					}
				}
				b.deliver(ctx, q, env, h)
			}
		}
	}
}

func (q *queue) popRetry() (envelope, bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if len(q.retries) == 0 {
		return envelope{}, false
	}
	env := q.retries[0]
	q.retries = q.retries[1:]
	return env, true
}

// handBack keeps a message for the queue's next consumer.
func (q *queue) handBack(env envelope) {
	q.mu.Lock()
	q.retries = append(q.retries, env)
	q.mu.Unlock()
	select {
	case q.wake <- struct{}{}:
	default:
	}
}

func contains(s []string, v string) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

// deliver hands env to h until it succeeds or MaxAttempts is reached. A consumer
// whose ctx ends meanwhile hands the message back to the queue instead of giving up.
func (b *Bus) deliver(ctx context.Context, q *queue, env envelope, h bus.Handler) {
	if ctx.Err() != nil {
		q.handBack(env)
		return
	}
	backoff := b.Backoff
	for {
		err := h(ctx, env.m)
		if err == nil {
			return
		}
		env.attempts++
		if env.attempts >= b.MaxAttempts {
			b.DeadLettered.Add(1)
			b.log.Error("message dead-lettered", "queue", q.name, "subject", env.m.Subject, "id", env.m.ID, "attempts", env.attempts, "err", err)
			if b.OnDeadLetter != nil {
				b.OnDeadLetter(q.name, env.m, err)
			}
			return
		}
		if ctx.Err() != nil {
			q.handBack(env)
			return
		}
		b.log.Warn("handler failed, retrying", "queue", q.name, "subject", env.m.Subject, "id", env.m.ID, "attempt", env.attempts, "err", err)
		t := time.NewTimer(backoff)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			q.handBack(env)
			return
		}
		backoff *= 2
	}
}

// Ping succeeds while the bus is open.
func (b *Bus) Ping(context.Context) error {
	b.mu.RLock()
	defer b.mu.RUnlock()
	if b.closed {
		return ErrClosed
	}
	return nil
}

// Close stops accepting messages, lets consumers handle what is buffered, and
// waits for them. Calling it again does nothing.
func (b *Bus) Close() error {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return nil
	}
	b.closed = true
	close(b.closing)
	b.mu.Unlock()
	b.pubs.Wait()
	close(b.drain)
	b.subs.Wait()
	return nil
}
