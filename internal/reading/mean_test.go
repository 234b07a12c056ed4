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

func TestSplitSum(t *testing.T) {
	const big = 1.7e308
	tests := []struct {
		name      string
		values    []float64
		lo, hi    float64
		sum, mean float64 // JoinSum and MeanSplit of the parts
	}{
		{"plain", []float64{1, 2, 3}, 1, 3, 6, 2},
		{"at the limit: the plain part", []float64{0x1p996, -0x1p996}, -0x1p996, 0x1p996, 0, 0},
		{"one huge value", []float64{big}, big, big, big, big},
		{"two huge values: the mean is exact", []float64{big, 1e308}, 1e308, big, math.MaxFloat64, 1.35e308},
		{"both signs cancel", []float64{big, -big, big, -big}, -big, big, 0, 0},
		{"mixed sizes", []float64{big, 4, -big, 6}, -big, big, 10, 2.5},
		{"many huge values of one sign", []float64{big, big, big, big, big}, big, big, math.MaxFloat64, big},
		{"both parts negative", []float64{-big, -big, -1}, -big, -1, -math.MaxFloat64, -(2*big + 1) / 3},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var sum, huge float64
			for _, v := range tc.values {
				s, h := reading.SplitSum(v)
				if s != 0 && h != 0 {
					t.Fatalf("SplitSum(%v) = %v, %v: both parts", v, s, h)
				}
				if math.Abs(h) >= 0x1p24 {
					t.Fatalf("SplitSum(%v) huge part %v not below 2^24", v, h)
				}
				sum, huge = sum+s, huge+h
			}
			if math.IsInf(sum, 0) || math.IsInf(huge, 0) {
				t.Fatalf("parts overflowed: %v, %v", sum, huge)
			}
			if got := reading.JoinSum(sum, huge); got != tc.sum {
				t.Errorf("JoinSum(%v, %v) = %v, want %v", sum, huge, got, tc.sum)
			}
			if got := reading.MeanSplit(sum, huge, int64(len(tc.values)), tc.lo, tc.hi); got != tc.mean {
				t.Errorf("MeanSplit(%v, %v, %d) = %v, want %v", sum, huge, len(tc.values), got, tc.mean)
			}
		})
	}
	t.Run("no values", func(t *testing.T) {
		if got := reading.MeanSplit(0, 0, 0, 0, 0); got != 0 {
			t.Errorf("MeanSplit of no values = %v", got)
		}
	})
	t.Run("the mean itself overflows: held to the bound", func(t *testing.T) {
		if got := reading.MeanSplit(0, math.MaxFloat64, 1, -1, math.MaxFloat64); got != math.MaxFloat64 {
			t.Errorf("MeanSplit = %v, want the max", got)
		}
	})
	t.Run("an old sum that overflowed to +Inf", func(t *testing.T) {
		if got := reading.JoinSum(math.Inf(1), 0); got != math.MaxFloat64 {
			t.Errorf("JoinSum(+Inf, 0) = %v", got)
		}
		if got := reading.MeanSplit(math.Inf(1), 0, 2, 1, big); got != big {
			t.Errorf("MeanSplit(+Inf, 0) = %v, want the max", got)
		}
	})
}
