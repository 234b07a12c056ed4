package room_test

import (
	"context"
	"math"
	"testing"
	"time"

	"github.com/atrium-iot/atrium/internal/bus"
	"github.com/atrium-iot/atrium/internal/httpx/httpxtest"
	"github.com/atrium-iot/atrium/internal/logging"
	"github.com/atrium-iot/atrium/internal/servicetest"
	"github.com/atrium-iot/atrium/internal/testwait"
	"github.com/atrium-iot/atrium/services/room"
	"github.com/atrium-iot/atrium/services/room/sqlitestore"
)

// huge is a finite value whose double overflows.
const huge = 1.7e308

func finite(f float64) bool { return !math.IsNaN(f) && !math.IsInf(f, 0) }

// TestHugeValues: two sensors of r1 sending a value near the largest double
// overflow its sums; r1's metrics and history still answer with finite means
// within min..max, and the rooms keep publishing room.metrics.updated.
func TestHugeValues(t *testing.T) {
	e := newEnv(t, "", nil)
	updates := updatesOf(t, e.bus)
	e.run(t)
	body := eventBody("huge-1", rd{"a1", "r1", "energy", huge, "12:10:00"}, rd{"a2", "r1", "energy", huge, "12:10:00"},
		rd{"b1", "r2", "co2", 700, "12:10:00"})
	if err := e.bus.Publish(t.Context(), bus.SensorDataReceived, body); err != nil {
		t.Fatal(err)
	}
	got := waitUpdates(t, updates, "r1", "r2")
	if v := got["r1"].Metrics["energy"].Value; v != huge {
		t.Errorf("published energy of r1 = %v, want %v", v, huge)
	}
	if v := got["r2"].Metrics["co2"].Value; v != 700 {
		t.Errorf("published co2 of r2 = %v, want 700", v)
	}
	check := func(when string) {
		t.Helper()
		m := getJSON[room.Metrics](t, e.url+"/rooms/r1/metrics")
		en := m.Metrics["energy"]
		if !finite(en.Value) || en.Mean5m == nil || *en.Mean5m < *en.Min5m || *en.Mean5m > *en.Max5m {
			t.Errorf("%s: energy of r1 = %+v (mean %s), want finite figures, the mean within min..max", when, en, f64(en.Mean5m))
		}
		type page struct {
			Buckets []struct {
				Min, Mean, Max float64
				Count          int64
			} `json:"buckets"`
		}
		h := getJSON[page](t, e.url+"/rooms/r1/history?type=energy&bucket=1m&from=2026-11-25T12:00:00Z&to=2026-11-25T12:20:00Z")
		if len(h.Buckets) != 1 || h.Buckets[0].Mean < h.Buckets[0].Min || h.Buckets[0].Mean > h.Buckets[0].Max {
			t.Errorf("%s: history of r1 = %+v, want one bucket, its mean within min..max", when, h.Buckets)
		}
	}
	check("one sign")
	if m := getJSON[room.Metrics](t, e.url+"/rooms/r1/metrics"); *m.Metrics["energy"].Mean5m != huge {
		t.Errorf("mean of two readings of %v = %v", huge, *m.Metrics["energy"].Mean5m)
	}

	// Readings of the other sign in the same minute, in another batch: the
	// stored sums must not turn NaN (SQLite stores NaN as NULL).
	e.consume(t, "huge-2", rd{"a3", "r1", "energy", -huge, "12:10:00"}, rd{"a4", "r1", "energy", -huge, "12:10:00"},
		rd{"a5", "r1", "energy", -huge, "12:10:00"})
	check("both signs")
	// The current value is the mean of the five sensors' latest, (2-3)/5 of huge,
	// though their sum overflows.
	if v := getJSON[room.Metrics](t, e.url+"/rooms/r1/metrics").Metrics["energy"].Value; math.Abs(v-(-huge/5)) > huge*1e-12 {
		t.Errorf("energy of r1 over five sensors = %v, want %v", v, -huge/5)
	}
	e.consume(t, "after", rd{"b1", "r2", "co2", 800, "12:10:10"})
	if got := waitUpdates(t, updates, "r1", "r2"); got["r2"].Metrics["co2"].Value != 800 {
		t.Errorf("published co2 of r2 = %+v, want 800", got["r2"].Metrics["co2"])
	}
}

// poisoned is a store whose snapshot of one room holds a value no JSON can
// carry, as a bug in the metrics could: that room's event cannot be encoded.
type poisoned struct {
	*sqlitestore.Store
	room string
}

func (p poisoned) Snapshot(ctx context.Context, id string, from, to time.Time) (room.Snapshot, error) {
	s, err := p.Store.Snapshot(ctx, id, from, to)
	if id == p.room {
		for i := range s.Latest {
			s.Latest[i].Value = math.NaN()
		}
	}
	return s, err
}

// TestUnencodableRoomDoesNotBlockOthers: a room whose room.metrics.updated
// cannot be encoded is counted and skipped; the rooms sorted after it are
// published, and it is not retried every round.
func TestUnencodableRoomDoesNotBlockOthers(t *testing.T) {
	st := openStore(t, "", sqlitestore.Options{})
	b := servicetest.Bus(t)
	svc := room.New(poisoned{st, "a"}, b, logging.Discard(), room.Options{Now: func() time.Time { return now }, PublishInterval: 20 * time.Millisecond})
	e := &env{svc: svc, store: st, bus: b, url: servicetest.Serve(t, svc.Handler())}
	updates := updatesOf(t, b)
	e.run(t)
	e.consume(t, "b1", rd{"s1", "a", "co2", 500, "12:10:00"}, rd{"s2", "b", "co2", 600, "12:10:00"}, rd{"s3", "c", "co2", 700, "12:10:00"})
	got := waitUpdates(t, updates, "b", "c")
	if _, ok := got["a"]; ok {
		t.Errorf("room a published: %+v", got["a"])
	}
	time.Sleep(100 * time.Millisecond) // a few more rounds
	m := httpxtest.Scrape(t, nil, e.url)
	if n := m.Get("atrium_room_publish_skipped_total"); n != 1 {
		t.Errorf("atrium_room_publish_skipped_total = %v, want 1 (skipped once, not retried)", n)
	}
	if n := m.Get("atrium_room_publish_errors_total"); n != 0 {
		t.Errorf("atrium_room_publish_errors_total = %v, want 0", n)
	}
	// a's next change is tried again; b still goes through.
	e.consume(t, "b2", rd{"s1", "a", "co2", 510, "12:10:10"}, rd{"s2", "b", "co2", 610, "12:10:10"})
	waitUpdates(t, updates, "b")
	testwait.For(t, "a skipped again", func() bool {
		return httpxtest.Scrape(t, nil, e.url).Get("atrium_room_publish_skipped_total") == 2
	})
}
