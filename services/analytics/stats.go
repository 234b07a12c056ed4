package analytics

import (
	"math"
	"time"

	"github.com/atrium-iot/atrium/internal/reading"
)

// AnomalyZ is the |z| above which a bucket is an anomaly.
const AnomalyZ = 3.0

// Anomaly is a bucket whose mean lies more than AnomalyZ standard deviations from
// the mean of the bucket means.
type Anomaly struct {
	Start time.Time `json:"start"`
	Mean  float64   `json:"mean"`
	Z     float64   `json:"z"`
}

// Change compares a period's mean with the previous period of the same length.
type Change struct {
	PreviousMean *float64 `json:"previous_mean"`
	Absolute     *float64 `json:"absolute"`
	Percent      *float64 `json:"percent"`
}

// Overall is the count and mean of every reading of a series: the count-weighted
// mean of its bucket means. Each mean is weighted before it is added, so the sum
// never overflows, and the result is held within the bucket means.
func Overall(bs []Bucket) (count int64, mean float64, ok bool) {
	for _, b := range bs {
		count += b.Count
	}
	if count == 0 {
		return 0, 0, false
	}
	lo, hi := math.Inf(1), math.Inf(-1)
	for _, b := range bs {
		if b.Count == 0 {
			continue
		}
		mean += b.Mean * (float64(b.Count) / float64(count))
		lo, hi = min(lo, b.Mean), max(hi, b.Mean)
	}
	return count, reading.Mean(mean, 1, lo, hi), true
}

// scaled returns the bucket means divided by the largest of their magnitudes,
// and that magnitude: statistics of the scaled means (within ±1) cannot
// overflow however large the means are.
func scaled(bs []Bucket) (ys []float64, scale float64) {
	for _, b := range bs {
		scale = max(scale, math.Abs(b.Mean))
	}
	ys = make([]float64, len(bs))
	for i, b := range bs {
		if scale > 0 {
			ys[i] = b.Mean / scale
		}
	}
	return ys, scale
}

// SlopePerHour is the least-squares slope of the bucket means against the bucket
// start times, in units per hour; ok is false with fewer than two buckets, or
// when the slope is too large to represent.
func SlopePerHour(bs []Bucket) (slope float64, ok bool) {
	if len(bs) < 2 {
		return 0, false
	}
	ys, scale := scaled(bs)
	t0 := bs[0].Start
	var sx, sy float64
	for i, b := range bs {
		sx += b.Start.Sub(t0).Hours()
		sy += ys[i]
	}
	n := float64(len(bs))
	mx, my := sx/n, sy/n
	var sxy, sxx float64
	for i, b := range bs {
		dx := b.Start.Sub(t0).Hours() - mx
		sxy += dx * (ys[i] - my)
		sxx += dx * dx
	}
	if sxx == 0 {
		return 0, false
	}
	slope = sxy / sxx * scale
	return slope, reading.Finite(slope) != nil
}

// Anomalies lists the buckets whose mean has |z| > AnomalyZ, z taken against the
// mean and the population standard deviation of the bucket means. With n buckets
// no |z| can exceed (n-1)/√n, so fewer than 11 buckets never show an anomaly.
// z does not change when every mean is scaled, so it is computed on scaled means.
func Anomalies(bs []Bucket) []Anomaly {
	out := []Anomaly{}
	if len(bs) < 3 {
		return out
	}
	ys, _ := scaled(bs)
	n := float64(len(bs))
	mean := 0.0
	for _, y := range ys {
		mean += y
	}
	mean /= n
	ss := 0.0
	for _, y := range ys {
		ss += (y - mean) * (y - mean)
	}
	sd := math.Sqrt(ss / n)
	if sd == 0 {
		return out
	}
	for i, b := range bs {
		if z := (ys[i] - mean) / sd; math.Abs(z) > AnomalyZ {
			out = append(out, Anomaly{Start: b.Start, Mean: b.Mean, Z: z})
		}
	}
	return out
}

// Compare is the change of cur's mean against prev's.
func Compare(cur, prev []Bucket) Change {
	var c Change
	_, pm, pok := Overall(prev)
	if !pok {
		return c
	}
	c.PreviousMean = &pm
	_, cm, cok := Overall(cur)
	if !cok {
		return c
	}
	// Each figure is nil when it is too large to represent. When the difference
	// of the means overflows, the percentage is taken from their ratio.
	abs := cm - pm
	c.Absolute = reading.Finite(abs)
	if pm != 0 {
		pct := abs / math.Abs(pm) * 100
		if c.Absolute == nil {
			pct = (cm/math.Abs(pm) - math.Copysign(1, pm)) * 100
		}
		c.Percent = reading.Finite(pct)
	}
	return c
}
