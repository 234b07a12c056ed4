package reading_test

import (
	"math"
	"testing"

	"github.com/atrium-iot/atrium/internal/reading"
)

func TestMean(t *testing.T) {
	const big = 1.7e308
	tests := []struct {
		name         string
		sum          float64
		count        int64
		lo, hi, want float64
	}{
		{"plain", 6, 3, 1, 3, 2},
		{"single value", 21.5, 1, 21.5, 21.5, 21.5},
		{"no values", 0, 0, 0, 0, 0},
		{"sum overflowed up: the max", math.Inf(1), 2, big, big, big},
		{"sum overflowed down: the min", math.Inf(-1), 2, -big, -big, -big},
		{"both signs overflowed: the midpoint", math.NaN(), 4, -big, big, 0},
		{"NaN sum, huge bounds: the midpoint does not overflow", math.NaN(), 4, math.MaxFloat64, math.MaxFloat64, math.MaxFloat64},
		{"rounding above the max", 0.1 + 0.2, 3, 0.1, 0.1, 0.1},
		{"saturated sum below the true mean: held to the min", math.MaxFloat64, 10, big, big, big},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := reading.Mean(tc.sum, tc.count, tc.lo, tc.hi)
			if got != tc.want || math.IsNaN(got) || math.IsInf(got, 0) {
				t.Errorf("Mean(%v, %d, %v, %v) = %v, want %v", tc.sum, tc.count, tc.lo, tc.hi, got, tc.want)
			}
		})
	}
}

func TestAddSum(t *testing.T) {
	const big = 1.7e308
	tests := []struct {
		name         string
		sum, v, want float64
	}{
		{"plain", 1.5, 2, 3.5},
		{"saturates up", big, big, math.MaxFloat64},
		{"saturates down", -big, -big, -math.MaxFloat64},
		{"comes back from saturation", math.MaxFloat64, -math.MaxFloat64, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := reading.AddSum(tc.sum, tc.v); got != tc.want {
				t.Errorf("AddSum(%v, %v) = %v, want %v", tc.sum, tc.v, got, tc.want)
			}
		})
	}
}

func TestFinite(t *testing.T) {
	for _, f := range []float64{math.Inf(1), math.Inf(-1), math.NaN()} {
		if p := reading.Finite(f); p != nil {
			t.Errorf("Finite(%v) = %v, want nil", f, *p)
		}
	}
	if p := reading.Finite(-0.5); p == nil || *p != -0.5 {
		t.Errorf("Finite(-0.5) = %v, want -0.5", p)
	}
}
