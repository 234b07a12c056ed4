package retention_test

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/atrium-iot/atrium/internal/retention"
)

func TestWithDefaults(t *testing.T) {
	clock := func() time.Time { return time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC) }
	tests := []struct {
		name      string
		p         retention.Policy
		wantEvery time.Duration
		wantNow   time.Time // zero: time.Now
	}{
		{"zero", retention.Policy{}, time.Minute, time.Time{}},
		{"own schedule and clock", retention.Policy{PruneEvery: time.Hour, Now: clock}, time.Hour, clock()},
		{"only when asked", retention.Policy{PruneEvery: -1}, -1, time.Time{}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := retention.Tiered{Policy: tc.p, RollupRetention: time.Hour}.WithDefaults(time.Minute)
			if got.PruneEvery != tc.wantEvery || got.RollupRetention != time.Hour {
				t.Errorf("PruneEvery, RollupRetention = %s, %s; want %s, 1h", got.PruneEvery, got.RollupRetention, tc.wantEvery)
			}
			now := got.Now()
			if tc.wantNow.IsZero() {
				if time.Since(now).Abs() > time.Minute {
					t.Errorf("Now() = %s, want the real time", now)
				}
			} else if !now.Equal(tc.wantNow) {
				t.Errorf("Now() = %s, want %s", now, tc.wantNow)
			}
		})
	}
}

func TestStart(t *testing.T) {
	log := slog.New(slog.DiscardHandler)
	tests := []struct {
		name string
		t    retention.Tiered
		raw  bool // what Policy.Start does with t.Policy alone
		all  bool // what Tiered.Start does
	}{
		{"forever", retention.Tiered{}, false, false},
		{"raw", retention.Tiered{Policy: retention.Policy{Retention: time.Hour}}, true, true},
		{"rollups", retention.Tiered{RollupRetention: time.Hour}, false, true},
		{"only when asked", retention.Tiered{Policy: retention.Policy{Retention: time.Hour, PruneEvery: -1}, RollupRetention: time.Hour}, false, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			keep := tc.t.WithDefaults(time.Hour)
			for _, c := range []struct {
				name  string
				start func(*slog.Logger, retention.PruneFunc) *retention.Pruner
				want  bool
			}{{"Policy", keep.Policy.Start, tc.raw}, {"Tiered", keep.Start, tc.all}} {
				called := make(chan struct{}, 1)
				p := c.start(log, func(context.Context) (int64, int64, error) {
					select {
					case called <- struct{}{}:
					default:
					}
					return 0, 0, nil
				})
				if (p != nil) != c.want {
					t.Fatalf("%s.Start returned %v, want a pruner: %t", c.name, p, c.want)
				}
				if p != nil {
					select {
					case <-called: // the first prune runs at once
					case <-time.After(10 * time.Second):
						t.Errorf("%s.Start: no prune within 10 s of the start", c.name)
					}
				}
				p.Stop()
			}
		})
	}
}
