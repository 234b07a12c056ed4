package membus_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/atrium-iot/atrium/internal/bus"
	"github.com/atrium-iot/atrium/internal/bus/bustest"
	"github.com/atrium-iot/atrium/internal/bus/membus"
	"github.com/atrium-iot/atrium/internal/logging"
)

const maxAttempts = 3

// deadLetters remembers what each bus opened by the suite gave up on.
type deadLetters struct {
	mu      sync.Mutex
	byQueue map[*membus.Bus]map[string][]bus.Message
}

func (d *deadLetters) open(t *testing.T) bus.Bus {
	b := membus.New(logging.Discard())
	b.MaxAttempts = maxAttempts
	b.Backoff = time.Millisecond
	d.mu.Lock()
	d.byQueue[b] = map[string][]bus.Message{}
	d.mu.Unlock()
	b.OnDeadLetter = func(queue string, m bus.Message, _ error) {
		d.mu.Lock()
		defer d.mu.Unlock()
		d.byQueue[b][queue] = append(d.byQueue[b][queue], m)
	}
	return b
}

func (d *deadLetters) get(_ *testing.T, b bus.Bus, queue string) []bus.Message {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]bus.Message(nil), d.byQueue[b.(*membus.Bus)][queue]...)
}

func TestContract(t *testing.T) {
	d := &deadLetters{byQueue: map[*membus.Bus]map[string][]bus.Message{}}
	bustest.Run(t, d.open, bustest.Options{
		Durable:     true,
		MaxAttempts: maxAttempts,
		DeadLetters: d.get,
	})
}

func BenchmarkPublishConfirm(b *testing.B) {
	mb := membus.New(logging.Discard())
	defer mb.Close()
	// One consumer drains the queue so Publish never waits for room.
	if err := mb.Subscribe(b.Context(), "bench", []string{"bench.#"}, func(context.Context, bus.Message) error { return nil }); err != nil {
		b.Fatal(err)
	}
	bustest.BenchPublish(b, mb)
}

// TestBackPressure fills a queue that has no consumer and checks what a publisher
// waiting for room gets.
func TestBackPressure(t *testing.T) {
	const buffer = 4096 // the per-queue buffer New documents
	tests := []struct {
		name string
		// release ends the wait of a publisher blocked on b; it returns the
		// context that publisher uses.
		release func(b *membus.Bus) context.Context
		want    error
	}{
		{
			name: "ctx ends",
			release: func(*membus.Bus) context.Context {
				ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
				t.Cleanup(cancel)
				return ctx
			},
			want: context.DeadlineExceeded,
		},
		{
			name: "bus closes",
			release: func(b *membus.Bus) context.Context {
				go func() {
					time.Sleep(50 * time.Millisecond)
					b.Close()
				}()
				return context.Background()
			},
			want: membus.ErrClosed,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := membus.New(logging.Discard())
			defer b.Close()
			// A consumer whose ctx has already ended declares the queue and
			// takes nothing from it.
			ctx, cancel := context.WithCancel(t.Context())
			cancel()
			if err := b.Subscribe(ctx, "q", []string{"s"}, func(context.Context, bus.Message) error { return nil }); err != nil {
				t.Fatal(err)
			}
			for i := 0; i < buffer; i++ {
				if err := b.Publish(t.Context(), "s", nil); err != nil {
					t.Fatalf("Publish %d into a queue with room: %v", i, err)
				}
			}
			pctx := tt.release(b)
			done := make(chan error, 1)
			go func() { done <- b.Publish(pctx, "s", []byte("one too many")) }()
			select {
			case err := <-done:
				if !errors.Is(err, tt.want) {
					t.Errorf("Publish into a full queue: %v, want %v", err, tt.want)
				}
			case <-time.After(30 * time.Second):
				t.Fatal("Publish into a full queue never returned")
			}
		})
	}
}

func TestQueueCreatedAtStartupGetsEarlierMessages(t *testing.T) {
	b := membus.New(logging.Discard())
	defer b.Close()
	ctx := context.Background()
	for i := range 3 {
		if err := b.Publish(ctx, "sensor.data.received", []byte{byte(i)}); err != nil {
			t.Fatal(err)
		}
	}
	got := make(chan bus.Message, 10)
	if err := b.Subscribe(ctx, "late", []string{"sensor.#"}, func(_ context.Context, m bus.Message) error {
		got <- m
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if err := b.Publish(ctx, "sensor.data.received", []byte{3}); err != nil {
		t.Fatal(err)
	}
	seen := map[byte]bool{}
	for len(seen) < 4 {
		select {
		case m := <-got:
			seen[m.Body[0]] = true
		case <-time.After(5 * time.Second):
			t.Fatalf("a queue created during start-up got %d of 4 messages", len(seen))
		}
	}
}
