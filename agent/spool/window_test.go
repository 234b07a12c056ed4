package spool

import (
	"errors"
	"path/filepath"
	"testing"
)

// formAll forms batches of count readings until the spool has none outside the
// open batches.
func formAll(t *testing.T, s *Spool, count int) []Batch {
	t.Helper()
	var out []Batch
	for {
		b, ok, err := s.FormBatch(count, 0)
		if err != nil {
			t.Fatalf("FormBatch: %v", err)
		}
		if !ok {
			return out
		}
		out = append(out, b)
	}
}

// TestSeveralOpenBatches: FormBatch opens batches one after the other; they are
// acked in any order, and a reopened spool gives back the open ones with the same
// ids and readings.
func TestSeveralOpenBatches(t *testing.T) {
	tests := []struct {
		name   string
		finish []int // indexes of the batches to ack before the reopen
		dead   int   // index of a batch to dead-letter instead (-1: none)
	}{
		{name: "in order", finish: []int{0, 1}, dead: -1},
		{name: "out of order", finish: []int{2, 0}, dead: -1},
		{name: "newest only", finish: []int{3}, dead: 1},
		{name: "none", dead: -1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "spool.db")
			s := openTest(t, path, Options{})
			appendAll(t, s, readings(0, 14))
			bs := formAll(t, s, 4)
			if len(bs) != 4 || len(bs[3].Readings) != 2 {
				t.Fatalf("formed %d batches, want 4 (4+4+4+2 readings)", len(bs))
			}
			for i, b := range bs {
				if !equalReadings(b.Readings, readings(4*i, min(4*i+4, 14))) {
					t.Fatalf("batch %d = %q, want readings %d..", i, b.Readings, 4*i)
				}
			}
			if nb, ok, err := s.NextBatch(100, 0); err != nil || !ok || nb.ID != bs[0].ID {
				t.Fatalf("NextBatch = %s ok=%v err=%v, want the oldest open batch %s", nb.ID, ok, err, bs[0].ID)
			}
			left := map[int]bool{0: true, 1: true, 2: true, 3: true}
			for _, i := range tc.finish {
				if err := s.AckBatch(bs[i].ID); err != nil {
					t.Fatalf("AckBatch(%d): %v", i, err)
				}
				delete(left, i)
				if err := s.AckBatch(bs[i].ID); !errors.Is(err, ErrUnknownBatch) {
					t.Fatalf("second AckBatch(%d) = %v, want ErrUnknownBatch", i, err)
				}
			}
			if tc.dead >= 0 {
				if err := s.DeadLetterBatch(bs[tc.dead].ID, "test"); err != nil {
					t.Fatalf("DeadLetterBatch: %v", err)
				}
				delete(left, tc.dead)
			}
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}

			s = openTest(t, path, Options{})
			open, err := s.OpenBatches()
			if err != nil {
				t.Fatal(err)
			}
			var want []Batch
			wantReadings := 0
			for i, b := range bs {
				if left[i] {
					want = append(want, b)
					wantReadings += len(b.Readings)
				}
			}
			if len(open) != len(want) {
				t.Fatalf("after reopen %d open batches, want %d", len(open), len(want))
			}
			for i := range want {
				if open[i].ID != want[i].ID || !equalReadings(open[i].Readings, want[i].Readings) {
					t.Errorf("open batch %d = %s %q, want %s %q", i, open[i].ID, open[i].Readings, want[i].ID, want[i].Readings)
				}
			}
			if st := s.Stats(); st.OpenBatches != len(want) || st.Readings != int64(wantReadings) {
				t.Errorf("Stats: %d open batches, %d readings; want %d, %d", st.OpenBatches, st.Readings, len(want), wantReadings)
			}
			// Nothing is outside the open batches, so nothing new forms; new readings
			// form a batch after the newest open one.
			if _, ok, _ := s.FormBatch(4, 0); ok {
				t.Fatal("FormBatch formed a batch out of readings already in open batches")
			}
			appendAll(t, s, readings(14, 16))
			nb, ok, err := s.FormBatch(4, 0)
			if err != nil || !ok || !equalReadings(nb.Readings, readings(14, 16)) {
				t.Fatalf("FormBatch after append = %q ok=%v err=%v, want the 2 new readings", nb.Readings, ok, err)
			}
		})
	}
}

// TestDropOldestSeveralOpenBatches: drop-oldest removes whole open batches and
// shrinks the one it cuts into (new id); the batches after it keep theirs.
func TestDropOldestSeveralOpenBatches(t *testing.T) {
	per := int64(len(reading(100)) + recordOverhead)
	s := openTest(t, filepath.Join(t.TempDir(), "spool.db"), Options{MaxBytes: 12 * per})
	appendAll(t, s, readings(100, 112))
	bs := formAll(t, s, 4)
	if len(bs) != 3 {
		t.Fatalf("formed %d batches, want 3", len(bs))
	}
	appendAll(t, s, readings(112, 118)) // drops 100..105: batch 0 whole, half of batch 1
	open, err := s.OpenBatches()
	if err != nil {
		t.Fatal(err)
	}
	if len(open) != 2 {
		t.Fatalf("%d open batches after the drop, want 2", len(open))
	}
	if open[0].ID == bs[1].ID || !equalReadings(open[0].Readings, readings(106, 108)) {
		t.Errorf("cut batch = %s %q, want a new id with readings 106, 107", open[0].ID, open[0].Readings)
	}
	if open[1].ID != bs[2].ID || !equalReadings(open[1].Readings, bs[2].Readings) {
		t.Errorf("batch after the cut = %s, want %s unchanged", open[1].ID, bs[2].ID)
	}
	if err := s.AckBatch(bs[0].ID); !errors.Is(err, ErrUnknownBatch) {
		t.Errorf("AckBatch(dropped batch) = %v, want ErrUnknownBatch", err)
	}
	// The cloud's answer to the old id of the cut batch covers what is left of it.
	if err := s.AckBatch(bs[1].ID); err != nil {
		t.Errorf("AckBatch(old id of the cut batch) = %v", err)
	}
	if err := s.AckBatch(bs[2].ID); err != nil {
		t.Errorf("AckBatch(batch 2) = %v", err)
	}
	if rest := drainAll(t, s, 100); !equalReadings(rest, readings(112, 118)) {
		t.Errorf("remaining %q, want readings 112..117", rest)
	}
}

// TestFormBatches: several batches formed in one commit, each as FormBatch would
// have formed it, and none when every reading is in an open batch.
func TestFormBatches(t *testing.T) {
	tests := []struct {
		name  string
		n     int
		sizes []int
	}{
		{name: "fewer than the readings allow", n: 2, sizes: []int{4, 4}},
		{name: "more than the readings allow", n: 5, sizes: []int{4, 4, 2}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := openTest(t, filepath.Join(t.TempDir(), "spool.db"), Options{})
			appendAll(t, s, readings(0, 10))
			before := s.Stats().Commits
			bs, err := s.FormBatches(tc.n, 4, 0)
			if err != nil {
				t.Fatal(err)
			}
			if c := s.Stats().Commits - before; c != 1 {
				t.Errorf("FormBatches took %d commits, want 1", c)
			}
			at := 0
			for i, b := range bs {
				if i >= len(tc.sizes) || !equalReadings(b.Readings, readings(at, at+tc.sizes[i])) {
					t.Fatalf("batch %d = %q, want %d readings from %d", i, b.Readings, tc.sizes[i], at)
				}
				at += len(b.Readings)
			}
			if len(bs) != len(tc.sizes) {
				t.Fatalf("formed %d batches, want %d", len(bs), len(tc.sizes))
			}
			open, err := s.OpenBatches()
			if err != nil || len(open) != len(bs) {
				t.Fatalf("OpenBatches = %d, err %v; want %d", len(open), err, len(bs))
			}
			if tc.n > len(tc.sizes) {
				if more, err := s.FormBatches(1, 4, 0); err != nil || len(more) != 0 {
					t.Errorf("FormBatches with every reading open = %d batches, err %v; want none", len(more), err)
				}
			}
		})
	}
}
