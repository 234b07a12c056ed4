package e2e

import (
	"errors"
	"fmt"
	"math"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/atrium-iot/atrium/firmware-sim/replay/replaytest"
	"github.com/atrium-iot/atrium/internal/reading"
)

// TestReplay replays recorded data sets at full speed and checks that the cloud
// stores exactly the valid readings of the file, with the same per-type count, min,
// mean and max as the test computes from the CSV on its own. The recorded times are
// years old; the cloud accepts any past timestamp (only the future is bounded).
//
// Column mapping, as firmware-sim/replay documents it (times without a zone are UTC):
//
//	UCI Occupancy Detection ("date",Temperature,Humidity,Light,CO2,HumidityRatio,Occupancy;
//	data rows led by an unnamed row index), room uci-od-room:
//	  uci-od-s1        temperature ← Temperature, humidity ← Humidity, light ← Light,
//	                   co2 ← CO2, humidity_ratio ← HumidityRatio
//	  uci-od-occupancy occupancy ← Occupancy
//	UCI Room Occupancy Estimation (Date,Time,S1_Temp…,Room_Occupancy_Count), room uci-roe-room:
//	  uci-roe-s1…s4    temperature ← Si_Temp, light ← Si_Light, sound ← Si_Sound
//	  uci-roe-s5       co2 ← S5_CO2, co2_slope ← S5_CO2_Slope
//	  uci-roe-s6, -s7  pir ← S6_PIR, S7_PIR
//	  uci-roe-occupancy occupancy ← Room_Occupancy_Count
//	Generic: one reading per line (timestamp,sensor_id,room_id,type,value[,unit]);
//	  timestamp RFC 3339, Unix s, or Unix ms (≥ 1e11).
//
// A blank or non-numeric cell gives no reading; a row with an unreadable time or
// invalid ids gives none. The readings of one sensor at one instant travel as one
// message, which the agent takes or dead-letters whole: a reading outside the
// plausible range of reading.Known takes its companions with it. An identity
// (sensor, type, timestamp) already seen is a duplicate, not stored again.
func TestReplay(t *testing.T) {
	skipShort(t)
	for _, c := range []struct {
		file   string
		parse  func(t *testing.T, path string) []csvReading
		minLen int // a floor on the readings the file must give, so the test cannot pass empty
	}{
		{"uci_occupancy_detection.txt", parseUCIOccupancy, 700},
		{"uci_occupancy_detection_unquoted.txt", parseUCIOccupancy, 150},
		{"uci_room_occupancy_estimation.csv", parseUCIEstimation, 2000},
		{"uci_room_occupancy_estimation_blanked.csv", parseUCIEstimation, 1500},
		{"generic.csv", parseGeneric, 7},
	} {
		t.Run(c.file, func(t *testing.T) {
			path, err := filepath.Abs(filepath.Join("..", "firmware-sim", "testdata", c.file))
			if err != nil {
				t.Fatal(err)
			}
			want := expectedStored(c.parse(t, path))
			if len(want) < c.minLen {
				t.Fatalf("%s gives %d readings, expected at least %d: the test's parser is off", c.file, len(want), c.minLen)
			}

			st := startStack(t)
			sum := st.runSim(t, "-replay", path, "-speed", "max")
			st.settle(t)
			got := readAll(t, st.sensor.url, 1000)
			t.Logf("%s: %d rounds, %d messages, %d readings stored (expect %+v), elapsed %s",
				c.file, sum.Rounds, sum.Messages.Published, len(got), sum.Expect, sum.Elapsed)
			if sum.Messages.Failed != 0 {
				t.Errorf("simulator failed to publish %d messages", sum.Messages.Failed)
			}

			if len(got) != len(want) {
				t.Errorf("stored %d readings, the file has %d valid ones", len(got), len(want))
			}
			if sum.Expect.Stored != len(want) {
				t.Errorf("simulator expects %d stored, the file has %d valid readings", sum.Expect.Stored, len(want))
			}
			gotStats, wantStats := statsByType(storedValues(got)), statsByType(want)
			for _, typ := range slices.Sorted(mapKeys(wantStats, gotStats)) {
				g, w := gotStats[typ], wantStats[typ]
				if g.n != w.n || g.min != w.min || g.max != w.max || !closeTo(g.mean(), w.mean()) {
					t.Errorf("type %s: stored n=%d min=%g mean=%.12g max=%g; file n=%d min=%g mean=%.12g max=%g",
						typ, g.n, g.min, g.mean(), g.max, w.n, w.min, w.mean(), w.max)
				}
			}
			// Reading by reading: same identity, room and value, nothing else.
			byID := map[identity]csvReading{}
			for _, r := range want {
				byID[r.id()] = r
			}
			wrong := 0
			for _, r := range got {
				w, ok := byID[storedID(r)]
				if !ok || w.room != r.RoomID || w.value != r.Value || r.Site != "e2e" {
					if wrong++; wrong <= 5 {
						t.Errorf("stored %+v (room %s, value %g, site %s) is not in the file as such (%+v)", storedID(r), r.RoomID, r.Value, r.Site, w)
					}
				}
				delete(byID, storedID(r))
			}
			for id := range byID {
				if wrong++; wrong <= 10 {
					t.Errorf("reading %+v of the file not stored", id)
				}
			}
		})
	}
}

// csvReading is one reading the test reads from a file.
type csvReading struct {
	sensor, room, typ string
	value             float64
	t                 time.Time
	// frame groups the readings the simulator sends in one message: the same
	// sensor, room and instant within one round of the file.
	frame string
}

func (r csvReading) id() identity { return identity{r.sensor, r.typ, r.t.UnixMilli()} }

// expectedStored applies the agent's per-message rule and the cloud's identity rule:
// drop every frame that holds an implausible reading, then keep the first of each identity.
func expectedStored(rs []csvReading) []csvReading {
	badFrame := map[string]bool{}
	for _, r := range rs {
		if !inRange(r.typ, r.value) {
			badFrame[r.frame] = true
		}
	}
	seen := map[identity]bool{}
	var out []csvReading
	for _, r := range rs {
		if badFrame[r.frame] || seen[r.id()] {
			continue
		}
		seen[r.id()] = true
		out = append(out, r)
	}
	return out
}

// readCSV returns the header (lower case, trimmed) and the records of a file.
func readCSV(t *testing.T, path string) ([]string, [][]string) {
	t.Helper()
	recs := replaytest.Records(t, path)
	if len(recs) < 2 {
		t.Fatalf("%s: no data rows", path)
	}
	head := make([]string, len(recs[0]))
	for i, h := range recs[0] {
		head[i] = strings.ToLower(strings.TrimSpace(h))
	}
	return head, recs[1:]
}

// cellNumber reads a value cell; ok is false for a blank or non-numeric one.
func cellNumber(s string) (float64, bool) {
	s = strings.TrimSpace(s)
	if s == "" {
		return 0, false
	}
	v, err := strconv.ParseFloat(s, 64)
	if err != nil || math.IsNaN(v) || math.IsInf(v, 0) {
		return 0, false
	}
	return v, true
}

func parseUTC(t *testing.T, s string) time.Time {
	t.Helper()
	s = strings.TrimSpace(strings.ReplaceAll(s, "/", "-"))
	ts, err := time.ParseInLocation(time.DateTime, s, time.UTC)
	if err != nil {
		t.Fatalf("time %q: %v", s, err)
	}
	return ts
}

func column(t *testing.T, head []string, name string) int {
	t.Helper()
	i := slices.Index(head, strings.ToLower(name))
	if i < 0 {
		t.Fatalf("no column %s in %v", name, head)
	}
	return i
}

func parseUCIOccupancy(t *testing.T, path string) []csvReading {
	t.Helper()
	head, recs := readCSV(t, path)
	for i, rec := range recs {
		if len(rec) == len(head)+1 { // the row index the header does not name
			recs[i] = rec[1:]
		}
	}
	cols := []uciColumn{
		{"Temperature", "uci-od-s1", "temperature"}, {"Humidity", "uci-od-s1", "humidity"},
		{"Light", "uci-od-s1", "light"}, {"CO2", "uci-od-s1", "co2"},
		{"HumidityRatio", "uci-od-s1", "humidity_ratio"}, {"Occupancy", "uci-od-occupancy", "occupancy"},
	}
	return uciReadings(t, path, head, recs, "uci-od-room", cols, func(cell func(string) string) time.Time {
		return parseUTC(t, cell("date"))
	})
}

func parseUCIEstimation(t *testing.T, path string) []csvReading {
	t.Helper()
	head, recs := readCSV(t, path)
	var cols []uciColumn
	for i := 1; i <= 4; i++ {
		s := fmt.Sprintf("uci-roe-s%d", i)
		cols = append(cols, uciColumn{fmt.Sprintf("S%d_Temp", i), s, "temperature"}, uciColumn{fmt.Sprintf("S%d_Light", i), s, "light"}, uciColumn{fmt.Sprintf("S%d_Sound", i), s, "sound"})
	}
	cols = append(cols, uciColumn{"S5_CO2", "uci-roe-s5", "co2"}, uciColumn{"S5_CO2_Slope", "uci-roe-s5", "co2_slope"},
		uciColumn{"S6_PIR", "uci-roe-s6", "pir"}, uciColumn{"S7_PIR", "uci-roe-s7", "pir"},
		uciColumn{"Room_Occupancy_Count", "uci-roe-occupancy", "occupancy"})
	return uciReadings(t, path, head, recs, "uci-roe-room", cols, func(cell func(string) string) time.Time {
		return parseUTC(t, cell("Date")+" "+cell("Time"))
	})
}

// uciColumn is a column of a UCI file and the sensor and type its values are.
type uciColumn struct{ col, sensor, typ string }

// uciReadings are the readings of room in a UCI file's rows: one per numeric cell of
// cols, at the time when reads from the row's cells.
func uciReadings(t *testing.T, path string, head []string, recs [][]string, room string, cols []uciColumn, when func(cell func(col string) string) time.Time) []csvReading {
	t.Helper()
	var out []csvReading
	for n, rec := range recs {
		if len(rec) != len(head) {
			t.Fatalf("%s row %d: %d cells, header has %d", path, n+2, len(rec), len(head))
		}
		ts := when(func(col string) string { return rec[column(t, head, col)] })
		for _, c := range cols {
			if v, ok := cellNumber(rec[column(t, head, c.col)]); ok {
				out = append(out, csvReading{c.sensor, room, c.typ, v, ts, fmt.Sprintf("%d/%s", n, c.sensor)})
			}
		}
	}
	return out
}

func parseGeneric(t *testing.T, path string) []csvReading {
	t.Helper()
	head, recs := readCSV(t, path)
	cTime, cSensor, cRoom, cType, cValue := column(t, head, "timestamp"), column(t, head, "sensor_id"), column(t, head, "room_id"), column(t, head, "type"), column(t, head, "value")
	var out []csvReading
	round, last := 0, time.Time{}
	for _, rec := range recs {
		if len(rec) < len(head) {
			continue
		}
		ts, err := genericTime(rec[cTime])
		sensor, room, typ := strings.TrimSpace(rec[cSensor]), strings.TrimSpace(rec[cRoom]), strings.TrimSpace(rec[cType])
		if err != nil || !reading.ValidID(sensor) || !reading.ValidID(room) || !reading.ValidType(typ) {
			continue
		}
		v, ok := cellNumber(rec[cValue])
		if !ok {
			continue
		}
		if !ts.Equal(last) { // consecutive lines of one instant are one round
			round++
			last = ts
		}
		out = append(out, csvReading{sensor, room, typ, v, ts, fmt.Sprintf("%d/%s/%s", round, sensor, room)})
	}
	return out
}

func genericTime(s string) (time.Time, error) {
	s = strings.TrimSpace(s)
	if ts, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return ts.UTC(), nil
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil || f < 0 {
		return time.Time{}, errors.New("not a time")
	}
	if f >= 1e11 {
		return time.UnixMilli(int64(f)).UTC(), nil
	}
	return time.UnixMilli(int64(math.Round(f * 1000))).UTC(), nil
}

// typeStats are the count, min, sum and max of one type's values.
type typeStats struct {
	n             int
	min, max, sum float64
}

func (s typeStats) mean() float64 {
	if s.n == 0 {
		return math.NaN()
	}
	return s.sum / float64(s.n)
}

func storedValues(rs []reading.Reading) []csvReading {
	out := make([]csvReading, len(rs))
	for i, r := range rs {
		out[i] = csvReading{sensor: r.SensorID, room: r.RoomID, typ: r.Type, value: r.Value, t: r.Timestamp}
	}
	return out
}

func statsByType(rs []csvReading) map[string]typeStats {
	m := map[string]typeStats{}
	for _, r := range rs {
		s, ok := m[r.typ]
		if !ok {
			s.min, s.max = math.Inf(1), math.Inf(-1)
		}
		s.n++
		s.sum += r.value
		s.min, s.max = math.Min(s.min, r.value), math.Max(s.max, r.value)
		m[r.typ] = s
	}
	return m
}

// closeTo compares two means that differ only by the order of summation.
func closeTo(a, b float64) bool {
	return a == b || math.Abs(a-b) <= 1e-9*math.Max(1, math.Max(math.Abs(a), math.Abs(b)))
}

func mapKeys[V any](ms ...map[string]V) func(func(string) bool) {
	return func(yield func(string) bool) {
		seen := map[string]bool{}
		for _, m := range ms {
			for k := range m {
				if !seen[k] {
					seen[k] = true
					if !yield(k) {
						return
					}
				}
			}
		}
	}
}
