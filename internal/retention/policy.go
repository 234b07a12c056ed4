package retention

import (
	"cmp"
	"log/slog"
	"time"
)

// Policy is what a store that prunes is told: how long it keeps its finest data,
// how often it deletes what has expired, and its clock. The Options of such a
// store embed it, or a Tiered when the store keeps rollups too.
type Policy struct {
	// Retention is how long the store's finest data are kept, by reading
	// timestamp (the store's package names them); 0 keeps them forever.
	Retention time.Duration
	// PruneEvery is how often expired data is deleted, the first time right
	// after Open; 0 means the store's default (named in its package), < 0 only
	// when Prune is called.
	PruneEvery time.Duration
	// Now is the store's clock; nil means time.Now.
	Now func() time.Time
}

// Tiered is the Policy of a store that keeps rollups besides its finest data.
type Tiered struct {
	Policy
	// RollupRetention is how long the store's rollups (its package names them)
	// are kept; 0 keeps them forever.
	RollupRetention time.Duration
}

// WithDefaults returns p with its clock set to time.Now when it has none and
// PruneEvery set to every, the store's default, when it is 0.
func (p Policy) WithDefaults(every time.Duration) Policy {
	if p.Now == nil {
		p.Now = time.Now
	}
	p.PruneEvery = cmp.Or(p.PruneEvery, every)
	return p
}

// WithDefaults returns t with its Policy's defaults set (Policy.WithDefaults).
func (t Tiered) WithDefaults(every time.Duration) Tiered {
	t.Policy = t.Policy.WithDefaults(every)
	return t
}

// Start starts the store's pruner, running prune every PruneEvery: a Pruner for
// the store to stop at Close, or nil when nothing expires or PruneEvery is
// negative. p has its defaults (WithDefaults).
func (p Policy) Start(log *slog.Logger, prune PruneFunc) *Pruner {
	return p.start(p.Retention > 0, log, prune)
}

// Start starts the store's pruner as Policy.Start does, when either retention
// is set.
func (t Tiered) Start(log *slog.Logger, prune PruneFunc) *Pruner {
	return t.start(t.Retention > 0 || t.RollupRetention > 0, log, prune)
}

func (p Policy) start(expires bool, log *slog.Logger, prune PruneFunc) *Pruner {
	if !expires || p.PruneEvery <= 0 {
		return nil
	}
	return Start(p.PruneEvery, log, prune)
}
