package occupancy

import (
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"
	"time"
)

// CountSample is one row of the UCI Room Occupancy Estimation set: seven sensor
// nodes of one room (four with temperature, light and sound, one co2, two PIR)
// and how many people were in it.
type CountSample struct {
	Time               time.Time
	Temp, Light, Sound [4]float64
	CO2                float64
	PIR                [2]float64
	Count              int
}

// ReadRoomEstimation reads the UCI Room Occupancy Estimation CSV (Date,Time,
// S1_Temp…S4_Temp, S1_Light…S4_Light, S1_Sound…S4_Sound, S5_CO2, S5_CO2_Slope,
// S6_PIR, S7_PIR, Room_Occupancy_Count; dates as 2017/12/22 or 2017-12-22, local
// times read as UTC). The set's S5_CO2_Slope is not read: it is not known to
// use only the past.
func ReadRoomEstimation(r io.Reader) ([]CountSample, error) {
	var names []string
	for _, kind := range []string{"Temp", "Light", "Sound"} {
		for n := 1; n <= 4; n++ {
			names = append(names, fmt.Sprintf("S%d_%s", n, kind))
		}
	}
	names = append(names, "S5_CO2", "S6_PIR", "S7_PIR", "Room_Occupancy_Count")
	var out []CountSample
	err := readCSV(r, strings.TrimSpace, append([]string{"Date", "Time"}, names...), func(line int, rec []string, col map[string]int) error {
		date := strings.ReplaceAll(strings.TrimSpace(rec[col["Date"]]), "/", "-")
		ts, err := time.ParseInLocation("2006-01-02 15:04:05", date+" "+strings.TrimSpace(rec[col["Time"]]), time.UTC)
		if err != nil {
			ts, err = time.ParseInLocation("2006-01-02 3:04:05", date+" "+strings.TrimSpace(rec[col["Time"]]), time.UTC)
		}
		if err != nil {
			return err
		}
		v := make([]float64, len(names))
		for i, n := range names {
			if v[i], err = strconv.ParseFloat(strings.TrimSpace(rec[col[n]]), 64); err != nil {
				return fmt.Errorf("%s: %w", n, err)
			}
		}
		s := CountSample{Time: ts, CO2: v[12], PIR: [2]float64{v[13], v[14]}, Count: int(v[15])}
		copy(s.Temp[:], v[0:4])
		copy(s.Light[:], v[4:8])
		copy(s.Sound[:], v[8:12])
		out = append(out, s)
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// CountView is what a count model sees of a room.
type CountView string

const (
	// ByNode sees each node: the light at each desk, the loudest sound, both PIRs.
	ByNode CountView = "by-node"
	// ByType sees what the room service keeps: one series per type, the mean of
	// the room's sensors of that type (light, sound, temperature, co2, pir).
	ByType CountView = "by-type"
)

// countFeatures are the inputs of a count model, per view.
func countFeatures(v CountView) []string {
	common := []string{"co2_change_5m", "co2_change_15m", "temperature_change_15m"}
	if v == ByNode {
		return append([]string{"light_s1", "light_s2", "light_s3", "light_s4", "sound_max", "sound_mean", "pir_s6", "pir_s7"}, common...)
	}
	return append([]string{"light_mean", "sound_mean", "pir_mean"}, common...)
}

// countVectors computes the features of every sample from it and the samples
// before it (a change over d compares with the latest sample at least d older,
// or the oldest within d after a gap).
func countVectors(ss []CountSample, v CountView) [][]float64 {
	out := make([][]float64, len(ss))
	back := func(i int, d time.Duration) *CountSample {
		k := i
		for k > 0 && ss[i].Time.Sub(ss[k-1].Time) <= d {
			k--
		}
		if k > 0 && ss[i].Time.Sub(ss[k-1].Time) <= d+2*time.Minute {
			k--
		}
		return &ss[k]
	}
	mean := func(a []float64) float64 {
		var s float64
		for _, x := range a {
			s += x
		}
		return s / float64(len(a))
	}
	for i := range ss {
		s := &ss[i]
		b5, b15 := back(i, 5*time.Minute), back(i, 15*time.Minute)
		common := []float64{(s.CO2 - b5.CO2) / 10, (s.CO2 - b15.CO2) / 10, 10 * (mean(s.Temp[:]) - mean(b15.Temp[:]))}
		var x []float64
		if v == ByNode {
			x = []float64{s.Light[0] / 100, s.Light[1] / 100, s.Light[2] / 100, s.Light[3] / 100,
				math.Max(math.Max(s.Sound[0], s.Sound[1]), math.Max(s.Sound[2], s.Sound[3])), mean(s.Sound[:]), s.PIR[0], s.PIR[1]}
		} else {
			x = []float64{mean(s.Light[:]) / 100, mean(s.Sound[:]), mean(s.PIR[:])}
		}
		out[i] = append(x, common...)
	}
	return out
}

// CountModel estimates how many people are in a room (0 to len(AtLeast)) as an
// ordinal logistic model: AtLeast[k] is the probability of more than k people;
// the estimate is how many of them, from the first, say ≥ 0.5.
type CountModel struct {
	View    CountView
	AtLeast []*Logistic
}

// TrainCounts fits a count model on the samples.
func TrainCounts(ss []CountSample, v CountView, maxCount int) (*CountModel, error) {
	xs := countVectors(ss, v)
	m := &CountModel{View: v}
	for k := 1; k <= maxCount; k++ {
		ys := make([]float64, len(ss))
		for i := range ss {
			ys[i] = b2f(ss[i].Count >= k)
		}
		lm, err := fit(fmt.Sprintf("count>=%d", k), countFeatures(v), xs, ys)
		if err != nil {
			return nil, err
		}
		m.AtLeast = append(m.AtLeast, lm)
	}
	return m, nil
}

// Estimate is the estimated count of every sample.
func (m *CountModel) Estimate(ss []CountSample) []int {
	xs := countVectors(ss, m.View)
	out := make([]int, len(ss))
	for i, x := range xs {
		for _, lm := range m.AtLeast {
			if lm.prob(x) < 0.5 {
				break
			}
			out[i]++
		}
	}
	return out
}

// CountConfusion counts estimated against actual counts: [actual][estimated].
type CountConfusion [][]int

// JudgeCounts builds the confusion matrix of estimated against actual counts
// (both clamped to 0…maxCount).
func JudgeCounts(est []int, ss []CountSample, maxCount int) CountConfusion {
	c := make(CountConfusion, maxCount+1)
	for i := range c {
		c[i] = make([]int, maxCount+1)
	}
	for i, s := range ss {
		c[min(max(s.Count, 0), maxCount)][min(max(est[i], 0), maxCount)]++
	}
	return c
}

// Accuracy is the share of samples whose count was estimated exactly;
// Occupied the share whose "anyone there" was right.
func (c CountConfusion) Accuracy() (exact, occupied float64) {
	var n, right, occ int
	for a := range c {
		for e, k := range c[a] {
			n += k
			if a == e {
				right += k
			}
			if (a > 0) == (e > 0) {
				occ += k
			}
		}
	}
	return ratio(right, n), ratio(occ, n)
}
