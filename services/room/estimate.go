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
	var first error
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
		changed, last, err := s.estimateRoom(ctx, id, sp.from, to)
		if err != nil {
			if errors.Is(err, ErrNotFound) { // deleted meanwhile
				continue
			}
			s.markEstimate(id, sp.from, sp.to)
			if first == nil {
				first = err
			}
			continue
		}
		if changed {
			s.mu.Lock()
			if last.After(s.estimated[id]) {
				s.estimated[id] = last
			}
			s.mu.Unlock()
			s.markDirty(id)
		}
	}
	return first
}

func keysOf[V any](m map[string]V) map[string]struct{} {
	out := make(map[string]struct{}, len(m))
	for k := range m {
		out[k] = struct{}{}
	}
	return out
}

// estimateRoom computes and stores the estimates of one room's minutes in
// [from, to] (those holding a reading of an input type).
// It returns whether it stored any, and the newest.
func (s *Service) estimateRoom(ctx context.Context, roomID string, from, to time.Time) (bool, time.Time, error) {
	from, to = from.UTC().Truncate(time.Minute), to.UTC().Truncate(time.Minute)
	w := occupancy.Window{Minutes: map[string][]occupancy.Stat{}, Hours: map[string][]occupancy.Stat{}}
	hourFrom := from.Truncate(time.Hour).Add(-occupancy.HourLookback)
	for _, typ := range occupancy.Inputs {
		mins, err := s.store.History(ctx, HistoryQuery{RoomID: roomID, Type: typ, From: from.Add(-occupancy.MinuteLookback),
			To: to.Add(time.Minute), Bucket: time.Minute, Limit: int(to.Sub(from)/time.Minute) + 200})
		if err != nil {
			return false, time.Time{}, fmt.Errorf("room: estimate %s: %w", roomID, err)
		}
		if len(mins) == 0 {
			continue
		}
		hours, err := s.store.History(ctx, HistoryQuery{RoomID: roomID, Type: typ, From: hourFrom,
			To: to.Truncate(time.Hour), Bucket: time.Hour, Limit: int(to.Sub(hourFrom)/time.Hour) + 2})
		if err != nil {
			return false, time.Time{}, fmt.Errorf("room: estimate %s: %w", roomID, err)
		}
		w.Minutes[typ], w.Hours[typ] = toStats(mins), toStats(hours)
	}
	if len(w.Minutes) == 0 {
		return false, time.Time{}, nil
	}
	est := s.model.Estimate(w, from, to)
	if len(est) == 0 {
		return false, time.Time{}, nil
	}
	points := make([]Point, len(est))
	for i, e := range est {
		points[i] = Point{Start: e.Minute, Value: e.P}
	}
	if err := s.store.SetSeries(ctx, roomID, EstimateType, points); err != nil {
		return false, time.Time{}, fmt.Errorf("room: estimate %s: %w", roomID, err)
	}
	s.estimates.Add(float64(len(points)))
	return true, est[len(est)-1].Minute, nil
}

func toStats(in []Stat) []occupancy.Stat {
	out := make([]occupancy.Stat, len(in))
	for i, st := range in {
		out[i] = occupancy.Stat{Start: st.Start, Count: st.Count, Sum: st.Sum, Min: st.Min, Max: st.Max}
	}
	return out
}
