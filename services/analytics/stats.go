package analytics

import (
	"math"
	"time"
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
// mean of its bucket means.
func Overall(bs []Bucket) (count int64, mean float64, ok bool) {
	sum := 0.0
	for _, b := range bs {
		count += b.Count
		sum += b.Mean * float64(b.Count)
	}
	if count == 0 {
		return 0, 0, false
	}
	return count, sum / float64(count), true
}

// SlopePerHour is the least-squares slope of the bucket means against the bucket
// start times, in units per hour; ok is false with fewer than two buckets.
func SlopePerHour(bs []Bucket) (slope float64, ok bool) {
	if len(bs) < 2 {
		return 0, false
	}
	t0 := bs[0].Start
	var sx, sy float64
	for _, b := range bs {
		sx += b.Start.Sub(t0).Hours()
		sy += b.Mean
	}
	n := float64(len(bs))
	mx, my := sx/n, sy/n
	var sxy, sxx float64
	for _, b := range bs {
		dx := b.Start.Sub(t0).Hours() - mx
		sxy += dx * (b.Mean - my)
		sxx += dx * dx
	}
	if sxx == 0 {
		return 0, false
	}
	return sxy / sxx, true
}

// Anomalies lists the buckets whose mean has |z| > AnomalyZ, z taken against the
// mean and the population standard deviation of the bucket means. With n buckets
// no |z| can exceed (n-1)/√n, so fewer than 11 buckets never show an anomaly.
func Anomalies(bs []Bucket) []Anomaly {
	out := []Anomaly{}
	if len(bs) < 3 {
		return out
	}
	n := float64(len(bs))
	mean := 0.0
	for _, b := range bs {
		mean += b.Mean
	}
	mean /= n
	ss := 0.0
	for _, b := range bs {
		ss += (b.Mean - mean) * (b.Mean - mean)
	}
	sd := math.Sqrt(ss / n)
	if sd == 0 {
		return out
	}
	for _, b := range bs {
		if z := (b.Mean - mean) / sd; math.Abs(z) > AnomalyZ {
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
	abs := cm - pm
	c.Absolute = &abs
	if pm != 0 {
		pct := abs / math.Abs(pm) * 100
		c.Percent = &pct
	}
	return c
}
