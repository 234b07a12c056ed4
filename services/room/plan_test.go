package room

import (
	"reflect"
	"testing"
	"time"

	"github.com/atrium-iot/atrium/internal/reading"
)

var planBase = time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)

func rd(sensor, roomID, typ string, v float64, after time.Duration) reading.Reading {
	return reading.Reading{SensorID: sensor, RoomID: roomID, Type: typ, Value: v, Unit: "u", Timestamp: planBase.Add(after)}
}

func TestPlacements(t *testing.T) {
	tests := []struct {
		name        string
		readings    []reading.Reading
		wantPlaced  []Placement
		wantSensors []string
	}{
		{"empty", nil, nil, nil},
		{"one room per sensor",
			[]reading.Reading{rd("s1", "r1", "co2", 1, 0), rd("s2", "r2", "co2", 1, 0), rd("s1", "r1", "co2", 1, time.Second)},
			[]Placement{{"s1", "r1", planBase.Add(time.Second)}, {"s2", "r2", planBase}},
			[]string{"s1", "s2"}},
		{"newest reading wins, whatever the order",
			[]reading.Reading{rd("s1", "r2", "co2", 1, time.Minute), rd("s1", "r1", "co2", 1, 0)},
			[]Placement{{"s1", "r2", planBase.Add(time.Minute)}},
			[]string{"s1"}},
		{"a tie goes to the later reading",
			[]reading.Reading{rd("s1", "r1", "co2", 1, 0), rd("s1", "r2", "co2", 1, 0)},
			[]Placement{{"s1", "r2", planBase}},
			[]string{"s1"}},
		{"readings without a room place nothing but list their sensor",
			[]reading.Reading{rd("s1", "", "co2", 1, 0), rd("s2", "r2", "co2", 1, 0), rd("s1", "", "co2", 1, time.Hour)},
			[]Placement{{"s2", "r2", planBase}},
			[]string{"s1", "s2"}},
		{"a room named after readings without one",
			[]reading.Reading{rd("s1", "", "co2", 1, time.Hour), rd("s1", "r1", "co2", 1, 0)},
			[]Placement{{"s1", "r1", planBase}},
			[]string{"s1"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			placed, sensors := Placements(tt.readings)
			if !reflect.DeepEqual(placed, tt.wantPlaced) {
				t.Errorf("placed = %+v, want %+v", placed, tt.wantPlaced)
			}
			if !reflect.DeepEqual(sensors, tt.wantSensors) {
				t.Errorf("sensors = %v, want %v", sensors, tt.wantSensors)
			}
		})
	}
}

func TestRoomOf(t *testing.T) {
	tests := []struct {
		name     string
		readRoom string
		where    Where
		want     string
	}{
		{"assigned wins over the reading", "r1", Where{"r9", true}, "r9"},
		{"the reading's room", "r1", Where{"r2", false}, "r1"},
		{"the sensor's room for a reading without one", "", Where{"r2", false}, "r2"},
		{"unknown sensor, reading with a room", "r1", Where{}, "r1"},
		{"nowhere", "", Where{}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := RoomOf(rd("s1", tt.readRoom, "co2", 1, 0), tt.where); got != tt.want {
				t.Errorf("RoomOf = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestBucketStart(t *testing.T) {
	tests := []struct {
		ms     int64
		period time.Duration
		want   int64
	}{
		{0, time.Minute, 0},
		{59_999, time.Minute, 0},
		{60_000, time.Minute, 60_000},
		{-1, time.Minute, -60_000},
		{-60_000, time.Minute, -60_000},
		{-60_001, time.Minute, -120_000},
		{planBase.UnixMilli() + 299_999, 5 * time.Minute, planBase.UnixMilli()},
		{planBase.UnixMilli() + 3_599_999, time.Hour, planBase.UnixMilli()},
	}
	for _, tt := range tests {
		if got := BucketStart(tt.ms, tt.period); got != tt.want {
			t.Errorf("BucketStart(%d, %v) = %d, want %d", tt.ms, tt.period, got, tt.want)
		}
	}
}

func TestAgg(t *testing.T) {
	tests := []struct {
		name   string
		values []float64
		want   Agg
	}{
		{"none", nil, Agg{}},
		{"one", []float64{-3}, Agg{1, -3, -3, -3}},
		{"several", []float64{2, -1, 5, 0}, Agg{4, 6, -1, 5}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var a Agg
			for _, v := range tt.values {
				a.Add(v)
			}
			if a != tt.want {
				t.Errorf("Add: %+v, want %+v", a, tt.want)
			}
			// Merging halves gives the same as adding all.
			var lo, hi, m Agg
			for i, v := range tt.values {
				if i%2 == 0 {
					lo.Add(v)
				} else {
					hi.Add(v)
				}
			}
			m.Merge(lo)
			m.Merge(hi)
			if m != tt.want {
				t.Errorf("Merge: %+v, want %+v", m, tt.want)
			}
		})
	}
}

func TestNewPlan(t *testing.T) {
	periods := []time.Duration{time.Minute, time.Hour}
	ms := planBase.UnixMilli()
	tests := []struct {
		name     string
		readings []reading.Reading
		where    map[string]Where
		want     Plan
	}{
		{"empty", nil, nil,
			Plan{Applied: Applied{Rooms: []string{}}, Rollups: [][]Rollup{nil, nil}}},
		{"every reading without a room is unroomed",
			[]reading.Reading{rd("s1", "", "co2", 400, 0), rd("s2", "", "co2", 400, 0)},
			map[string]Where{"s2": {}},
			Plan{Applied: Applied{Rooms: []string{}, Unroomed: 2}, Rollups: [][]Rollup{nil, nil}}},
		{"rooms sorted, latest per series, buckets per period",
			[]reading.Reading{
				rd("s2", "rb", "co2", 500, 0),
				rd("s1", "ra", "co2", 400, 0),
				rd("s1", "ra", "co2", 600, 30*time.Second),
				rd("s1", "ra", "co2", 800, 90*time.Second),
				rd("s1", "ra", "temperature", 21, 0),
				rd("s3", "", "co2", 1, 0),
			},
			map[string]Where{"s1": {"ra", false}, "s2": {"rb", false}},
			Plan{
				Applied: Applied{Rooms: []string{"ra", "rb"}, Readings: 5, Unroomed: 1},
				Latest: []Latest{
					{"rb", rd("s2", "rb", "co2", 500, 0)},
					{"ra", rd("s1", "ra", "co2", 800, 90*time.Second)},
					{"ra", rd("s1", "ra", "temperature", 21, 0)},
				},
				Rollups: [][]Rollup{
					{
						{"rb", "co2", ms, Agg{1, 500, 500, 500}},
						{"ra", "co2", ms, Agg{2, 1000, 400, 600}},
						{"ra", "co2", ms + 60_000, Agg{1, 800, 800, 800}},
						{"ra", "temperature", ms, Agg{1, 21, 21, 21}},
					},
					{
						{"rb", "co2", ms, Agg{1, 500, 500, 500}},
						{"ra", "co2", ms, Agg{3, 1800, 400, 800}},
						{"ra", "temperature", ms, Agg{1, 21, 21, 21}},
					},
				},
			}},
		{"an assigned sensor's readings go to its room; a sensor's room serves readings without one",
			[]reading.Reading{rd("s1", "ra", "co2", 400, 0), rd("s2", "", "co2", 500, time.Second)},
			map[string]Where{"s1": {"rz", true}, "s2": {"rb", false}},
			Plan{
				Applied: Applied{Rooms: []string{"rb", "rz"}, Readings: 2},
				Latest:  []Latest{{"rz", rd("s1", "ra", "co2", 400, 0)}, {"rb", rd("s2", "", "co2", 500, time.Second)}},
				Rollups: [][]Rollup{
					{{"rz", "co2", ms, Agg{1, 400, 400, 400}}, {"rb", "co2", ms, Agg{1, 500, 500, 500}}},
					{{"rz", "co2", ms, Agg{1, 400, 400, 400}}, {"rb", "co2", ms, Agg{1, 500, 500, 500}}},
				},
			}},
		{"an older reading never replaces the latest; an equally old one neither",
			[]reading.Reading{rd("s1", "ra", "co2", 2, time.Second), rd("s1", "ra", "co2", 1, 0), rd("s1", "ra", "co2", 3, time.Second)},
			map[string]Where{"s1": {"ra", false}},
			Plan{
				Applied: Applied{Rooms: []string{"ra"}, Readings: 3},
				Latest:  []Latest{{"ra", rd("s1", "ra", "co2", 2, time.Second)}},
				Rollups: [][]Rollup{{{"ra", "co2", ms, Agg{3, 6, 1, 3}}}, {{"ra", "co2", ms, Agg{3, 6, 1, 3}}}},
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := NewPlan(tt.readings, tt.where, periods)
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("NewPlan =\n%+v\nwant\n%+v", got, tt.want)
			}
		})
	}
}
