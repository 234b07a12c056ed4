package room

import (
	"fmt"
	"time"

	"github.com/atrium-iot/atrium/internal/reading"
)

// Span is the part of a history query one rollup tier answers: the rollups of
// tier Tier (an index into the periods) starting in [From, To), Unix ms.
type Span struct {
	Tier     int
	From, To int64
}

// HistorySpans splits [from, to) over rollup tiers of the given periods (finest
// first) for buckets of size bucket: the start of the range is read from the
// coarsest tier whose period divides bucket, the end that does not fill a
// rollup of that tier from the finer tiers. Spans come in time order; empty
// ones are left out.
func HistorySpans(periods []time.Duration, bucket time.Duration, from, to time.Time) []Span {
	top := 0
	for i, p := range periods {
		if bucket.Milliseconds()%p.Milliseconds() == 0 {
			top = i
		}
	}
	var out []Span
	lo, end := from.UnixMilli(), to.UnixMilli()
	for i := top; i >= 0; i-- {
		hi := end
		if i > 0 {
			hi = max(lo, BucketStart(end, periods[i]))
		}
		if lo < hi {
			out = append(out, Span{i, lo, hi})
		}
		lo = hi
	}
	return out
}

// Merger folds rollups of one type, given in time order, into buckets of
// Size aligned on the epoch, at most Limit of them.
type Merger struct {
	Size  time.Duration
	Limit int
	Type  string

	out  []Stat
	cur  int64 // start of the last bucket in out, Unix ms
	full bool
}

// Add merges a rollup starting at start (Unix ms). It returns false, and
// Full turns true, once Limit buckets are there and the rollup would start
// another.
func (m *Merger) Add(start int64, a Agg) bool {
	b := BucketStart(start, m.Size)
	if len(m.out) == 0 || b != m.cur {
		if len(m.out) >= m.Limit {
			m.full = true
			return false
		}
		m.out = append(m.out, Stat{Type: m.Type, Start: time.UnixMilli(b).UTC(), Count: a.N, Sum: a.Sum, Min: a.Min, Max: a.Max})
		m.cur = b
		return true
	}
	st := &m.out[len(m.out)-1]
	st.Count += a.N
	st.Sum = reading.AddSum(st.Sum, a.Sum)
	st.Min = min(st.Min, a.Min)
	st.Max = max(st.Max, a.Max)
	return true
}

// Full reports whether a rollup was refused for want of room.
func (m *Merger) Full() bool { return m.full }

// Stats returns the buckets merged so far, in time order.
func (m *Merger) Stats() []Stat { return m.out }

// History answers q for a store whose rollup tiers have the given periods
// (finest first): q.Bucket must be a whole number of minutes and q.Limit
// defaults to 100. scan feeds m the rollups of one span (see HistorySpans), in
// time order, until m is full; its errors are returned as they are.
func History(q HistoryQuery, periods []time.Duration, scan func(sp Span, m *Merger) error) ([]Stat, error) {
	size := q.Bucket.Milliseconds()
	if size < 60_000 || size%60_000 != 0 {
		return nil, fmt.Errorf("bucket %s is not a whole number of minutes", q.Bucket)
	}
	if q.Limit <= 0 {
		q.Limit = 100
	}
	m := &Merger{Size: q.Bucket, Limit: q.Limit, Type: q.Type}
	for _, sp := range HistorySpans(periods, q.Bucket, q.From, q.To) {
		if m.Full() {
			break
		}
		if err := scan(sp, m); err != nil {
			return nil, err
		}
	}
	return m.Stats(), nil
}
