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
