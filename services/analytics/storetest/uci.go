package storetest

import (
	"errors"
	"io"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/atrium-iot/atrium/firmware-sim/replay"
	"github.com/atrium-iot/atrium/firmware-sim/replay/replaytest"
	"github.com/atrium-iot/atrium/internal/reading"
	"github.com/atrium-iot/atrium/services/analytics"
)

// UCI is two recorded data sets (excerpts of the UCI Occupancy Detection and Room
// Occupancy Estimation sets, shipped with the simulator) as readings, with the
// figures expected of them computed here straight from the CSV files, by a reader
// independent of the replay package that makes the readings.
type UCI struct {
	Readings []reading.Reading
	// First and Last are the earliest and latest timestamps.
	First, Last time.Time
	// Rooms holds the expected figures per room (uci-od-room, uci-roe-room).
	Rooms map[string]*UCIRoom
}

// UCIRoom is what the CSV says about one room.
type UCIRoom struct {
	// Minutes holds per type the readings of each minute (Unix minute → values).
	Minutes map[string]map[int64][]float64
}

// Stat is the count, min, mean and max of a type's values in [from, to).
func (r *UCIRoom) Stat(typ string, from, to time.Time) analytics.TypeStat {
	st := analytics.TypeStat{Type: typ, Min: math.Inf(1), Max: math.Inf(-1)}
	sum := 0.0
	for m, vs := range r.Minutes[typ] {
		if m < analytics.Minute(from) || m >= analytics.Minute(to) {
			continue
		}
		for _, v := range vs {
			st.Count++
			sum += v
			st.Min, st.Max = math.Min(st.Min, v), math.Max(st.Max, v)
		}
	}
	st.Mean = sum / float64(st.Count)
	return st
}

// MinuteMeans is a type's mean per minute, by minute.
func (r *UCIRoom) MinuteMeans(typ string) (minutes []int64, means []float64) {
	for m := range r.Minutes[typ] {
		minutes = append(minutes, m)
	}
	sort.Slice(minutes, func(i, j int) bool { return minutes[i] < minutes[j] })
	for _, m := range minutes {
		vs := r.Minutes[typ][m]
		s := 0.0
		for _, v := range vs {
			s += v
		}
		means = append(means, s/float64(len(vs)))
	}
	return minutes, means
}

// Figures are the room's report figures, computed from the minute means.
func (r *UCIRoom) Figures(room string) analytics.RoomFigures {
	f := analytics.RoomFigures{RoomID: room}
	temp, hum := map[int64]float64{}, map[int64]float64{}
	ms, vs := r.MinuteMeans("temperature")
	for i, m := range ms {
		temp[m] = vs[i]
	}
	ms, vs = r.MinuteMeans("humidity")
	for i, m := range ms {
		hum[m] = vs[i]
	}
	seen := map[int64]bool{}
	for m := range temp {
		seen[m] = true
	}
	for m := range hum {
		seen[m] = true
	}
	for m := range seen {
		f.ComfortMinutes++
		t, tok := temp[m]
		h, hok := hum[m]
		if (!tok || t >= analytics.ComfortTempMin && t <= analytics.ComfortTempMax) && (!hok || h >= analytics.ComfortHumidityMin && h <= analytics.ComfortHumidityMax) {
			f.CompliantMinutes++
		}
	}
	_, vs = r.MinuteMeans("co2")
	for _, v := range vs {
		f.CO2Minutes++
		if v >= analytics.PoorAirCO2 {
			f.PoorAirMinutes++
		}
	}
	if _, ok := r.Minutes["occupancy"]; ok {
		f.OccupancyType = "occupancy"
		_, vs = r.MinuteMeans("occupancy")
		s := 0.0
		for _, v := range vs {
			f.OccupancyMinutes++
			if v > 0 {
				f.OccupiedMinutes++
			}
			s += v
		}
		f.MeanOccupancy = s / float64(len(vs))
	}
	return f
}

// repoFile finds a file by its path from the module root, walking up from the
// test's directory.
func repoFile(t testing.TB, rel string) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return filepath.Join(dir, rel)
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatalf("no go.mod above the test directory to find %s", rel)
		}
		dir = parent
	}
}

// LoadUCI reads the two UCI excerpts of the simulator's test data.
func LoadUCI(t testing.TB) *UCI {
	t.Helper()
	u := &UCI{Rooms: map[string]*UCIRoom{}}
	od := repoFile(t, "firmware-sim/testdata/uci_occupancy_detection.txt")
	roe := repoFile(t, "firmware-sim/testdata/uci_room_occupancy_estimation.csv")
	for _, path := range []string{od, roe} {
		u.Readings = append(u.Readings, replayFile(t, path)...)
	}
	for _, r := range u.Readings {
		if u.First.IsZero() || r.Timestamp.Before(u.First) {
			u.First = r.Timestamp
		}
		if r.Timestamp.After(u.Last) {
			u.Last = r.Timestamp
		}
	}
	// The expectations, from the CSV cells themselves.
	add := func(room, typ string, ts time.Time, cell string) {
		v, err := strconv.ParseFloat(strings.TrimSpace(cell), 64)
		if err != nil {
			t.Fatalf("%s: cell %q: %v", room, cell, err)
		}
		r := u.Rooms[room]
		if r == nil {
			r = &UCIRoom{Minutes: map[string]map[int64][]float64{}}
			u.Rooms[room] = r
		}
		if r.Minutes[typ] == nil {
			r.Minutes[typ] = map[int64][]float64{}
		}
		m := analytics.Minute(ts)
		r.Minutes[typ][m] = append(r.Minutes[typ][m], v)
	}
	for i, row := range replaytest.Records(t, od)[1:] {
		// "index","date",Temperature,Humidity,Light,CO2,HumidityRatio,Occupancy
		ts, err := time.Parse("2006-01-02 15:04:05", row[1])
		if err != nil {
			t.Fatalf("%s row %d: %v", od, i, err)
		}
		add("uci-od-room", "temperature", ts, row[2])
		add("uci-od-room", "humidity", ts, row[3])
		add("uci-od-room", "co2", ts, row[5])
		add("uci-od-room", "occupancy", ts, row[7])
	}
	for i, row := range replaytest.Records(t, roe)[1:] {
		// Date,Time,S1..S4_Temp,S1..S4_Light,S1..S4_Sound,S5_CO2,S5_CO2_Slope,S6_PIR,S7_PIR,Room_Occupancy_Count
		ts, err := time.Parse("2006/01/02 15:04:05", row[0]+" "+row[1])
		if err != nil {
			t.Fatalf("%s row %d: %v", roe, i, err)
		}
		for c := 2; c <= 5; c++ {
			add("uci-roe-room", "temperature", ts, row[c])
		}
		add("uci-roe-room", "co2", ts, row[14])
		add("uci-roe-room", "occupancy", ts, row[18])
	}
	return u
}

func replayFile(t testing.TB, path string) []reading.Reading {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	rr, err := replay.NewReader(f)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	var out []reading.Reading
	for {
		round, err := rr.Next()
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		for _, fr := range round.Frames {
			for _, m := range fr.Metrics {
				out = append(out, reading.Reading{SensorID: fr.SensorID, RoomID: fr.RoomID, Type: m.Type, Value: m.Value, Unit: m.Unit, Timestamp: round.Time})
			}
		}
	}
}

func testReplayUCI(t *testing.T, h *harness) {
	u := LoadUCI(t)
	// Add in batches of 100, and the first batch twice (a redelivery).
	total := 0
	for i := 0; i < len(u.Readings); i += 100 {
		total += h.add(u.Readings[i:min(i+100, len(u.Readings))]...)
	}
	if n := h.add(u.Readings[:100]...); n != 0 {
		t.Errorf("redelivered batch added %d readings", n)
	}
	if total != len(u.Readings) {
		t.Errorf("added %d readings, want %d", total, len(u.Readings))
	}
	from := u.First.Truncate(time.Hour)
	to := u.Last.Truncate(time.Minute).Add(time.Minute)
	for room, exp := range u.Rooms {
		t.Run(room, func(t *testing.T) {
			got, err := h.S.RoomFigures(t.Context(), room, from, to)
			if err != nil {
				t.Fatal(err)
			}
			want := exp.Figures(room)
			byType := map[string]analytics.TypeStat{}
			for _, st := range got.Types {
				byType[st.Type] = st
			}
			for typ := range exp.Minutes {
				checkStats(t, "type "+typ, []analytics.TypeStat{byType[typ]}, []analytics.TypeStat{exp.Stat(typ, from, to)})
			}
			if got.ComfortMinutes != want.ComfortMinutes || got.CompliantMinutes != want.CompliantMinutes ||
				got.CO2Minutes != want.CO2Minutes || got.PoorAirMinutes != want.PoorAirMinutes ||
				got.OccupancyType != want.OccupancyType || got.OccupancyMinutes != want.OccupancyMinutes ||
				got.OccupiedMinutes != want.OccupiedMinutes || !near(got.MeanOccupancy, want.MeanOccupancy) {
				t.Errorf("RoomFigures = %+v\nwant %+v", got, want)
			}
			if want.ComfortMinutes == 0 || want.CO2Minutes == 0 || want.OccupancyMinutes == 0 {
				t.Errorf("the data set gives nothing to check: %+v", want)
			}
			// The per-minute temperature series.
			series, err := h.S.Series(t.Context(), analytics.SeriesQuery{RoomID: room, Type: "temperature", From: from, To: to, Bucket: time.Minute})
			if err != nil {
				t.Fatal(err)
			}
			minutes, means := exp.MinuteMeans("temperature")
			var wantSeries []analytics.Bucket
			for i, m := range minutes {
				vs := exp.Minutes["temperature"][m]
				b := analytics.Bucket{Start: time.Unix(m*60, 0).UTC(), Count: int64(len(vs)), Mean: means[i], Min: math.Inf(1), Max: math.Inf(-1)}
				for _, v := range vs {
					b.Min, b.Max = math.Min(b.Min, v), math.Max(b.Max, v)
				}
				wantSeries = append(wantSeries, b)
			}
			checkBuckets(t, "temperature by minute", series, wantSeries)
		})
	}
}
