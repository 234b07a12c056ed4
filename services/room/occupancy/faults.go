package occupancy

import (
	"math"
	"math/rand/v2"
	"time"
)

// Simulated co2 sensor faults, to train and cross-validate on a room whose co2
// sensor fails while its people do what they did. The training week's sensor is
// healthy, so a model fitted and chosen on it alone never learns when to
// distrust co2. The fault model comes from how NDIR co2 sensors fail, not from
// any test set:
//
//   - offset step: a recalibration (an automatic baseline correction, a power
//     cycle, a replaced or re-seated sensor) moves every later reading by
//     ±100–600 ppm, until the next step;
//   - drift: an ageing lamp or a soiled optical path moves the reading by
//     10–60 ppm per hour, up or down, for 2–12 hours; the offset reached stays;
//   - jitter: a failing lamp, a failing detector or an unstable supply scatters
//     each reading independently by a normal error of σ = 100–400 ppm, for
//     1–8 hours;
//   - stuck: the sensor's firmware hangs and repeats its last reading for
//     1–6 hours.
//
// Episodes start at random times, exponential gaps of mean FaultGap apart (the
// first one after such a gap), each of the four kinds with equal chance; offset
// steps and drifts add up. A reading never goes below 0 ppm. The labels are
// unchanged.
const FaultGap = 12 * time.Hour

// faultKind is one of the failure modes above.
type faultKind int

const (
	faultStep faultKind = iota
	faultDrift
	faultJitter
	faultStuck
)

// fault is one episode: from Start, for Length (steps last to the end).
type fault struct {
	kind          faultKind
	start, length time.Duration
	size          float64 // step: ppm; drift: ppm per hour; jitter: σ, ppm
}

// SimulateCO2Faults returns a copy of the samples whose co2 readings carry
// simulated sensor faults drawn with the seed (the same seed, the same faults).
func SimulateCO2Faults(samples []Sample, seed uint64) []Sample {
	out := make([]Sample, len(samples))
	copy(out, samples)
	if len(out) == 0 {
		return out
	}
	rng := rand.New(rand.NewPCG(seed, 0x0cc))
	span := out[len(out)-1].Time.Sub(out[0].Time)
	var faults []fault
	uniform := func(lo, hi float64) float64 { return lo + (hi-lo)*rng.Float64() }
	hours := func(lo, hi float64) time.Duration { return time.Duration(uniform(lo, hi) * float64(time.Hour)) }
	sign := func() float64 {
		if rng.IntN(2) == 0 {
			return -1
		}
		return 1
	}
	for at := time.Duration(0); ; {
		at += time.Duration(rng.ExpFloat64() * float64(FaultGap))
		if at > span {
			break
		}
		f := fault{kind: faultKind(rng.IntN(4)), start: at}
		switch f.kind {
		case faultStep:
			f.size, f.length = sign()*uniform(100, 600), span
		case faultDrift:
			f.size, f.length = sign()*uniform(10, 60), hours(2, 12)
		case faultJitter:
			f.size, f.length = uniform(100, 400), hours(1, 8)
		case faultStuck:
			f.length = hours(1, 6)
		}
		faults = append(faults, f)
	}
	t0 := out[0].Time
	for _, f := range faults {
		stuck := math.NaN()
		for k := range out {
			d := out[k].Time.Sub(t0)
			if d < f.start {
				continue
			}
			in := d < f.start+f.length
			switch f.kind {
			case faultStep:
				out[k].CO2 += f.size
			case faultDrift:
				out[k].CO2 += f.size * min(d-f.start, f.length).Hours()
			case faultJitter:
				if in {
					out[k].CO2 += f.size * rng.NormFloat64()
				}
			case faultStuck:
				if in {
					if math.IsNaN(stuck) {
						stuck = out[max(k-1, 0)].CO2
					}
					out[k].CO2 = stuck
				}
			}
		}
	}
	for k := range out {
		out[k].CO2 = math.Max(0, out[k].CO2)
	}
	return out
}
