package replay

import (
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func readAll(t *testing.T, path string) (*Reader, []Round) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	r, err := NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	var out []Round
	for {
		rd, err := r.Next()
		if errors.Is(err, io.EOF) {
			return r, out
		}
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, rd)
	}
}

func TestFormats(t *testing.T) {
	tests := []struct {
		file                    string
		format                  Format
		rounds, frames, metrics int
		stats                   Stats
		first                   time.Time
		firstFrame              Frame
	}{
		{
			file: "uci_occupancy_detection.txt", format: UCIOccupancy, rounds: 120, frames: 240, metrics: 720,
			stats: Stats{Rows: 120}, first: time.Date(2015, 2, 4, 17, 51, 0, 0, time.UTC),
			firstFrame: Frame{OccupancySensor, OccupancyRoom, []Metric{{"temperature", "Cel", 23.18}, {"humidity", "%RH", 27.272},
				{"light", "lx", 426}, {"co2", "ppm", 721.25}, {"humidity_ratio", "kg/kg", 0.00479298817650529}}},
		},
		{
			file: "uci_occupancy_detection_unquoted.txt", format: UCIOccupancy, rounds: 30, frames: 60, metrics: 180,
			stats: Stats{Rows: 30}, first: time.Date(2015, 2, 11, 14, 48, 0, 0, time.UTC),
			firstFrame: Frame{OccupancySensor, OccupancyRoom, []Metric{{"temperature", "Cel", 21.76}, {"humidity", "%RH", 31.1333333333333},
				{"light", "lx", 437.333333333333}, {"co2", "ppm", 1029.66666666667}, {"humidity_ratio", "kg/kg", 0.00502101089021385}}},
		},
		{
			// 150 rows × 8 nodes; 2550 cells = 150 × 17 value columns.
			file: "uci_room_occupancy_estimation.csv", format: UCIRoomEstimation, rounds: 150, frames: 1200, metrics: 2550,
			stats: Stats{Rows: 150}, first: time.Date(2017, 12, 22, 10, 49, 41, 0, time.UTC),
			firstFrame: Frame{"uci-roe-s1", EstimationRoom, []Metric{{"temperature", "Cel", 24.94}, {"light", "lx", 121}, {"sound", "V", 0.08}}},
		},
		{
			// 120 rows × 17 value cells = 2040, of which 40 blank.
			file: "uci_room_occupancy_estimation_blanked.csv", format: UCIRoomEstimation, rounds: 120, frames: 960, metrics: 2000,
			stats: Stats{Rows: 120, BlankCells: 40}, first: time.Date(2017, 12, 22, 12, 33, 51, 0, time.UTC),
			firstFrame: Frame{"uci-roe-s1", EstimationRoom, []Metric{{"temperature", "Cel", 25.75}, {"light", "lx", 158}, {"sound", "V", 0.72}}},
		},
		{
			file: "generic.csv", format: Generic, rounds: 5, frames: 6, metrics: 9,
			stats: Stats{Rows: 13, SkippedRows: 2, BlankCells: 1, BadCells: 1}, first: time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC),
			firstFrame: Frame{"lab-t1", "lab-1", []Metric{{"temperature", "Cel", 21.5}, {"humidity", "%RH", 40.2}}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			r, rounds := readAll(t, filepath.Join("..", "testdata", tt.file))
			if r.Format() != tt.format {
				t.Errorf("format %s, want %s", r.Format(), tt.format)
			}
			frames, metrics := 0, 0
			for _, rd := range rounds {
				frames += len(rd.Frames)
				for _, f := range rd.Frames {
					metrics += len(f.Metrics)
				}
			}
			if len(rounds) != tt.rounds || frames != tt.frames || metrics != tt.metrics {
				t.Errorf("rounds %d frames %d metrics %d, want %d %d %d", len(rounds), frames, metrics, tt.rounds, tt.frames, tt.metrics)
			}
			if r.Stats() != tt.stats {
				t.Errorf("stats %+v, want %+v", r.Stats(), tt.stats)
			}
			if !rounds[0].Time.Equal(tt.first) {
				t.Errorf("first time %s, want %s", rounds[0].Time, tt.first)
			}
			got := rounds[0].Frames[0]
			if got.SensorID != tt.firstFrame.SensorID || got.RoomID != tt.firstFrame.RoomID || len(got.Metrics) != len(tt.firstFrame.Metrics) {
				t.Fatalf("first frame %+v, want %+v", got, tt.firstFrame)
			}
			for i, m := range tt.firstFrame.Metrics {
				if got.Metrics[i] != m {
					t.Errorf("first frame metric %d = %+v, want %+v", i, got.Metrics[i], m)
				}
			}
		})
	}
}

func TestGenericDetails(t *testing.T) {
	_, rounds := readAll(t, filepath.Join("..", "testdata", "generic.csv"))
	want := []struct {
		t      time.Time
		sensor string
		n      int
	}{
		{time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC), "lab-t1", 2},
		{time.Date(2026, 3, 2, 9, 1, 0, 0, time.UTC), "lab-t1", 1},     // Unix seconds; lab-c1's blank value skipped
		{time.Date(2026, 3, 2, 9, 2, 0, 0, time.UTC), "lab-t1", 2},     // Unix milliseconds
		{time.Date(2026, 3, 2, 9, 3, 0, 250e6, time.UTC), "lab-p1", 2}, // fractional RFC 3339
		{time.Date(2026, 3, 2, 8, 4, 0, 0, time.UTC), "lab-c1", 1},     // +01:00 offset
	}
	for i, w := range want {
		rd := rounds[i]
		if !rd.Time.Equal(w.t) || rd.Frames[0].SensorID != w.sensor || len(rd.Frames[0].Metrics) != w.n {
			t.Errorf("round %d = %s %s %d metrics, want %s %s %d", i, rd.Time, rd.Frames[0].SensorID, len(rd.Frames[0].Metrics), w.t, w.sensor, w.n)
		}
	}
	if m := rounds[3].Frames[0].Metrics[1]; m != (Metric{"sound_level", "V", 0.42}) {
		t.Errorf("unknown type kept with its unit: got %+v", m)
	}
	if m := rounds[1].Frames[0].Metrics[0]; m.Unit != "Cel" {
		t.Errorf("missing unit of a known type: got %q, want Cel", m.Unit)
	}
}

func TestUnknownHeader(t *testing.T) {
	for _, in := range []string{"a,b,c\n1,2,3\n", ""} {
		if _, err := NewReader(strings.NewReader(in)); err == nil {
			t.Errorf("NewReader(%q) accepted it", in)
		}
	}
}

func BenchmarkRoomEstimation(b *testing.B) {
	data, err := os.ReadFile(filepath.Join("..", "testdata", "uci_room_occupancy_estimation.csv"))
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		r, err := NewReader(strings.NewReader(string(data)))
		if err != nil {
			b.Fatal(err)
		}
		for {
			if _, err := r.Next(); err != nil {
				break
			}
		}
	}
}
