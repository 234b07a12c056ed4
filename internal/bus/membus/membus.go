// Package membus is the in-process Bus: the embedded default when every service runs
// in one process. Each queue has a bounded buffer; Publish waits for room (back
// pressure, nothing dropped); a failing handler is retried with backoff and the
// message dead-lettered (logged and counted) after MaxAttempts.
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

// ErrClosed is returned by Publish after Close.
var ErrClosed = errors.New("membus: closed")

// Bus is an in-process message bus.
type Bus struct {
	log         *slog.Logger
	MaxAttempts int
	Backoff     time.Duration

	mu     sync.RWMutex
	queues map[string]*queue
	closed bool
	wg     sync.WaitGroup

	DeadLettered atomic.Int64
}

type queue struct {
	name     string
	patterns []string
	ch       chan bus.Message
}

// New makes an in-process bus with a buffer of 4096 messages per queue.
func New(log *slog.Logger) *Bus {
	return &Bus{log: log, MaxAttempts: 5, Backoff: 50 * time.Millisecond, queues: map[string]*queue{}}
}

func newID() string {
	var b [12]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// Publish delivers the message to the buffer of every queue bound to a matching pattern.
func (b *Bus) Publish(ctx context.Context, subject string, body []byte) error {
	b.mu.RLock()
	defer b.mu.RUnlock()
	if b.closed {
		return ErrClosed
	}
	m := bus.Message{ID: newID(), Subject: subject, Body: append([]byte(nil), body...)}
	for _, q := range b.queues {
		if !q.matches(subject) {
			continue
		}
		select {
		case q.ch <- m:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}

func (q *queue) matches(subject string) bool {
	for _, p := range q.patterns {
		if bus.Match(p, subject) {
			return true
		}
	}
	return false
}

// Subscribe starts a consumer on queue. Several consumers of one queue share it.
func (b *Bus) Subscribe(ctx context.Context, name string, patterns []string, h bus.Handler) error {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return ErrClosed
	}
	q, ok := b.queues[name]
	if !ok {
		q = &queue{name: name, ch: make(chan bus.Message, 4096)}
		b.queues[name] = q
	}
	for _, p := range patterns {
		if !contains(q.patterns, p) {
			q.patterns = append(q.patterns, p)
		}
	}
	b.wg.Add(1)
	b.mu.Unlock()
	go func() {
		defer b.wg.Done()
		for {
			select {
			case <-ctx.Done():
				return
			case m, ok := <-q.ch:
				if !ok {
					return
				}
				b.deliver(ctx, name, m, h)
			}
		}
	}()
	return nil
}

func contains(s []string, v string) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

func (b *Bus) deliver(ctx context.Context, queue string, m bus.Message, h bus.Handler) {
	backoff := b.Backoff
	for attempt := 1; ; attempt++ {
		err := h(ctx, m)
		if err == nil {
			return
		}
		if attempt >= b.MaxAttempts || ctx.Err() != nil {
			b.DeadLettered.Add(1)
			b.log.Error("message dead-lettered", "queue", queue, "subject", m.Subject, "id", m.ID, "attempts", attempt, "err", err)
			return
		}
		b.log.Warn("handler failed, retrying", "queue", queue, "subject", m.Subject, "attempt", attempt, "err", err)
		select {
		case <-time.After(backoff):
		case <-ctx.Done():
		}
		backoff *= 2
	}
}

// Ping always succeeds while the bus is open.
func (b *Bus) Ping(context.Context) error {
	b.mu.RLock()
	defer b.mu.RUnlock()
	if b.closed {
		return ErrClosed
	}
	return nil
}

// Close stops accepting messages, lets consumers drain what is buffered, and waits.
func (b *Bus) Close() error {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return nil
	}
	b.closed = true
	for _, q := range b.queues {
		close(q.ch)
	}
	b.mu.Unlock()
	b.wg.Wait()
	return nil
}
