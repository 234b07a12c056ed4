package main

import (
	"io"
	"path/filepath"
	"strings"
	"testing"

	"github.com/atrium-iot/atrium/internal/launch"
)

// TestThroughTheStack replays excerpts of the UCI test sets through the real
// programs (simulator → agent → sensor service → bus → room service) and checks
// that the room service's minute-by-minute occupied_estimate is exactly what the
// estimator computes in process from the same rows, and how accurate it is.
func TestThroughTheStack(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end test: builds and runs the real programs")
	}
	bins := t.TempDir()
	if _, err := launch.Build(t.Context(), bins); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		file     string
		noLight  bool
		accuracy float64
	}{
		{"datatest_excerpt.txt", false, 0.97},
		{"datatest2_excerpt.txt", false, 0.99},
		{"datatest_excerpt.txt", true, 0.85},
		// The night of 17-18 Feb: the co2 of the empty room stays near 1,500
		// ppm and jumps; a model reading co2 levels scored 45 % here.
		{"datatest2_excerpt.txt", true, 0.80},
	} {
		name := strings.TrimSuffix(c.file, ".txt")
		if c.noLight {
			name += "_no_light"
		}
		t.Run(name, func(t *testing.T) {
			args := []string{"-bin", bins, "-data", filepath.Join("..", "..", "services", "room", "occupancy", "testdata", c.file)}
			if c.noLight {
				args = append(args, "-no-light")
			}
			var out strings.Builder
			r, err := run(t.Context(), args, &out, io.Discard)
			if err != nil {
				t.Fatal(err)
			}
			t.Log(out.String())
			if r.Differ != 0 {
				t.Errorf("%d minutes differ from the estimator in process", r.Differ)
			}
			if len(r.Estimates) < 900 {
				t.Errorf("%d minutes estimated", len(r.Estimates))
			}
			if got := r.Confusion.Accuracy(); got < c.accuracy {
				t.Errorf("accuracy %.4f, want ≥ %.2f", got, c.accuracy)
			}
			if r.Confusion.Total() == 0 || r.Confusion.TP == 0 || r.Confusion.TN == 0 {
				t.Errorf("confusion %+v: the excerpt should hold occupied and empty rows", r.Confusion)
			}
		})
	}
}
