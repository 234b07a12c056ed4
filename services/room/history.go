package room

import "time"

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
	st.Sum += a.Sum
	st.Min = min(st.Min, a.Min)
	st.Max = max(st.Max, a.Max)
	return true
}

// Full reports whether a rollup was refused for want of room.
func (m *Merger) Full() bool { return m.full }

// Stats returns the buckets merged so far, in time order.
func (m *Merger) Stats() []Stat { return m.out }
