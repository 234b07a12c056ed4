// Package bustest is the contract every bus.Bus adapter is held to. An adapter's
// tests call Run with a function that opens a fresh bus; the same cases run against
// the in-process bus and RabbitMQ.
//
// Every case uses its own random queue names and subject prefix, so runs against a
// shared broker do not see each other's messages.
package bustest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/atrium-iot/atrium/internal/bus"
)

// Options says what the bus under test promises beyond the common contract.
type Options struct {
	// Durable: a queue keeps the messages published while it has no consumer, and a
	// consumer subscribing to it again later gets them.
	Durable bool
	// MaxAttempts is how many times the bus under test hands a failing message to a
	// handler before dead-lettering it. At least 2.
	MaxAttempts int
	// DeadLetters returns messages dead-lettered from queue on b: all of them so far,
	// or those since the previous call (the suite merges by ID).
	DeadLetters func(t *testing.T, b bus.Bus, queue string) []bus.Message
	// Wait bounds every wait for a delivery; 0 means 30 s.
	Wait time.Duration
}

// Run runs the contract against buses made by open. open makes a new bus for each
// case and registers its own clean-up (queues, exchanges) with t.Cleanup; Run
// closes the bus.
func Run(t *testing.T, open func(t *testing.T) bus.Bus, opts Options) {
	t.Helper()
	if opts.MaxAttempts < 2 {
		t.Fatalf("bustest: Options.MaxAttempts = %d, want at least 2", opts.MaxAttempts)
	}
	if opts.DeadLetters == nil {
		t.Fatal("bustest: Options.DeadLetters is required")
	}
	if opts.Wait == 0 {
		opts.Wait = 30 * time.Second
	}
	s := &suite{open: open, opts: opts}
	t.Run("Patterns", s.testPatterns)
	t.Run("EachQueueGetsEachMessageOnce", s.testEachQueueOnce)
	t.Run("ConsumersShareAQueue", s.testShare)
	t.Run("FailedMessageIsRedelivered", s.testRedelivery)
	t.Run("RepeatedFailureDeadLetters", s.testDeadLetter)
	t.Run("StoppedConsumerGetsNothingMore", s.testStoppedConsumer)
	if opts.Durable {
		t.Run("QueueKeepsMessagesWithoutConsumer", s.testDurable)
	}
	t.Run("PingAndClose", s.testPingClose)
	t.Run("CloseWaitsForHandlers", s.testCloseDrains)
}

type suite struct {
	open func(t *testing.T) bus.Bus
	opts Options
}

func (s *suite) bus(t *testing.T) bus.Bus {
	t.Helper()
	b := s.open(t)
	t.Cleanup(func() {
		if err := b.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return b
}

// unique returns a random name part; subjects and queues built from it are this
// case's alone.
func unique() string {
	var b [6]byte
	_, _ = rand.Read(b[:])
	return "t" + hex.EncodeToString(b[:])
}

// recorder keeps what a handler was given.
type recorder struct {
	mu  sync.Mutex
	got []bus.Message
}

func (r *recorder) handle(_ context.Context, m bus.Message) error {
	r.mu.Lock()
	r.got = append(r.got, m)
	r.mu.Unlock()
	return nil
}

func (r *recorder) messages() []bus.Message {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.got)
}

func (r *recorder) hasBody(body string) bool {
	for _, m := range r.messages() {
		if string(m.Body) == body {
			return true
		}
	}
	return false
}

// eventually polls cond until it holds or the suite's wait passes.
func (s *suite) eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(s.opts.Wait)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", s.opts.Wait, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func publish(t *testing.T, b bus.Bus, subject, body string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := b.Publish(ctx, subject, []byte(body)); err != nil {
		t.Fatalf("Publish(%q): %v", subject, err)
	}
}

func subscribe(t *testing.T, ctx context.Context, b bus.Bus, queue string, patterns []string, h bus.Handler) {
	t.Helper()
	if err := b.Subscribe(ctx, queue, patterns, h); err != nil {
		t.Fatalf("Subscribe(%q, %q): %v", queue, patterns, err)
	}
}

func (s *suite) testPatterns(t *testing.T) {
	// In every case the pattern and subject strings are relative to a random
	// prefix: "P" stands for it.
	tests := []struct {
		name     string
		patterns []string
		subjects []string
		want     []string
	}{
		{
			name:     "exact",
			patterns: []string{"P.alert.raised"},
			subjects: []string{"P.alert.raised", "P.alert.resolved", "P.alert.raised.x", "P.alert"},
			want:     []string{"P.alert.raised"},
		},
		{
			name:     "star matches exactly one word",
			patterns: []string{"P.sensor.*.received"},
			subjects: []string{"P.sensor.data.received", "P.sensor.status.received", "P.sensor.received", "P.sensor.data.x.received", "P.room.data.received"},
			want:     []string{"P.sensor.data.received", "P.sensor.status.received"},
		},
		{
			name:     "hash matches zero or more words",
			patterns: []string{"P.alert.#"},
			subjects: []string{"P.alert", "P.alert.raised", "P.alert.raised.critical", "P.alerts.raised", "P.room.alert"},
			want:     []string{"P.alert", "P.alert.raised", "P.alert.raised.critical"},
		},
		{
			name:     "hash in the middle",
			patterns: []string{"P.#.updated"},
			subjects: []string{"P.updated", "P.room.updated", "P.room.metrics.updated", "P.room.metrics.changed"},
			want:     []string{"P.updated", "P.room.updated", "P.room.metrics.updated"},
		},
		{
			name:     "several patterns",
			patterns: []string{"P.alert.raised", "P.sensor.status.changed"},
			subjects: []string{"P.alert.raised", "P.alert.resolved", "P.sensor.status.changed", "P.sensor.data.received"},
			want:     []string{"P.alert.raised", "P.sensor.status.changed"},
		},
		{
			name:     "overlapping patterns deliver once",
			patterns: []string{"P.alert.*", "P.#", "P.alert.raised"},
			subjects: []string{"P.alert.raised", "P.room.metrics.updated"},
			want:     []string{"P.alert.raised", "P.room.metrics.updated"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := s.bus(t)
			p := unique()
			expand := func(v string) string { return p + v[1:] }
			patterns := []string{p + ".end"}
			for _, pat := range tt.patterns {
				patterns = append(patterns, expand(pat))
			}
			var r recorder
			subscribe(t, t.Context(), b, p+".q", patterns, r.handle)
			for i, subj := range tt.subjects {
				publish(t, b, expand(subj), fmt.Sprintf("body %d", i))
			}
			// Each queue is first in, first out for one publisher: once the end
			// marker is in, everything published before it that matched is too.
			publish(t, b, p+".end", "end")
			s.eventually(t, "the end marker", func() bool { return r.hasBody("end") })

			var got []string
			for _, m := range r.messages() {
				if m.Subject == p+".end" {
					continue
				}
				if m.ID == "" {
					t.Errorf("message %q has no ID", m.Subject)
				}
				got = append(got, m.Subject)
			}
			var want []string
			for _, w := range tt.want {
				want = append(want, expand(w))
			}
			if !slices.Equal(got, want) {
				t.Errorf("delivered subjects = %q, want %q", got, want)
			}
		})
	}
}

func (s *suite) testEachQueueOnce(t *testing.T) {
	b := s.bus(t)
	p := unique()
	subject := p + ".sensor.data.received"
	queues := []struct {
		name     string
		patterns []string
		r        *recorder
	}{
		{name: p + ".room", patterns: []string{p + ".#"}, r: &recorder{}},
		{name: p + ".analytics", patterns: []string{p + ".sensor.*.received", p + ".sensor.#"}, r: &recorder{}},
		{name: p + ".notification", patterns: []string{subject}, r: &recorder{}},
	}
	for _, q := range queues {
		subscribe(t, t.Context(), b, q.name, q.patterns, q.r.handle)
	}

	const publishers, perPublisher = 4, 25
	bodies := map[string]bool{}
	var wg sync.WaitGroup
	errs := make(chan error, publishers)
	for g := range publishers {
		for i := range perPublisher {
			bodies[fmt.Sprintf("p%d-%d\x00\xff", g, i)] = true
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range perPublisher {
				ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				err := b.Publish(ctx, subject, []byte(fmt.Sprintf("p%d-%d\x00\xff", g, i)))
				cancel()
				if err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("Publish: %v", err)
	}
	publish(t, b, subject, "end")

	for _, q := range queues {
		t.Run(q.name[len(p)+1:], func(t *testing.T) {
			s.eventually(t, "the end marker", func() bool { return q.r.hasBody("end") })
			seen := map[string]bool{}
			ids := map[string]bool{}
			for _, m := range q.r.messages() {
				body := string(m.Body)
				if body == "end" {
					continue
				}
				if !bodies[body] {
					t.Errorf("unexpected body %q", body)
				}
				if seen[body] {
					t.Errorf("body %q delivered twice", body)
				}
				seen[body] = true
				if m.ID == "" || ids[m.ID] {
					t.Errorf("message %q: ID %q empty or not unique", body, m.ID)
				}
				ids[m.ID] = true
				if m.Subject != subject {
					t.Errorf("subject = %q, want %q", m.Subject, subject)
				}
			}
			if len(seen) != len(bodies) {
				t.Errorf("queue got %d distinct messages, want %d", len(seen), len(bodies))
			}
		})
	}
}

func (s *suite) testShare(t *testing.T) {
	b := s.bus(t)
	p := unique()
	subject := p + ".room.metrics.updated"
	queue := p + ".shared"
	// Each handler takes a moment, as real work does, so one consumer cannot take
	// the whole queue before the other gets a turn.
	slow := func(r *recorder) bus.Handler {
		return func(ctx context.Context, m bus.Message) error {
			time.Sleep(2 * time.Millisecond)
			return r.handle(ctx, m)
		}
	}
	var a, c recorder
	subscribe(t, t.Context(), b, queue, []string{subject}, slow(&a))
	subscribe(t, t.Context(), b, queue, []string{subject}, slow(&c))

	const n = 100
	for i := range n {
		publish(t, b, subject, fmt.Sprint(i))
	}
	total := func() int { return len(a.messages()) + len(c.messages()) }
	s.eventually(t, fmt.Sprintf("%d messages across both consumers", n), func() bool { return total() >= n })

	bodies := map[string]int{}
	for _, m := range append(a.messages(), c.messages()...) {
		bodies[string(m.Body)]++
	}
	for i := range n {
		if got := bodies[fmt.Sprint(i)]; got != 1 {
			t.Errorf("message %d handled %d times, want once", i, got)
		}
	}
	if len(a.messages()) == 0 || len(c.messages()) == 0 {
		t.Errorf("consumers handled %d and %d messages: want both to share the queue", len(a.messages()), len(c.messages()))
	}
}

// failing counts deliveries per message ID and fails each message's first fail
// deliveries.
type failing struct {
	fail int

	mu       sync.Mutex
	attempts map[string]int
	subjects map[string]string
	done     map[string]bool
}

func newFailing(fail int) *failing {
	return &failing{fail: fail, attempts: map[string]int{}, subjects: map[string]string{}, done: map[string]bool{}}
}

var errHandler = errors.New("bustest: handler failure on purpose")

func (f *failing) handle(_ context.Context, m bus.Message) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.attempts[m.ID]++
	f.subjects[m.ID] = m.Subject
	if f.attempts[m.ID] <= f.fail {
		return fmt.Errorf("attempt %d of %q: %w", f.attempts[m.ID], m.Body, errHandler)
	}
	f.done[m.ID] = true
	return nil
}

func (f *failing) state(id string) (attempts int, subject string, done bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.attempts[id], f.subjects[id], f.done[id]
}

func (f *failing) ids() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var ids []string
	for id := range f.attempts {
		ids = append(ids, id)
	}
	return ids
}

func (s *suite) testRedelivery(t *testing.T) {
	b := s.bus(t)
	p := unique()
	subject := p + ".sensor.data.received"
	queue := p + ".retry"
	// Fails every attempt but the last one allowed.
	f := newFailing(s.opts.MaxAttempts - 1)
	subscribe(t, t.Context(), b, queue, []string{subject}, f.handle)
	publish(t, b, subject, "flaky")

	s.eventually(t, "the message to succeed", func() bool {
		ids := f.ids()
		if len(ids) != 1 {
			return false
		}
		_, _, done := f.state(ids[0])
		return done
	})
	if ids := f.ids(); len(ids) != 1 {
		t.Fatalf("handler saw IDs %q: a redelivery must keep the message ID", ids)
	}
	id := f.ids()[0]
	attempts, subj, _ := f.state(id)
	if attempts != s.opts.MaxAttempts {
		t.Errorf("attempts = %d, want %d", attempts, s.opts.MaxAttempts)
	}
	if subj != subject {
		t.Errorf("redelivered subject = %q, want %q", subj, subject)
	}
	// Settled on the last allowed attempt: not dead-lettered.
	for _, m := range s.opts.DeadLetters(t, b, queue) {
		t.Errorf("message %q dead-lettered although its last attempt succeeded", m.ID)
	}
}

func (s *suite) testDeadLetter(t *testing.T) {
	b := s.bus(t)
	p := unique()
	subject := p + ".alert.raised"
	queue := p + ".poison"
	f := newFailing(1 << 30) // never succeeds
	var good recorder
	h := func(ctx context.Context, m bus.Message) error {
		if string(m.Body) == "good" {
			return good.handle(ctx, m)
		}
		return f.handle(ctx, m)
	}
	subscribe(t, t.Context(), b, queue, []string{subject}, h)
	publish(t, b, subject, "poison")
	publish(t, b, subject, "good")

	dead := map[string]bus.Message{}
	s.eventually(t, "the poison message to be dead-lettered", func() bool {
		for _, m := range s.opts.DeadLetters(t, b, queue) {
			dead[m.ID] = m
		}
		return len(dead) > 0
	})
	s.eventually(t, "the good message", func() bool { return good.hasBody("good") })

	ids := f.ids()
	if len(ids) != 1 {
		t.Fatalf("failing handler saw IDs %q, want one", ids)
	}
	m, ok := dead[ids[0]]
	if !ok || len(dead) != 1 {
		t.Fatalf("dead letters %v, want only %q", dead, ids[0])
	}
	if string(m.Body) != "poison" || m.Subject != subject {
		t.Errorf("dead letter = %q %q, want %q %q", m.Subject, m.Body, subject, "poison")
	}
	if attempts, _, _ := f.state(ids[0]); attempts != s.opts.MaxAttempts {
		t.Errorf("poison message handled %d times, want %d", attempts, s.opts.MaxAttempts)
	}
	if n := len(good.messages()); n != 1 {
		t.Errorf("good message handled %d times, want 1", n)
	}
}

func (s *suite) testStoppedConsumer(t *testing.T) {
	b := s.bus(t)
	p := unique()
	subject := p + ".sensor.status.changed"
	var first, other recorder
	ctx, cancel := context.WithCancel(t.Context())
	subscribe(t, ctx, b, p+".first", []string{subject}, first.handle)
	subscribe(t, t.Context(), b, p+".other", []string{subject}, other.handle)

	publish(t, b, subject, "before")
	s.eventually(t, "the first message on both queues", func() bool {
		return first.hasBody("before") && other.hasBody("before")
	})
	cancel()
	publish(t, b, subject, "after")
	s.eventually(t, "the second message on the live queue", func() bool { return other.hasBody("after") })
	if first.hasBody("after") {
		t.Error("a consumer whose ctx ended was handed a message published afterwards")
	}
}

func (s *suite) testDurable(t *testing.T) {
	b := s.bus(t)
	p := unique()
	subject := p + ".sensor.data.received"
	queue := p + ".durable"

	var before recorder
	ctx, cancel := context.WithCancel(t.Context())
	subscribe(t, ctx, b, queue, []string{subject}, before.handle)
	publish(t, b, subject, "while consuming")
	s.eventually(t, "the first message", func() bool { return before.hasBody("while consuming") })
	cancel()

	const n = 20
	for i := range n {
		publish(t, b, subject, fmt.Sprint(i))
	}
	var after recorder
	subscribe(t, t.Context(), b, queue, []string{subject}, after.handle)
	s.eventually(t, fmt.Sprintf("the %d messages published without a consumer", n), func() bool {
		return len(after.messages()) >= n
	})
	for i := range n {
		if !after.hasBody(fmt.Sprint(i)) {
			t.Errorf("message %d lost", i)
		}
		if before.hasBody(fmt.Sprint(i)) {
			t.Errorf("message %d handed to the stopped consumer", i)
		}
	}
}

func (s *suite) testPingClose(t *testing.T) {
	b := s.open(t)
	ctx := t.Context()
	if err := b.Ping(ctx); err != nil {
		t.Fatalf("Ping on an open bus: %v", err)
	}
	if err := b.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	p := unique()
	after := []struct {
		name string
		call func() error
	}{
		{"Ping", func() error { return b.Ping(ctx) }},
		{"Publish", func() error { return b.Publish(ctx, p+".x", []byte("late")) }},
		{"Subscribe", func() error {
			return b.Subscribe(ctx, p+".q", []string{p + ".#"}, func(context.Context, bus.Message) error { return nil })
		}},
	}
	for _, tt := range after {
		t.Run(tt.name+"AfterClose", func(t *testing.T) {
			if err := tt.call(); err == nil {
				t.Errorf("%s after Close succeeded, want an error", tt.name)
			}
		})
	}
	if err := b.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}

func (s *suite) testCloseDrains(t *testing.T) {
	b := s.open(t)
	p := unique()
	subject := p + ".room.metrics.updated"
	started := make(chan struct{})
	var startOnce sync.Once
	release := make(chan struct{})
	var finished sync.WaitGroup
	finished.Add(1)
	var handled recorder
	h := func(ctx context.Context, m bus.Message) error {
		startOnce.Do(func() { close(started) })
		<-release
		err := handled.handle(ctx, m)
		finished.Done()
		return err
	}
	subscribe(t, t.Context(), b, p+".drain", []string{subject}, h)
	publish(t, b, subject, "in flight")
	select {
	case <-started:
	case <-time.After(s.opts.Wait):
		t.Fatal("timed out waiting for the handler to start")
	}

	closed := make(chan error, 1)
	go func() { closed <- b.Close() }()
	select {
	case err := <-closed:
		t.Fatalf("Close returned (%v) while a handler was still running", err)
	case <-time.After(100 * time.Millisecond):
	}
	close(release)
	select {
	case err := <-closed:
		if err != nil {
			t.Fatalf("Close: %v", err)
		}
	case <-time.After(s.opts.Wait):
		t.Fatal("Close did not return after the handler finished")
	}
	if !handled.hasBody("in flight") {
		t.Error("Close returned before the in-flight handler finished")
	}
	finished.Wait()
}
