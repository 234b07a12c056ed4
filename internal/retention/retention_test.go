package retention_test

import (
	"context"
	"errors"
	"log/slog"
	"sync/atomic"
	"testing"
	"time"

	"github.com/atrium-iot/atrium/internal/retention"
)

func TestLoop(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	var calls atomic.Int64
	done := make(chan struct{})
	go func() {
		defer close(done)
		retention.Loop(ctx, 10*time.Millisecond, slog.New(slog.DiscardHandler), func(context.Context) (int64, int64, error) {
			if calls.Add(1) == 2 {
				return 0, 0, errors.New("server away") // logged, and the loop goes on
			}
			return 1, 0, nil
		})
	}()
	deadline := time.Now().Add(10 * time.Second)
	for calls.Load() < 4 {
		if time.Now().After(deadline) {
			t.Fatalf("prune called %d times in 10 s, want at least 4 (at once, then every 10 ms, through a failure)", calls.Load())
		}
		time.Sleep(5 * time.Millisecond)
	}
	cancel()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Loop did not return after its context ended")
	}
	n := calls.Load()
	time.Sleep(50 * time.Millisecond)
	if calls.Load() != n {
		t.Error("prune called after Loop returned")
	}
}

func TestPause(t *testing.T) {
	start := time.Now()
	if err := retention.Pause(context.Background(), 20*time.Millisecond); err != nil {
		t.Fatalf("Pause: %v", err)
	}
	if d := time.Since(start); d < 20*time.Millisecond {
		t.Errorf("Pause returned after %v, want at least 20ms", d)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	start = time.Now()
	if err := retention.Pause(ctx, time.Hour); !errors.Is(err, context.Canceled) {
		t.Errorf("Pause with an ended context: %v, want context.Canceled", err)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("Pause with an ended context took %v", d)
	}
}

func TestStartStop(t *testing.T) {
	var calls atomic.Int64
	running := make(chan struct{})
	p := retention.Start(time.Hour, slog.New(slog.DiscardHandler), func(ctx context.Context) (int64, int64, error) {
		calls.Add(1)
		close(running)
		<-ctx.Done() // a prune under way when Stop comes
		return 0, 0, ctx.Err()
	})
	select {
	case <-running: // the first prune runs at once
	case <-time.After(10 * time.Second):
		t.Fatal("the first prune did not start")
	}
	stopped := make(chan struct{})
	go func() { p.Stop(); close(stopped) }()
	select {
	case <-stopped:
	case <-time.After(10 * time.Second):
		t.Fatal("Stop did not end the prune under way")
	}
	if n := calls.Load(); n != 1 {
		t.Errorf("prune called %d times, want 1", n)
	}
	var none *retention.Pruner
	none.Stop() // a store without a pruner
}
