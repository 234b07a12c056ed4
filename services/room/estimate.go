package room

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/atrium-iot/atrium/services/room/occupancy"
)

// EstimateType is the history series of the occupancy estimate: per minute, the
// probability that the room was occupied.
const EstimateType = occupancy.Series

// span is the range of reading minutes a room received since its last estimate.
type span struct{ from, to time.Time }

// markEstimate records that a room's readings in [from, to] changed.
func (s *Service) markEstimate(roomID string, from, to time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if sp, ok := s.pending[roomID]; ok {
		from, to = minTime(from, sp.from), maxTime(to, sp.to)
	}
	s.pending[roomID] = span{from, to}
}

func minTime(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}

func maxTime(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

// Estimate brings the occupied_estimate series of every room that received
// readings since the last call up to date, from the store's rollups: the
// minutes the readings fell in and the occupancy.Influence after them. It runs
// before each publish round (and is exported for benchmarks and tools). A room
// whose estimate fails stays pending for the next call.
func (s *Service) Estimate(ctx context.Context) error {
	if s.model == nil {
		return nil
	}
	s.mu.Lock()
	pending := s.pending
	s.pending = map[string]span{}
	s.mu.Unlock()
	type done struct {
		sp   span
		last time.Time
	}
	var (
		first  error
		writes []RoomPoints
		dones  = map[string]done{}
	)
	for _, id := range sortedKeys(keysOf(pending)) {
		sp := pending[id]
		// Readings older than minutes already estimated (a late batch, or
		// batches forwarded in parallel) change those minutes too, through
		// their slopes and, for a day, the baseline.
		to := sp.to.Add(occupancy.Influence)
		s.mu.Lock()
		upTo, ok := s.estimated[id]
		s.mu.Unlock()
		if ok && upTo.After(to) {
			to = minTime(upTo, sp.to.Add(occupancy.BaselineInfluence))
		}
		points, err := s.estimateRoom(ctx, id, sp.from, to)
		if err != nil {
			s.markEstimate(id, sp.from, sp.to)
			if first == nil {
				first = err
			}
			continue
		}
		if len(points) > 0 {
			writes = append(writes, RoomPoints{RoomID: id, Points: points})
			dones[id] = done{sp, points[len(points)-1].Start}
		}
	}
	if len(writes) == 0 {
		return first
	}
	// Every room's minutes in one write: one transaction a round, not one a
	// room.
	if err := s.store.SetSeries(ctx, EstimateType, writes); err != nil {
		for id, d := range dones {
			s.markEstimate(id, d.sp.from, d.sp.to)
		}
		return errors.Join(first, fmt.Errorf("room: store estimates: %w", err))
	}
	n := 0
	s.mu.Lock()
	for id, d := range dones {
		if d.last.After(s.estimated[id]) {
			s.estimated[id] = d.last
		}
		s.dirty[id] = struct{}{}
	}
	s.mu.Unlock()
	for _, w := range writes {
		n += len(w.Points)
	}
	s.estimates.Add(float64(n))
	return first
}

func keysOf[V any](m map[string]V) map[string]struct{} {
	out := make(map[string]struct{}, len(m))
	for k := range m {
		out[k] = struct{}{}
	}
	return out
}

// estimateRoom computes the estimates of one room's minutes in [from, to]
// (those holding a reading of an input type), for the caller to store.
func (s *Service) estimateRoom(ctx context.Context, roomID string, from, to time.Time) ([]Point, error) {
	from, to = from.UTC().Truncate(time.Minute), to.UTC().Truncate(time.Minute)
	w := occupancy.Window{Minutes: map[string][]occupancy.Stat{}, Hours: map[string][]occupancy.Stat{}}
	hourFrom := from.Truncate(time.Hour).Add(-occupancy.HourLookback)
	for _, typ := range occupancy.Inputs {
		mins, err := s.store.History(ctx, HistoryQuery{RoomID: roomID, Type: typ, From: from.Add(-occupancy.MinuteLookback),
			To: to.Add(time.Minute), Bucket: time.Minute, Limit: int(to.Sub(from)/time.Minute) + 200})
		if err != nil {
			return nil, fmt.Errorf("room: estimate %s: %w", roomID, err)
		}
		if len(mins) == 0 {
			continue
		}
		hours, err := s.store.History(ctx, HistoryQuery{RoomID: roomID, Type: typ, From: hourFrom,
			To: to.Truncate(time.Hour), Bucket: time.Hour, Limit: int(to.Sub(hourFrom)/time.Hour) + 2})
		if err != nil {
			return nil, fmt.Errorf("room: estimate %s: %w", roomID, err)
		}
		w.Minutes[typ], w.Hours[typ] = toStats(mins), toStats(hours)
	}
	if len(w.Minutes) == 0 {
		return nil, nil
	}
	est := s.model.Estimate(w, from, to)
	points := make([]Point, len(est))
	for i, e := range est {
		points[i] = Point{Start: e.Minute, Value: e.P}
	}
	return points, nil
}

func toStats(in []Stat) []occupancy.Stat {
	out := make([]occupancy.Stat, len(in))
	for i, st := range in {
		out[i] = occupancy.Stat{Start: st.Start, Count: st.Count, Sum: st.Sum, Min: st.Min, Max: st.Max}
	}
	return out
}
