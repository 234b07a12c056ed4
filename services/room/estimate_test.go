package room_test

import (
	"context"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/atrium-iot/atrium/internal/logging"
	"github.com/atrium-iot/atrium/internal/reading"
	"github.com/atrium-iot/atrium/internal/servicetest"
	"github.com/atrium-iot/atrium/services/room"
	"github.com/atrium-iot/atrium/services/room/occupancy"
	"github.com/atrium-iot/atrium/services/room/sqlitestore"
)

// uciReadings are the readings of UCI rows, each column a sensor.
func uciReadings(roomID string, ss []occupancy.Sample, light bool) []reading.Reading {
	var rs []reading.Reading
	for _, s := range ss {
		for _, c := range []struct {
			typ string
			v   float64
		}{{"temperature", s.Temperature}, {"humidity", s.Humidity}, {"light", s.Light}, {"co2", s.CO2}} {
			if c.typ == "light" && !light {
				continue
			}
			rs = append(rs, reading.Reading{SensorID: roomID + "-" + c.typ, RoomID: roomID, Type: c.typ, Value: c.v, Timestamp: s.Time})
		}
	}
	return rs
}

type historyAnswer struct {
	Buckets []struct {
		Start time.Time `json:"start"`
		Mean  float64   `json:"mean"`
		Count int       `json:"count"`
	} `json:"buckets"`
}

// TestOccupancyEstimate feeds rows of the UCI test set as bus events (in
// batches, some redelivered, in an order that is not the rows' order) and checks
// the occupied_estimate series and the metrics: the series is what the estimator
// computes in process from the same rows, a redelivery changes nothing, and a
// room with a PIR sensor keeps its sensor's answer.
func TestOccupancyEstimate(t *testing.T) {
	f, err := os.Open(filepath.Join("occupancy", "testdata", "datatest_excerpt.txt"))
	if err != nil {
		t.Fatal(err)
	}
	ss, err := occupancy.ReadUCI(f)
	f.Close()
	if err != nil {
		t.Fatal(err)
	}
	ss = ss[:300]
	e := newEnv(t, "", nil)
	const size = 25
	var order []int
	for i := 0; i < len(ss); i += size {
		order = append(order, i)
	}
	// Batches 2 and 3 swap places; batch 5 arrives after an estimate ran.
	order[2], order[3] = order[3], order[2]
	for k, i := range order {
		id := fmt.Sprintf("b%d", i)
		consumeReadings(t, e.svc, id, uciReadings("uci", ss[i:min(i+size, len(ss))], true))
		if k%4 == 3 {
			if err := e.svc.Estimate(t.Context()); err != nil {
				t.Fatal(err)
			}
		}
		if k == 5 { // a redelivery
			consumeReadings(t, e.svc, id, uciReadings("uci", ss[i:min(i+size, len(ss))], true))
		}
	}
	if err := e.svc.Estimate(t.Context()); err != nil {
		t.Fatal(err)
	}
	want := occupancy.Default().Offline(ss, [4]bool{true, true, true, true})
	from, to := ss[0].Time.Truncate(time.Minute), ss[len(ss)-1].Time.Add(time.Minute)
	url := fmt.Sprintf("%s/rooms/uci/history?type=%s&bucket=1m&limit=1000&from=%s&to=%s", e.url, room.EstimateType, from.Format(time.RFC3339), to.Format(time.RFC3339))
	got := getJSON[historyAnswer](t, url)
	if len(got.Buckets) != len(want) || len(want) < 200 {
		t.Fatalf("%d minutes of %s, in process %d", len(got.Buckets), room.EstimateType, len(want))
	}
	occupied := 0
	for i, b := range got.Buckets {
		if !b.Start.Equal(want[i].Minute) || math.Abs(b.Mean-want[i].P) > 1e-9 || b.Count != 1 {
			t.Fatalf("minute %d: %+v, in process %+v", i, b, want[i])
		}
		if b.Mean >= 0.5 {
			occupied++
		}
	}
	if occupied == 0 || occupied == len(want) {
		t.Fatalf("%d of %d minutes occupied: the rows hold both", occupied, len(want))
	}

	m := getJSON[room.Metrics](t, e.url+"/rooms/uci/metrics")
	last := want[len(want)-1]
	if m.OccupiedSource == nil || *m.OccupiedSource != "estimate" || m.OccupiedProbability == nil ||
		math.Abs(*m.OccupiedProbability-last.P) > 1e-9 || m.Occupied == nil || *m.Occupied != (last.P >= 0.5) ||
		m.OccupiedEstimatedAt == nil || !m.OccupiedEstimatedAt.Equal(last.Minute) {
		t.Errorf("metrics: occupied %v source %v probability %s at %v; want the estimate %+v", deref(m.Occupied), deref(m.OccupiedSource), f64(m.OccupiedProbability), m.OccupiedEstimatedAt, last)
	}
	if _, ok := m.Metrics[room.EstimateType]; ok {
		t.Errorf("metrics list the derived series as a reading type: %+v", m.Metrics)
	}

	// A room with a PIR sensor: the sensor decides, as before.
	e.consume(t, "pir1", rd{"p1", "r-pir", "pir", 1, "12:09:00"}, rd{"c1", "r-pir", "co2", 450, "12:08:00"}, rd{"c1", "r-pir", "co2", 455, "12:09:00"})
	if err := e.svc.Estimate(t.Context()); err != nil {
		t.Fatal(err)
	}
	m = getJSON[room.Metrics](t, e.url+"/rooms/r-pir/metrics")
	if m.Occupied == nil || !*m.Occupied || m.OccupiedSource == nil || *m.OccupiedSource != "sensor" || m.OccupiedProbability != nil {
		t.Errorf("room with a PIR: occupied %v source %v probability %s; want true, sensor, null", deref(m.Occupied), deref(m.OccupiedSource), f64(m.OccupiedProbability))
	}
	// A room with no input type has no estimate and says null.
	e.consume(t, "noise1", rd{"n1", "r-quiet", "noise", 30, "12:00:00"})
	if err := e.svc.Estimate(t.Context()); err != nil {
		t.Fatal(err)
	}
	m = getJSON[room.Metrics](t, e.url+"/rooms/r-quiet/metrics")
	if m.Occupied != nil || m.OccupiedSource != nil || m.OccupiedProbability != nil {
		t.Errorf("room without inputs: occupied %v source %v probability %s; want null", deref(m.Occupied), deref(m.OccupiedSource), f64(m.OccupiedProbability))
	}
	// A reading that claims the derived type is refused.
	e.consume(t, "fake1", rd{"x1", "uci", room.EstimateType, 1, "12:00:00"})
	if got := getJSON[historyAnswer](t, url); len(got.Buckets) != len(want) {
		t.Errorf("a reading of type %s changed the series: %d minutes", room.EstimateType, len(got.Buckets))
	}
}

// countingStore is the SQLite store, counting the SetSeries calls and the rooms
// they carry.
type countingStore struct {
	*sqlitestore.Store
	mu    sync.Mutex
	calls int
	rooms []string
}

func (c *countingStore) SetSeries(ctx context.Context, typ string, rooms []room.RoomPoints) error {
	c.mu.Lock()
	c.calls++
	for _, r := range rooms {
		c.rooms = append(c.rooms, r.RoomID)
	}
	c.mu.Unlock()
	return c.Store.SetSeries(ctx, typ, rooms)
}

// TestEstimateRoundWritesOnce checks that a round stores the estimates of every
// room in one write (one transaction), and that a room deleted before the round
// does not keep the others' estimates out.
func TestEstimateRoundWritesOnce(t *testing.T) {
	st := openStore(t, "", sqlitestore.Options{})
	cs := &countingStore{Store: st}
	mb := servicetest.Bus(t)
	svc := room.New(cs, mb, logging.Discard(), room.Options{Now: func() time.Time { return now }})
	e := &env{svc: svc, store: st, bus: mb, url: servicetest.Serve(t, svc.Handler())}
	for _, id := range []string{"a", "b", "gone"} {
		e.consume(t, "batch-"+id, rd{id + "-co2", id, "co2", 500, "12:00:10"}, rd{id + "-co2", id, "co2", 520, "12:01:10"},
			rd{id + "-t", id, "temperature", 21, "12:00:20"}, rd{id + "-t", id, "temperature", 21.2, "12:01:20"})
	}
	if err := st.DeleteRoom(t.Context(), "gone"); err != nil {
		t.Fatal(err)
	}
	if err := svc.Estimate(t.Context()); err != nil {
		t.Fatal(err)
	}
	// The deleted room has no readings left, so no estimate to write (and a
	// room deleted between the read and the write is skipped by the store).
	if cs.calls != 1 || !slices.Equal(cs.rooms, []string{"a", "b"}) {
		t.Fatalf("one round: %d SetSeries calls for rooms %v, want 1 for a and b", cs.calls, cs.rooms)
	}
	for _, c := range []struct {
		id   string
		want int
	}{{"a", 2}, {"b", 2}} {
		url := fmt.Sprintf("%s/rooms/%s/history?type=%s&bucket=1m&from=%s&to=%s", e.url, c.id, room.EstimateType,
			now.Add(-24*time.Hour).Format(time.RFC3339), now.Add(24*time.Hour).Format(time.RFC3339))
		if got := getJSON[historyAnswer](t, url); len(got.Buckets) != c.want {
			t.Errorf("room %s: %d minutes of %s, want %d", c.id, len(got.Buckets), room.EstimateType, c.want)
		}
	}
	// Nothing new: no write.
	if err := svc.Estimate(t.Context()); err != nil || cs.calls != 1 {
		t.Errorf("a round with nothing pending: %v, %d SetSeries calls, want none", err, cs.calls-1)
	}
}
