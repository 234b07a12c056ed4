package mongostore

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/atrium-iot/atrium/internal/mongox"
	"github.com/atrium-iot/atrium/internal/mongox/mongotest"
	"github.com/atrium-iot/atrium/internal/reading"
	"github.com/atrium-iot/atrium/internal/retention"
	"github.com/atrium-iot/atrium/services/room"
	"github.com/atrium-iot/atrium/services/room/storetest"
)

// openTest opens a store on its own database of the test server.
func openTest(t testing.TB, db string, opts Options) *Store {
	t.Helper()
	return mongotest.Open(t, db, func(ctx context.Context, url, db string) (*Store, error) {
		opts.Database = db
		return Open(ctx, url, opts)
	})
}

func TestContract(t *testing.T) {
	storetest.Run(t, mongotest.Opener(t, "room_", func(ctx context.Context, url, db string) (room.Store, error) {
		return Open(ctx, url, Options{Database: db})
	}))
}

func TestRetentionContract(t *testing.T) {
	c := mongotest.Client(t)
	storetest.RunRetention(t, func(t *testing.T, name string, r retention.Tiered) storetest.Pruner {
		r.PruneEvery = -1
		return openTest(t, mongotest.Database(t, c, "room_"+name), Options{Tiered: r})
	})
}

var base = time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)

func co2(sensorID string, ts time.Time, v float64) reading.Reading {
	return reading.Reading{SensorID: sensorID, RoomID: "r1", Type: "co2", Value: v, Unit: "ppm", Timestamp: ts}
}

// TestResumeAfterCrash leaves batches as an Apply that died at each step would,
// and checks that a redelivery completes them, counting every reading once.
func TestResumeAfterCrash(t *testing.T) {
	c := mongotest.Client(t)
	now := base.Add(time.Hour)
	clock := func() time.Time { return now }
	rs := []reading.Reading{co2("s1", base, 400), co2("s1", base.Add(time.Second), 500), co2("s2", base.Add(2*time.Minute), 600)}
	tests := []struct {
		name string
		// crash leaves the store as the dead Apply of batch b1 did.
		crash func(t *testing.T, s *Store)
		// resumes: the redelivery applies the batch (else it is a duplicate).
		resumes bool
	}{
		{"claimed, nothing written", func(t *testing.T, s *Store) {
			insertClaim(t, s, "b1")
		}, true},
		{"some buckets counted", func(t *testing.T, s *Store) {
			insertClaim(t, s, "b1")
			// The dead Apply counted the batch in the first minute's bucket, and
			// created a bucket it never counted in.
			first := room.Rollup{RoomID: "r1", Type: "co2", Start: base.UnixMilli(), Agg: room.Agg{N: 2, Sum: 900, Min: 400, Max: 500}}
			if err := s.addRollups(t.Context(), s.tiers[0], "b1", []room.Rollup{first}); err != nil {
				t.Fatal(err)
			}
			if _, err := s.tiers[0].coll.InsertOne(t.Context(), bson.D{{Key: "_id", Value: "r1|co2|half-hour"}, {Key: "r", Value: "r1"},
				{Key: "y", Value: "co2"}, {Key: "st", Value: base.Add(30 * time.Minute)}}); err != nil {
				t.Fatal(err)
			}
		}, true},
		{"some buckets counted by another process", func(t *testing.T, s *Store) {
			insertClaim(t, s, "b1")
			// The dead Apply was another replica's: its documents are not ours.
			own := s.shard
			s.shard = "deadproc"
			defer func() { s.shard = own }()
			// It counted the batch in the first minute's bucket only.
			first := room.Rollup{RoomID: "r1", Type: "co2", Start: base.UnixMilli(), Agg: room.Agg{N: 2, Sum: 900, Min: 400, Max: 500}}
			if err := s.addRollups(t.Context(), s.tiers[0], "b1", []room.Rollup{first}); err != nil {
				t.Fatal(err)
			}
		}, true},
		{"everything counted, not recorded", func(t *testing.T, s *Store) {
			insertClaim(t, s, "b1")
			if _, _, err := s.write(t.Context(), room.Batch{ID: "b1", Readings: rs, At: base}, false, base); err != nil {
				t.Fatal(err)
			}
		}, true},
		{"recorded, batch ids left in the buckets", func(t *testing.T, s *Store) {
			insertClaim(t, s, "b1")
			if _, _, err := s.write(t.Context(), room.Batch{ID: "b1", Readings: rs, At: base}, false, base); err != nil {
				t.Fatal(err)
			}
			if _, err := s.applied.UpdateOne(t.Context(), bson.D{{Key: "_id", Value: "b1"}},
				bson.D{{Key: "$set", Value: bson.D{{Key: "st", Value: mongox.StateDone}, {Key: "rooms", Value: []string{"r1"}}}}}); err != nil {
				t.Fatal(err)
			}
		}, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := openTest(t, mongotest.Database(t, c, "room_resume"), Options{Lease: time.Minute, Tiered: retention.Tiered{Policy: retention.Policy{Now: clock}}})
			ctx := t.Context()
			tc.crash(t, s)
			// Another batch counted in the same buckets meanwhile.
			if _, err := s.Apply(ctx, room.Batch{ID: "b0", Readings: []reading.Reading{co2("s3", base.Add(30*time.Second), 1000)}, At: base}); err != nil {
				t.Fatal(err)
			}
			now = base.Add(time.Hour) // the claim's lease still runs: a redelivery waits
			if tc.resumes {
				wctx, cancel := contextWithTimeout(t, 300*time.Millisecond)
				if _, err := s.Apply(wctx, room.Batch{ID: "b1", Readings: rs, At: base}); err == nil {
					t.Fatal("a redelivery within the claim's lease did not wait for it")
				}
				cancel()
			}
			now = base.Add(time.Hour + 2*time.Minute) // the lease ran out
			out, err := s.Apply(ctx, room.Batch{ID: "b1", Readings: rs, At: base})
			if err != nil {
				t.Fatal(err)
			}
			if out.Duplicate == tc.resumes || len(out.Rooms) != 1 || out.Rooms[0] != "r1" {
				t.Fatalf("redelivery = %+v, want duplicate %v in r1", out, !tc.resumes)
			}
			if again, err := s.Apply(ctx, room.Batch{ID: "b1", Readings: rs, At: base}); err != nil || !again.Duplicate {
				t.Fatalf("second redelivery = %+v, %v, want a duplicate", again, err)
			}
			hist, err := s.History(ctx, room.HistoryQuery{RoomID: "r1", Type: "co2", From: base, To: base.Add(time.Hour), Bucket: time.Minute, Limit: 10})
			if err != nil {
				t.Fatal(err)
			}
			want := []room.Stat{
				{Type: "co2", Start: base, Count: 3, Sum: 1900, Min: 400, Max: 1000},
				{Type: "co2", Start: base.Add(2 * time.Minute), Count: 1, Sum: 600, Min: 600, Max: 600},
			}
			if fmt.Sprint(hist) != fmt.Sprint(want) {
				t.Errorf("minutes = %+v, want %+v", hist, want)
			}
			day, err := s.History(ctx, room.HistoryQuery{RoomID: "r1", Type: "co2", From: base.Truncate(24 * time.Hour), To: base.Add(time.Hour), Bucket: 24 * time.Hour, Limit: 10})
			if err != nil || len(day) != 1 || day[0].Count != 4 || day[0].Sum != 2500 {
				t.Errorf("day = %+v, %v, want 4 readings summing to 2500", day, err)
			}
			if tc.resumes {
				// A completed batch leaves no id in its own buckets (a dead
				// process's documents keep theirs).
				for _, tr := range s.tiers {
					var docs []struct {
						ID string `bson:"_id"`
					}
					cur, err := tr.coll.Find(ctx, bson.D{{Key: "bs", Value: "b1"}})
					if err == nil {
						err = cur.All(ctx, &docs)
					}
					for _, d := range docs {
						if !strings.HasSuffix(d.ID, "|deadproc") {
							t.Errorf("%s: bucket %s still lists b1", tr.name, d.ID)
						}
					}
					if err != nil {
						t.Errorf("%s: %v", tr.name, err)
					}
				}
			}
		})
	}
}

func insertClaim(t *testing.T, s *Store, id string) {
	t.Helper()
	if _, err := s.applied.InsertOne(t.Context(), appliedDoc{ID: id, ClaimFields: mongox.ClaimFields{State: mongox.StateClaimed, Owner: "dead", Lease: base.Add(time.Hour + time.Minute)}, At: base}); err != nil {
		t.Fatal(err)
	}
}

// TestConcurrentBatches applies many batches to the same buckets, latest values
// and sensors from several goroutines of two stores, as two replicas would: no
// update may be lost (FerretDB does not update a document atomically; each
// store serialises its own updates there, and writes documents of its own).
func TestConcurrentBatches(t *testing.T) {
	c := mongotest.Client(t)
	db := mongotest.Database(t, c, "room_concurrent")
	s := openTest(t, db, Options{})
	replicas := []*Store{s, openTest(t, db, Options{})}
	const workers, perWorker = 4, 6
	var wg sync.WaitGroup
	errs := make(chan error, workers*perWorker)
	for w := range workers {
		wg.Go(func() {
			for i := range perWorker {
				k := w*perWorker + i
				rs := []reading.Reading{
					co2("s1", base.Add(time.Duration(k)*time.Second), float64(k)),
					co2(fmt.Sprintf("w%d", w), base.Add(time.Duration(k)*time.Second), 1),
				}
				if _, err := replicas[w%2].Apply(t.Context(), room.Batch{ID: fmt.Sprintf("b%d", k), Readings: rs, At: base}); err != nil {
					errs <- err
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	n := int64(workers * perWorker)
	wantSum := float64(n*(n-1)/2) + float64(n)
	for _, b := range []time.Duration{time.Minute, 5 * time.Minute, time.Hour} {
		st, err := s.History(t.Context(), room.HistoryQuery{RoomID: "r1", Type: "co2", From: base, To: base.Add(time.Hour), Bucket: b, Limit: 10})
		if err != nil || len(st) != 1 || st[0].Count != 2*n || st[0].Sum != wantSum || st[0].Max != float64(n-1) {
			t.Errorf("bucket %s = %+v, %v, want %d readings summing to %v", b, st, err, 2*n, wantSum)
		}
	}
	snap, err := s.Snapshot(t.Context(), "r1", base, base)
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range snap.Latest {
		if v.SensorID == "s1" && (v.Value != float64(n-1) || !v.Timestamp.Equal(base.Add(time.Duration(n-1)*time.Second))) {
			t.Errorf("latest of s1 = %+v, want the newest reading %d", v, n-1)
		}
	}
	if len(snap.Latest) != workers+1 || snap.Room.SensorCount != workers+1 {
		t.Errorf("snapshot has %d latest values and %d sensors, want %d", len(snap.Latest), snap.Room.SensorCount, workers+1)
	}
}

func contextWithTimeout(t *testing.T, d time.Duration) (ctx context.Context, cancel func()) {
	return context.WithTimeout(t.Context(), d)
}
