// Package retention runs a store's pruning in the background: the loop every
// store that honours -retention and -rollup-retention shares.
package retention

import (
	"context"
	"log/slog"
	"time"
)

// PruneFunc deletes what has expired and returns how many readings and rollup
// rows it deleted.
type PruneFunc func(ctx context.Context) (readings, rollups int64, err error)

// Loop calls prune at once and then every every after the previous call ended,
// until ctx ends. A failure is logged and retried at the next turn.
func Loop(ctx context.Context, every time.Duration, log *slog.Logger, prune PruneFunc) {
	t := time.NewTimer(0)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		start := time.Now()
		nr, nu, err := prune(ctx)
		switch {
		case ctx.Err() != nil:
			return
		case err != nil:
			log.Warn("prune failed", "err", err)
		case nr+nu > 0:
			log.Debug("pruned", "readings", nr, "rollups", nu, "took", time.Since(start))
		}
		t.Reset(every)
	}
}

// Pause waits for d, or until ctx ends (its error). Between two chunks of a
// prune, a store pauses as long as the chunk took, so that its writes get the
// write connection for at least half of a large backlog's time.
func Pause(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Pruner is a Loop running in the background, as a store runs it from Open to
// Close.
type Pruner struct {
	cancel context.CancelFunc
	done   chan struct{}
}

// Start runs Loop(every, log, prune) in a goroutine until Stop.
func Start(every time.Duration, log *slog.Logger, prune PruneFunc) *Pruner {
	ctx, cancel := context.WithCancel(context.Background())
	p := &Pruner{cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(p.done)
		Loop(ctx, every, log, prune)
	}()
	return p
}

// Stop ends the loop — a prune under way sees its context end — and waits until
// it has returned. A nil Pruner (a store that prunes nothing) is stopped already.
func (p *Pruner) Stop() {
	if p == nil {
		return
	}
	p.cancel()
	<-p.done
}
