package mongostore

import (
	"testing"
	"time"

	"github.com/atrium-iot/atrium/internal/mongox/mongotest"
	"github.com/atrium-iot/atrium/internal/retention"
	"github.com/atrium-iot/atrium/services/room"
	"github.com/atrium-iot/atrium/services/room/storetest"
)

// TestExpiryIndexes checks each tier's expiry index as the retention changes
// between runs: made when a tier has a retention (a TTL of retention + period
// on MongoDB), dropped when it has none.
func TestExpiryIndexes(t *testing.T) {
	c := mongotest.Client(t)
	db := mongotest.Database(t, c, "room_expiry")
	tests := []struct {
		name string
		keep retention.Tiered
		want map[string]time.Duration // tier → TTL (0: a plain index); absent: no index
	}{
		{"both", retention.Tiered{Policy: retention.Policy{Retention: time.Hour}, RollupRetention: 2 * time.Hour},
			map[string]time.Duration{"rollups_1m": time.Hour + time.Minute, "rollups_5m": 2*time.Hour + 5*time.Minute, "rollups_1h": 3 * time.Hour}},
		{"rollups only, longer", retention.Tiered{RollupRetention: 4 * time.Hour},
			map[string]time.Duration{"rollups_5m": 4*time.Hour + 5*time.Minute, "rollups_1h": 5 * time.Hour}},
		{"forever", retention.Tiered{}, map[string]time.Duration{}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tc.keep.PruneEvery = -1
			s := openTest(t, db, Options{Tiered: tc.keep})
			for _, tr := range s.tiers {
				found, got := mongotest.Index(t, tr.coll, expiryIndex)
				ttl, want := tc.want[tr.name]
				switch {
				case !want && found != nil:
					t.Errorf("%s has an expiry index %v, want none", tr.name, found)
				case want && found == nil:
					t.Errorf("%s has no expiry index", tr.name)
				case want && s.Server().TTL:
					if got != ttl {
						t.Errorf("%s expires after %s, want %s", tr.name, got, ttl)
					}
				}
			}
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// TestPruneAtOpen: where the server has no TTL indexes, the store's pruner runs
// right after Open.
func TestPruneAtOpen(t *testing.T) {
	db := mongotest.Database(t, mongotest.Client(t), "room_prune_open")
	storetest.RunPruneAtOpen(t, func(t *testing.T, r retention.Tiered) room.Store {
		s := openTest(t, db, Options{Tiered: r})
		if s.Server().TTL {
			t.Skip("the server expires buckets with TTL indexes, on its own schedule")
		}
		return s
	})
}
