package reading

import "math"

// Mean is the mean of count values whose sum is sum, the lowest lo and the
// highest hi. A mean of finite values lies within [lo, hi], and so does this
// one: a sum that overflowed to ±Inf gives the nearer bound, a NaN sum (both
// signs overflowed) the midpoint, and a rounded quotient just outside the
// bounds is held to them. No values (count 0) have a mean of 0.
func Mean(sum float64, count int64, lo, hi float64) float64 {
	if count <= 0 {
		return 0
	}
	m := sum / float64(count)
	if math.IsNaN(m) {
		return lo/2 + hi/2
	}
	return min(max(m, lo), hi)
}

// AddSum is sum + v held within ±math.MaxFloat64: a running sum of finite
// values that saturates instead of overflowing, so that it never turns into an
// infinity that a later value of the other sign would make NaN. Combined with
// Mean it keeps means of huge values finite and within their bounds.
func AddSum(sum, v float64) float64 {
	return min(max(sum+v, -math.MaxFloat64), math.MaxFloat64)
}

// Finite returns a pointer to f, or nil when f is NaN or infinite: a figure
// derived from readings that cannot be represented is reported as absent
// (null in JSON) rather than failing the whole answer.
func Finite(f float64) *float64 {
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return nil
	}
	return &f
}

// SplitSum moves values above hugeLimit in magnitude to the huge part, scaled
// by hugeScale: a power of two, so scaling is exact, and a scaled value is
// below 2^24 in magnitude.
const (
	hugeLimit = 0x1p996
	hugeScale = 0x1p-1000
)

// SplitSum splits v into the parts it adds to a sum kept as two, sum + huge·2^1000,
// for a store that must add to sums without reading them first and refuses an
// infinite result (FerretDB's $inc): a value of at most 2^996 in magnitude is
// added to sum, a larger one, scaled by 2^-1000, to huge. Neither overflows:
// sum only after more than 2^28 (2.7e8) values, huge never (each adds less than
// 2^24). Stored sums without a huge part read as huge = 0.
func SplitSum(v float64) (sum, huge float64) {
	if math.Abs(v) <= hugeLimit {
		return v, 0
	}
	return 0, v * hugeScale
}

// JoinSum is the sum that SplitSum's parts stand for, held within
// ±math.MaxFloat64 like AddSum's.
func JoinSum(sum, huge float64) float64 {
	return AddSum(sum, huge/hugeScale)
}

// MeanSplit is Mean of count values whose sum is sum + huge·2^1000 (SplitSum),
// computed as sum/count + (huge/count)·2^1000 so that it stays exact where the
// whole sum overflows; a mean that still overflows is held to lo or hi.
func MeanSplit(sum, huge float64, count int64, lo, hi float64) float64 {
	if count <= 0 {
		return 0
	}
	n := float64(count)
	return Mean(sum/n+(huge/n)/hugeScale, 1, lo, hi)
}
