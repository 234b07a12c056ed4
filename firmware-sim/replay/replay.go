// Package replay reads recorded sensor data for the simulator to publish again with
// its original timestamps. Three CSV layouts are recognised from the header:
//
//   - Generic: columns timestamp, sensor_id, room_id, type, value (any order, an
//     optional unit column). timestamp is RFC 3339, Unix seconds or Unix
//     milliseconds (a number of 1e11 or more is milliseconds). One line is one reading;
//     consecutive lines with the same timestamp form one round, and within it the
//     lines of one sensor and room form one frame.
//   - UCI Occupancy Detection (Candanedo & Feldheim): header
//     "date","Temperature","Humidity","Light","CO2","HumidityRatio","Occupancy", each
//     data row led by a quoted row index the header does not name. Room uci-od-room;
//     sensor uci-od-s1 reports temperature (Cel), humidity (%RH), light (lx), co2 (ppm)
//     and humidity_ratio (kg/kg); sensor uci-od-occupancy reports the ground-truth
//     occupancy (count, 0 or 1).
//   - UCI Room Occupancy Estimation (Singh et al.): header Date,Time,S1_Temp…,
//     Room_Occupancy_Count. Room uci-roe-room; nodes uci-roe-s1…s4 report temperature
//     (Cel), light (lx) and sound (V: the microphone's amplitude in volts, not dB, so
//     not "noise"); uci-roe-s5 reports co2 (ppm) and co2_slope (no unit); uci-roe-s6
//     and uci-roe-s7 report pir (0/1); uci-roe-occupancy reports the ground-truth
//     occupancy (count, 0–3). Dates are YYYY/MM/DD or YYYY-MM-DD.
//
// Both UCI sets record local time without a zone: their times are read as UTC.
// A blank cell is skipped and counted; a cell that is not a number, a row whose
// timestamp cannot be read or whose ids are invalid is skipped and counted.
package replay

import (
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/atrium-iot/atrium/internal/reading"
)

// Format names a recognised CSV layout.
type Format string

// The recognised layouts.
const (
	Generic           Format = "generic"
	UCIOccupancy      Format = "uci-occupancy-detection"
	UCIRoomEstimation Format = "uci-room-occupancy-estimation"
)

// Metric is one value of a frame.
type Metric struct {
	Type  string
	Unit  string
	Value float64
}

// Frame is what one sensor reported at one instant.
type Frame struct {
	SensorID string
	RoomID   string
	Metrics  []Metric
}

// Round is everything recorded at one instant.
type Round struct {
	Time   time.Time
	Frames []Frame
}

// Stats counts what the reader met so far.
type Stats struct {
	Rows        int `json:"rows"`         // data rows read (not the header)
	SkippedRows int `json:"skipped_rows"` // rows dropped whole: bad timestamp, bad ids, wrong shape
	BlankCells  int `json:"blank_cells"`  // empty value cells, skipped
	BadCells    int `json:"bad_cells"`    // value cells that are not finite numbers, skipped
}

// Reader reads rounds from a CSV file.
type Reader struct {
	csv    *csv.Reader
	format Format
	header []string
	col    map[string]int
	stats  Stats
	line   int
	// pending is a generic row read ahead that belongs to the next round.
	pending *genericRow
}

// NewReader reads the header of r and recognises its format.
func NewReader(r io.Reader) (*Reader, error) {
	c := csv.NewReader(r)
	c.FieldsPerRecord = -1
	c.LazyQuotes = true
	c.ReuseRecord = false
	head, err := c.Read()
	if err != nil {
		return nil, fmt.Errorf("replay: read header: %w", err)
	}
	rd := &Reader{csv: c, header: head, col: map[string]int{}, line: 1}
	for i, h := range head {
		rd.col[strings.ToLower(strings.TrimSpace(strings.TrimPrefix(h, "\ufeff")))] = i
	}
	has := func(names ...string) bool {
		for _, n := range names {
			if _, ok := rd.col[n]; !ok {
				return false
			}
		}
		return true
	}
	switch {
	case has("date", "temperature", "humidity", "light", "co2", "humidityratio", "occupancy"):
		rd.format = UCIOccupancy
	case has("date", "time", "s1_temp", "s5_co2", "s6_pir", "room_occupancy_count"):
		rd.format = UCIRoomEstimation
	case has("timestamp", "sensor_id", "type", "value"):
		rd.format = Generic
	default:
		return nil, fmt.Errorf("replay: header %q: not a known layout (generic timestamp,sensor_id,room_id,type,value; UCI Occupancy Detection; UCI Room Occupancy Estimation)", strings.Join(head, ","))
	}
	return rd, nil
}

// Format is the recognised layout.
func (r *Reader) Format() Format { return r.format }

// Stats reports what was read so far.
func (r *Reader) Stats() Stats { return r.stats }

// Next returns the next round, or io.EOF after the last.
func (r *Reader) Next() (Round, error) {
	for {
		var (
			rd  Round
			ok  bool
			err error
		)
		switch r.format {
		case UCIOccupancy:
			rd, ok, err = r.nextOccupancy()
		case UCIRoomEstimation:
			rd, ok, err = r.nextEstimation()
		default:
			return r.nextGeneric()
		}
		if err != nil || ok {
			return rd, err
		}
	}
}

func (r *Reader) read() ([]string, error) {
	rec, err := r.csv.Read()
	if err != nil {
		var pe *csv.ParseError
		if errors.As(err, &pe) {
			return nil, fmt.Errorf("replay: %w", err)
		}
		return nil, err // io.EOF or an I/O error
	}
	r.line++
	return rec, nil
}

// value reads one numeric cell, counting blanks and bad cells.
func (r *Reader) value(cell string) (float64, bool) {
	s := strings.TrimSpace(cell)
	if s == "" {
		r.stats.BlankCells++
		return 0, false
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil || math.IsNaN(f) || math.IsInf(f, 0) {
		r.stats.BadCells++
		return 0, false
	}
	return f, true
}

// Room and sensor ids of the UCI layouts.
const (
	OccupancyRoom     = "uci-od-room"
	OccupancySensor   = "uci-od-s1"
	OccupancyTruth    = "uci-od-occupancy"
	EstimationRoom    = "uci-roe-room"
	EstimationTruth   = "uci-roe-occupancy"
	estimationNodeFmt = "uci-roe-s%d"
)

var localLayouts = []string{"2006-01-02 15:04:05", "2006/01/02 15:04:05", "2006-01-02 15:04", "2006/01/02 15:04"}

// parseLocal reads a zone-less local time as UTC.
func parseLocal(s string) (time.Time, error) {
	s = strings.TrimSpace(s)
	for _, l := range localLayouts {
		if t, err := time.ParseInLocation(l, s, time.UTC); err == nil {
			return t, nil
		}
	}
	return time.Time{}, fmt.Errorf("time %q: want YYYY-MM-DD HH:MM:SS", s)
}

func (r *Reader) nextOccupancy() (Round, bool, error) {
	rec, err := r.read()
	if err != nil {
		return Round{}, false, err
	}
	r.stats.Rows++
	// Data rows carry a leading row index the header does not name.
	if len(rec) == len(r.header)+1 {
		rec = rec[1:]
	}
	if len(rec) != len(r.header) {
		r.stats.SkippedRows++
		return Round{}, false, nil
	}
	ts, err := parseLocal(rec[r.col["date"]])
	if err != nil {
		r.stats.SkippedRows++
		return Round{}, false, nil
	}
	env := Frame{SensorID: OccupancySensor, RoomID: OccupancyRoom}
	for _, c := range []struct{ col, typ, unit string }{
		{"temperature", "temperature", "Cel"}, {"humidity", "humidity", "%RH"}, {"light", "light", "lx"},
		{"co2", "co2", "ppm"}, {"humidityratio", "humidity_ratio", "kg/kg"},
	} {
		if v, ok := r.value(rec[r.col[c.col]]); ok {
			env.Metrics = append(env.Metrics, Metric{c.typ, c.unit, v})
		}
	}
	round := Round{Time: ts}
	if len(env.Metrics) > 0 {
		round.Frames = append(round.Frames, env)
	}
	if v, ok := r.value(rec[r.col["occupancy"]]); ok {
		round.Frames = append(round.Frames, Frame{SensorID: OccupancyTruth, RoomID: OccupancyRoom, Metrics: []Metric{{"occupancy", "count", v}}})
	}
	return round, true, nil
}

func (r *Reader) nextEstimation() (Round, bool, error) {
	rec, err := r.read()
	if err != nil {
		return Round{}, false, err
	}
	r.stats.Rows++
	if len(rec) != len(r.header) {
		r.stats.SkippedRows++
		return Round{}, false, nil
	}
	ts, err := parseLocal(rec[r.col["date"]] + " " + rec[r.col["time"]])
	if err != nil {
		r.stats.SkippedRows++
		return Round{}, false, nil
	}
	round := Round{Time: ts}
	add := func(sensor string, cols ...[3]string) {
		f := Frame{SensorID: sensor, RoomID: EstimationRoom}
		for _, c := range cols {
			if v, ok := r.value(rec[r.col[c[0]]]); ok {
				f.Metrics = append(f.Metrics, Metric{c[1], c[2], v})
			}
		}
		if len(f.Metrics) > 0 {
			round.Frames = append(round.Frames, f)
		}
	}
	for i := 1; i <= 4; i++ {
		s := strconv.Itoa(i)
		add(fmt.Sprintf(estimationNodeFmt, i),
			[3]string{"s" + s + "_temp", "temperature", "Cel"},
			[3]string{"s" + s + "_light", "light", "lx"},
			[3]string{"s" + s + "_sound", "sound", "V"})
	}
	add(fmt.Sprintf(estimationNodeFmt, 5), [3]string{"s5_co2", "co2", "ppm"}, [3]string{"s5_co2_slope", "co2_slope", ""})
	add(fmt.Sprintf(estimationNodeFmt, 6), [3]string{"s6_pir", "pir", ""})
	add(fmt.Sprintf(estimationNodeFmt, 7), [3]string{"s7_pir", "pir", ""})
	add(EstimationTruth, [3]string{"room_occupancy_count", "occupancy", "count"})
	return round, true, nil
}

type genericRow struct {
	t      time.Time
	sensor string
	room   string
	metric Metric
}

// parseGenericTime reads RFC 3339, Unix seconds or Unix milliseconds.
func parseGenericTime(s string) (time.Time, error) {
	s = strings.TrimSpace(s)
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t.UTC(), nil
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil || f < 0 || math.IsInf(f, 0) || math.IsNaN(f) {
		return time.Time{}, fmt.Errorf("timestamp %q: want RFC 3339, Unix seconds or Unix milliseconds", s)
	}
	if f >= 1e11 {
		return time.UnixMilli(int64(math.Round(f))).UTC(), nil
	}
	return time.UnixMilli(int64(math.Round(f * 1000))).UTC(), nil
}

func (r *Reader) readGeneric() (*genericRow, error) {
	for {
		rec, err := r.read()
		if err != nil {
			return nil, err
		}
		r.stats.Rows++
		cell := func(name string) string {
			i, ok := r.col[name]
			if !ok || i >= len(rec) {
				return ""
			}
			return strings.TrimSpace(rec[i])
		}
		if len(rec) < len(r.header) {
			r.stats.SkippedRows++
			continue
		}
		ts, err := parseGenericTime(cell("timestamp"))
		sensor, room, typ := cell("sensor_id"), cell("room_id"), cell("type")
		if err != nil || !reading.ValidID(sensor) || !reading.ValidID(room) || !reading.ValidType(typ) {
			r.stats.SkippedRows++
			continue
		}
		v, ok := r.value(cell("value"))
		if !ok {
			continue
		}
		unit := cell("unit")
		if unit == "" {
			unit = reading.Known[typ].Unit
		}
		return &genericRow{t: ts, sensor: sensor, room: room, metric: Metric{typ, unit, v}}, nil
	}
}

func (r *Reader) nextGeneric() (Round, error) {
	first := r.pending
	r.pending = nil
	if first == nil {
		var err error
		if first, err = r.readGeneric(); err != nil {
			return Round{}, err
		}
	}
	round := Round{Time: first.t}
	index := map[[2]string]int{}
	add := func(g *genericRow) {
		k := [2]string{g.sensor, g.room}
		i, ok := index[k]
		if !ok {
			i = len(round.Frames)
			index[k] = i
			round.Frames = append(round.Frames, Frame{SensorID: g.sensor, RoomID: g.room})
		}
		round.Frames[i].Metrics = append(round.Frames[i].Metrics, g.metric)
	}
	add(first)
	for {
		g, err := r.readGeneric()
		if errors.Is(err, io.EOF) {
			return round, nil
		}
		if err != nil {
			return Round{}, err
		}
		if !g.t.Equal(round.Time) {
			r.pending = g
			return round, nil
		}
		add(g)
	}
}
