package spool

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// reading returns a reading's JSON, about 100 bytes, unique per n.
func reading(n int) []byte {
	return fmt.Appendf(nil, `{"sensor_id":"sensor_%03d","room_id":"room-101","type":"temperature","value":%02d.5,"ts":%d}`,
		n%1000, n%40, 1764072000000+int64(n))
}

func readings(from, to int) [][]byte {
	var out [][]byte
	for i := from; i < to; i++ {
		out = append(out, reading(i))
	}
	return out
}

func openTest(t testing.TB, path string, opts Options) *Spool {
	t.Helper()
	s, err := Open(path, opts)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func appendAll(t testing.TB, s *Spool, rs [][]byte) {
	t.Helper()
	for _, r := range rs {
		if err := s.Append(context.Background(), [][]byte{r}); err != nil {
			t.Fatalf("Append: %v", err)
		}
	}
}

// drainAll acks every batch and returns the readings in the order received.
func drainAll(t testing.TB, s *Spool, count int) [][]byte {
	t.Helper()
	var out [][]byte
	for {
		b, ok, err := s.NextBatch(count, 0)
		if err != nil {
			t.Fatalf("NextBatch: %v", err)
		}
		if !ok {
			return out
		}
		out = append(out, b.Readings...)
		if err := s.AckBatch(b.ID); err != nil {
			t.Fatalf("AckBatch(%s): %v", b.ID, err)
		}
	}
}

func equalReadings(a, b [][]byte) bool {
	return slices.EqualFunc(a, b, func(x, y []byte) bool { return string(x) == string(y) })
}

func TestOpenOptions(t *testing.T) {
	tests := []struct {
		name    string
		opts    Options
		wantErr bool
	}{
		{name: "zero value", opts: Options{}},
		{name: "drop-oldest", opts: Options{Policy: PolicyDropOldest, MaxBytes: 1 << 20}},
		{name: "reject-new", opts: Options{Policy: PolicyRejectNew, MaxDelay: -1}},
		{name: "unknown policy", opts: Options{Policy: "drop-newest"}, wantErr: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s, err := Open(filepath.Join(t.TempDir(), "spool.db"), tc.opts)
			if tc.wantErr {
				if err == nil {
					_ = s.Close()
					t.Fatal("Open succeeded, want error")
				}
				return
			}
			if err != nil {
				t.Fatalf("Open: %v", err)
			}
			defer s.Close()
			if st := s.Stats(); st.Readings != 0 || st.FileBytes == 0 {
				t.Errorf("fresh spool stats = %+v, want 0 readings and a file", st)
			}
		})
	}
}

func TestAppend(t *testing.T) {
	big := make([]byte, 2000)
	for i := range big {
		big[i] = 'x'
	}
	tests := []struct {
		name      string
		calls     [][][]byte
		wantErr   error
		wantCount int64
	}{
		{name: "one reading", calls: [][][]byte{{reading(1)}}, wantCount: 1},
		{name: "several per call", calls: [][][]byte{readings(0, 5), readings(5, 7)}, wantCount: 7},
		{name: "nil slice is a no-op", calls: [][][]byte{nil}, wantCount: 0},
		{name: "empty reading", calls: [][][]byte{{reading(1), {}}}, wantErr: ErrEmptyReading},
		{name: "larger than the spool", calls: [][][]byte{{big}}, wantErr: ErrTooLarge},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := openTest(t, filepath.Join(t.TempDir(), "spool.db"), Options{MaxBytes: 1000})
			var want [][]byte
			var wantBytes int64
			for _, c := range tc.calls {
				err := s.Append(context.Background(), c)
				if tc.wantErr != nil {
					if !errors.Is(err, tc.wantErr) {
						t.Fatalf("Append err = %v, want %v", err, tc.wantErr)
					}
					continue
				}
				if err != nil {
					t.Fatalf("Append: %v", err)
				}
				want = append(want, c...)
				for _, r := range c {
					wantBytes += int64(len(r))
				}
			}
			st := s.Stats()
			if st.Readings != tc.wantCount || st.Bytes != wantBytes || st.Appended != uint64(tc.wantCount) {
				t.Errorf("stats = readings %d bytes %d appended %d, want %d %d %d",
					st.Readings, st.Bytes, st.Appended, tc.wantCount, wantBytes, tc.wantCount)
			}
			if tc.wantCount > 0 && st.OldestAppend.IsZero() {
				t.Error("OldestAppend is zero with readings spooled")
			}
			if got := drainAll(t, s, 3); !equalReadings(got, want) {
				t.Errorf("drained %d readings, want %d in arrival order", len(got), len(want))
			}
		})
	}
}

func TestAppendCopiesInput(t *testing.T) {
	s := openTest(t, filepath.Join(t.TempDir(), "spool.db"), Options{})
	r := reading(1)
	want := string(r)
	if err := s.Append(context.Background(), [][]byte{r}); err != nil {
		t.Fatal(err)
	}
	copy(r, "XXXX")
	b, ok, err := s.NextBatch(10, 0)
	if err != nil || !ok {
		t.Fatalf("NextBatch: ok=%v err=%v", ok, err)
	}
	if string(b.Readings[0]) != want {
		t.Errorf("stored %q, want %q", b.Readings[0], want)
	}
}

func TestAppendCanceledContext(t *testing.T) {
	s := openTest(t, filepath.Join(t.TempDir(), "spool.db"), Options{})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := s.Append(ctx, [][]byte{reading(1)}); !errors.Is(err, context.Canceled) {
		t.Fatalf("Append with canceled ctx = %v, want context.Canceled", err)
	}
	// Whatever happened, the spool keeps working.
	if err := s.Append(context.Background(), [][]byte{reading(2)}); err != nil {
		t.Fatal(err)
	}
	if st := s.Stats(); st.Readings < 1 || st.Readings > 2 {
		t.Errorf("readings = %d, want 1 or 2", st.Readings)
	}
}

func TestFullPolicies(t *testing.T) {
	// Every test reading is the same length, so the bound holds exactly 10 of them.
	per := int64(len(reading(100)) + recordOverhead)
	tests := []struct {
		name         string
		policy       string
		wantKept     [][]byte
		wantDropped  uint64
		wantRejected uint64
		wantErrs     int
	}{
		{name: "drop-oldest keeps the newest", policy: PolicyDropOldest, wantKept: readings(105, 115), wantDropped: 5},
		{name: "reject-new keeps the oldest", policy: PolicyRejectNew, wantKept: readings(100, 110), wantRejected: 5, wantErrs: 5},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := openTest(t, filepath.Join(t.TempDir(), "spool.db"), Options{MaxBytes: 10 * per, Policy: tc.policy})
			errs := 0
			for _, r := range readings(100, 115) {
				err := s.Append(context.Background(), [][]byte{r})
				switch {
				case errors.Is(err, ErrFull):
					errs++
				case err != nil:
					t.Fatalf("Append: %v", err)
				}
			}
			if errs != tc.wantErrs {
				t.Errorf("ErrFull returned %d times, want %d", errs, tc.wantErrs)
			}
			st := s.Stats()
			if st.Readings != 10 || st.Dropped != tc.wantDropped || st.Rejected != tc.wantRejected {
				t.Errorf("stats = readings %d dropped %d rejected %d, want 10 %d %d",
					st.Readings, st.Dropped, st.Rejected, tc.wantDropped, tc.wantRejected)
			}
			if got := drainAll(t, s, 4); !equalReadings(got, tc.wantKept) {
				t.Errorf("kept %q\nwant %q", got, tc.wantKept)
			}
		})
	}
}

func TestRejectNewStoresNothingOfACall(t *testing.T) {
	per := int64(len(reading(100)) + recordOverhead)
	s := openTest(t, filepath.Join(t.TempDir(), "spool.db"), Options{MaxBytes: 10 * per, Policy: PolicyRejectNew})
	appendAll(t, s, readings(100, 107))
	if err := s.Append(context.Background(), readings(107, 111)); !errors.Is(err, ErrFull) {
		t.Fatalf("Append of 4 into 3 free = %v, want ErrFull", err)
	}
	if err := s.Append(context.Background(), readings(111, 114)); err != nil {
		t.Fatalf("Append of 3 into 3 free: %v", err)
	}
	want := append(readings(100, 107), readings(111, 114)...)
	if got := drainAll(t, s, 100); !equalReadings(got, want) {
		t.Errorf("kept %d readings, want the 7 first and the 3 that fit", len(got))
	}
	if st := s.Stats(); st.Rejected != 4 {
		t.Errorf("Rejected = %d, want 4", st.Rejected)
	}
}

// TestDropOldestOpenBatch: readings dropped from the open batch shrink it under a new
// id; an ack of the old id (in flight during the drop) acks what is left.
func TestDropOldestOpenBatch(t *testing.T) {
	per := int64(len(reading(100)) + recordOverhead)
	tests := []struct {
		name     string
		extra    int // readings appended after the batch was formed, beyond the free room
		wantLeft [][]byte
		ackOld   error // AckBatch(old id)
	}{
		{name: "shrinks the batch", extra: 2, wantLeft: readings(102, 104)},
		{name: "removes the batch", extra: 5, ackOld: ErrUnknownBatch},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := openTest(t, filepath.Join(t.TempDir(), "spool.db"), Options{MaxBytes: 10 * per})
			appendAll(t, s, readings(100, 110))
			old, ok, err := s.NextBatch(4, 0)
			if err != nil || !ok || len(old.Readings) != 4 {
				t.Fatalf("NextBatch = %d readings, ok=%v err=%v", len(old.Readings), ok, err)
			}
			appendAll(t, s, readings(110, 110+tc.extra))

			cur, ok, err := s.NextBatch(4, 0)
			if err != nil {
				t.Fatal(err)
			}
			if tc.wantLeft != nil {
				if !ok || cur.ID == old.ID || !equalReadings(cur.Readings, tc.wantLeft) || cur.Last != old.Last {
					t.Fatalf("after drop: batch %s %q, want a new id with %q", cur.ID, cur.Readings, tc.wantLeft)
				}
				// Asked again: unchanged.
				again, _, _ := s.NextBatch(1, 1)
				if again.ID != cur.ID || !equalReadings(again.Readings, cur.Readings) {
					t.Fatalf("NextBatch again = %s, want %s unchanged", again.ID, cur.ID)
				}
			} else if ok && cur.First <= old.Last {
				t.Fatalf("after dropping the whole batch NextBatch = %+v, want a batch after seq %d", cur, old.Last)
			}
			err = s.AckBatch(old.ID)
			if !errors.Is(err, tc.ackOld) {
				t.Fatalf("AckBatch(old id) = %v, want %v", err, tc.ackOld)
			}
			st := s.Stats()
			if st.Dropped != uint64(tc.extra) {
				t.Errorf("Dropped = %d, want %d", st.Dropped, tc.extra)
			}
			// What remains is exactly the readings after the batch, once each.
			rest := drainAll(t, s, 100)
			want := readings(104, 110+tc.extra)
			if tc.wantLeft == nil {
				want = readings(100+tc.extra, 110+tc.extra)
			}
			if !equalReadings(rest, want) {
				t.Errorf("remaining %q\nwant %q", rest, want)
			}
		})
	}
}

func TestNextBatchLimits(t *testing.T) {
	n := len(reading(100))
	tests := []struct {
		name      string
		spooled   int
		maxCount  int
		maxBytes  int
		wantCount int
		wantOK    bool
	}{
		{name: "empty spool", spooled: 0, maxCount: 10, wantOK: false},
		{name: "by count", spooled: 20, maxCount: 7, wantCount: 7, wantOK: true},
		{name: "fewer than count", spooled: 3, maxCount: 7, wantCount: 3, wantOK: true},
		{name: "default count", spooled: 600, maxCount: 0, wantCount: DefaultBatchCount, wantOK: true},
		{name: "by bytes", spooled: 20, maxCount: 100, maxBytes: 5*n + n/2, wantCount: 5, wantOK: true},
		{name: "one reading over maxBytes", spooled: 5, maxCount: 100, maxBytes: 10, wantCount: 1, wantOK: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := openTest(t, filepath.Join(t.TempDir(), "spool.db"), Options{})
			if tc.spooled > 0 {
				if err := s.Append(context.Background(), readings(100, 100+tc.spooled)); err != nil {
					t.Fatal(err)
				}
			}
			b, ok, err := s.NextBatch(tc.maxCount, tc.maxBytes)
			if err != nil {
				t.Fatal(err)
			}
			if ok != tc.wantOK || len(b.Readings) != tc.wantCount {
				t.Fatalf("NextBatch = %d readings ok=%v, want %d ok=%v", len(b.Readings), ok, tc.wantCount, tc.wantOK)
			}
			if !ok {
				return
			}
			if !equalReadings(b.Readings, readings(100, 100+tc.wantCount)) {
				t.Error("batch is not the oldest readings in order")
			}
			if b.Bytes != tc.wantCount*n || b.Last-b.First+1 != uint64(tc.wantCount) {
				t.Errorf("batch Bytes=%d First=%d Last=%d, want %d bytes over %d seqs", b.Bytes, b.First, b.Last, tc.wantCount*n, tc.wantCount)
			}
			if st := s.Stats(); st.OpenBatches != 1 {
				t.Errorf("Stats.OpenBatches = %d, want 1", st.OpenBatches)
			}
		})
	}
}

func TestBatchStableAcrossReopen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "spool.db")
	s := openTest(t, path, Options{})
	appendAll(t, s, readings(0, 10))
	first, ok, err := s.NextBatch(4, 0)
	if err != nil || !ok {
		t.Fatalf("NextBatch: ok=%v err=%v", ok, err)
	}
	appendAll(t, s, readings(10, 12))
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	s = openTest(t, path, Options{})
	for _, limits := range [][2]int{{100, 0}, {1, 1}} {
		again, ok, err := s.NextBatch(limits[0], limits[1])
		if err != nil || !ok {
			t.Fatalf("NextBatch after reopen: ok=%v err=%v", ok, err)
		}
		if again.ID != first.ID || !equalReadings(again.Readings, first.Readings) || again.First != first.First || again.Last != first.Last {
			t.Fatalf("after reopen NextBatch(%v) = %s (%d readings), want %s (%d) unchanged", limits, again.ID, len(again.Readings), first.ID, len(first.Readings))
		}
	}
	if err := s.AckBatch(first.ID); err != nil {
		t.Fatal(err)
	}
	next, ok, err := s.NextBatch(100, 0)
	if err != nil || !ok {
		t.Fatalf("NextBatch: ok=%v err=%v", ok, err)
	}
	if next.ID == first.ID || next.First != first.Last+1 || !equalReadings(next.Readings, readings(4, 12)) {
		t.Errorf("next batch = %s first %d, want the 8 readings after seq %d", next.ID, next.First, first.Last)
	}
}

func TestBatchIDsUniqueAcrossSpools(t *testing.T) {
	dir := t.TempDir()
	a := openTest(t, filepath.Join(dir, "a.db"), Options{})
	b := openTest(t, filepath.Join(dir, "b.db"), Options{})
	appendAll(t, a, readings(0, 1))
	appendAll(t, b, readings(0, 1))
	ba, _, _ := a.NextBatch(10, 0)
	bb, _, _ := b.NextBatch(10, 0)
	if ba.ID == bb.ID || ba.First != bb.First {
		t.Errorf("ids %q and %q: want different ids for the same seq", ba.ID, bb.ID)
	}
	if err := a.AckBatch(bb.ID); !errors.Is(err, ErrUnknownBatch) {
		t.Errorf("AckBatch with another spool's id = %v, want ErrUnknownBatch", err)
	}
}

func TestAckBatch(t *testing.T) {
	s := openTest(t, filepath.Join(t.TempDir(), "spool.db"), Options{})
	appendAll(t, s, readings(0, 10))
	b, _, err := s.NextBatch(6, 0)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		id      string
		wantErr error
		left    int64
	}{
		{name: "garbage id", id: "nope", wantErr: ErrUnknownBatch, left: 10},
		{name: "one digit off", id: b.ID[:len(b.ID)-1] + map[bool]string{true: "1", false: "0"}[strings.HasSuffix(b.ID, "0")], wantErr: ErrUnknownBatch, left: 10},
		{name: "open batch", id: b.ID, left: 4},
		{name: "acked twice", id: b.ID, wantErr: ErrUnknownBatch, left: 4},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if err := s.AckBatch(tc.id); !errors.Is(err, tc.wantErr) {
				t.Fatalf("AckBatch(%q) = %v, want %v", tc.id, err, tc.wantErr)
			}
			if st := s.Stats(); st.Readings != tc.left {
				t.Errorf("readings = %d, want %d", st.Readings, tc.left)
			}
		})
	}
	if st := s.Stats(); st.Acked != 6 || st.OpenBatches != 0 {
		t.Errorf("Acked = %d OpenBatches = %d, want 6 and none", st.Acked, st.OpenBatches)
	}
}

func TestDeadLetterBatch(t *testing.T) {
	path := filepath.Join(t.TempDir(), "spool.db")
	s := openTest(t, path, Options{})
	appendAll(t, s, readings(0, 5))
	b, _, err := s.NextBatch(3, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.DeadLetterBatch("nope", "x"); !errors.Is(err, ErrUnknownBatch) {
		t.Fatalf("DeadLetterBatch(unknown) = %v, want ErrUnknownBatch", err)
	}
	if err := s.DeadLetterBatch(b.ID, "400: bad batch"); err != nil {
		t.Fatal(err)
	}
	dl, err := s.DeadLetters(0)
	if err != nil {
		t.Fatal(err)
	}
	if len(dl) != 3 {
		t.Fatalf("dead letters = %d, want 3", len(dl))
	}
	for i, d := range dl {
		if string(d.Payload) != string(b.Readings[i]) || d.Reason != "400: bad batch" || d.Batch != b.ID || d.At.IsZero() || d.ID == 0 {
			t.Errorf("dead letter %d = %+v, want reading %d of batch %s with reason", i, d, i, b.ID)
		}
	}
	st := s.Stats()
	if st.Readings != 2 || st.DeadLetters != 3 || st.DeadLettered != 3 || st.Acked != 0 {
		t.Errorf("stats = %+v, want 2 readings, 3 dead letters, nothing acked", st)
	}
	if got := drainAll(t, s, 10); !equalReadings(got, readings(3, 5)) {
		t.Errorf("remaining readings = %q", got)
	}
}

func TestDeadLetters(t *testing.T) {
	at := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	path := filepath.Join(t.TempDir(), "spool.db")
	s := openTest(t, path, Options{Now: func() time.Time { return at }})
	ctx := context.Background()
	for i := range 5 {
		d := DeadLetter{ID: 999, Topic: fmt.Sprintf("atrium/room-1/s%d", i), Payload: []byte(fmt.Sprintf("bad %d", i)), Reason: "not json"}
		if err := s.DeadLetter(ctx, d); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openTest(t, path, Options{})
	if st := s.Stats(); st.DeadLetters != 5 || st.DeadLetterBytes != 25 {
		t.Fatalf("after reopen: %d dead letters of %d bytes, want 5 of 25", st.DeadLetters, st.DeadLetterBytes)
	}

	list := []struct {
		limit int
		want  int
	}{{0, 5}, {2, 2}, {10, 5}}
	for _, tc := range list {
		t.Run(fmt.Sprintf("list limit %d", tc.limit), func(t *testing.T) {
			dl, err := s.DeadLetters(tc.limit)
			if err != nil {
				t.Fatal(err)
			}
			if len(dl) != tc.want {
				t.Fatalf("got %d, want %d", len(dl), tc.want)
			}
			for i, d := range dl {
				if d.ID != uint64(i+1) || d.Topic != fmt.Sprintf("atrium/room-1/s%d", i) ||
					string(d.Payload) != fmt.Sprintf("bad %d", i) || d.Reason != "not json" || !d.At.Equal(at) {
					t.Errorf("dead letter %d = %+v", i, d)
				}
			}
		})
	}

	take := []struct {
		name     string
		ids      []uint64
		wantIDs  []uint64
		wantLeft int64
	}{
		{name: "two", ids: []uint64{2, 4}, wantIDs: []uint64{2, 4}, wantLeft: 3},
		{name: "taken and unknown skipped", ids: []uint64{2, 77, 5}, wantIDs: []uint64{5}, wantLeft: 2},
		{name: "none", ids: nil, wantIDs: nil, wantLeft: 2},
	}
	for _, tc := range take {
		t.Run("take "+tc.name, func(t *testing.T) {
			got, err := s.TakeDeadLetters(ctx, tc.ids)
			if err != nil {
				t.Fatal(err)
			}
			var ids []uint64
			for _, d := range got {
				ids = append(ids, d.ID)
				if string(d.Payload) != fmt.Sprintf("bad %d", d.ID-1) {
					t.Errorf("taken %d payload %q", d.ID, d.Payload)
				}
			}
			if !slices.Equal(ids, tc.wantIDs) {
				t.Errorf("took %v, want %v", ids, tc.wantIDs)
			}
			if st := s.Stats(); st.DeadLetters != tc.wantLeft {
				t.Errorf("left %d, want %d", st.DeadLetters, tc.wantLeft)
			}
		})
	}
	dl, _ := s.DeadLetters(0)
	if len(dl) != 2 || dl[0].ID != 1 || dl[1].ID != 3 {
		t.Errorf("remaining dead letters = %+v, want ids 1 and 3", dl)
	}
}

func TestDeadLetterBounds(t *testing.T) {
	tests := []struct {
		name        string
		opts        Options
		payload     int
		n           int
		wantKept    int
		wantErr     error
		wantEvicted uint64
	}{
		{name: "by count", opts: Options{MaxDeadLetters: 3}, payload: 10, n: 5, wantKept: 3, wantEvicted: 2},
		// 100 KiB allowance; each ~13.5 KiB encoded (base64) → 7 fit.
		{name: "by bytes", opts: Options{MaxBytes: 1 << 20}, payload: 10_000, n: 10, wantKept: 7, wantEvicted: 3},
		{name: "too large", opts: Options{MaxBytes: 1 << 20}, payload: 200_000, n: 1, wantErr: ErrTooLarge},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := openTest(t, filepath.Join(t.TempDir(), "spool.db"), tc.opts)
			for i := range tc.n {
				p := []byte(strings.Repeat(fmt.Sprint(i%10), tc.payload))
				err := s.DeadLetter(context.Background(), DeadLetter{Topic: "t", Payload: p, Reason: "r"})
				if !errors.Is(err, tc.wantErr) {
					t.Fatalf("DeadLetter %d = %v, want %v", i, err, tc.wantErr)
				}
			}
			dl, err := s.DeadLetters(0)
			if err != nil {
				t.Fatal(err)
			}
			st := s.Stats()
			if len(dl) != tc.wantKept || st.DeadLetters != int64(tc.wantKept) || st.DeadEvicted != tc.wantEvicted {
				t.Fatalf("kept %d (stats %d) evicted %d, want %d evicted %d", len(dl), st.DeadLetters, st.DeadEvicted, tc.wantKept, tc.wantEvicted)
			}
			// The newest are kept.
			for i, d := range dl {
				if want := uint64(tc.n - tc.wantKept + i + 1); d.ID != want {
					t.Errorf("kept id %d, want %d", d.ID, want)
				}
			}
		})
	}
}

func TestReady(t *testing.T) {
	s := openTest(t, filepath.Join(t.TempDir(), "spool.db"), Options{})
	select {
	case <-s.Ready():
		t.Fatal("Ready before any append")
	default:
	}
	for i := range 3 { // several commits, one pending signal
		appendAll(t, s, readings(i, i+1))
	}
	select {
	case <-s.Ready():
	case <-time.After(10 * time.Second):
		t.Fatal("no Ready after Append")
	}
	select {
	case <-s.Ready():
		t.Fatal("Ready holds more than one signal")
	default:
	}
	// Acks do not signal.
	drainAll(t, s, 10)
	select {
	case <-s.Ready():
		t.Fatal("Ready after an ack")
	default:
	}
}

// TestGroupCommit: concurrent appenders share commits.
func TestGroupCommit(t *testing.T) {
	tests := []struct {
		name      string
		appenders int
		each      int
	}{
		{name: "64 appenders", appenders: 64, each: 40},
		{name: "16 appenders", appenders: 16, each: 100},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := openTest(t, filepath.Join(t.TempDir(), "spool.db"), Options{})
			start := s.Stats().Commits
			var wg sync.WaitGroup
			errs := make(chan error, tc.appenders)
			for g := range tc.appenders {
				wg.Go(func() {
					for i := range tc.each {
						if err := s.Append(context.Background(), [][]byte{reading(g*tc.each + i)}); err != nil {
							errs <- err
							return
						}
					}
				})
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				t.Fatal(err)
			}
			calls := tc.appenders * tc.each
			st := s.Stats()
			commits := st.Commits - start
			t.Logf("%d calls in %d commits", calls, commits)
			if st.Readings != int64(calls) {
				t.Fatalf("readings = %d, want %d", st.Readings, calls)
			}
			if commits > uint64(calls/4) {
				t.Errorf("%d commits for %d calls, want far fewer", commits, calls)
			}
			got := drainAll(t, s, 500)
			seen := make(map[string]bool, len(got))
			for _, r := range got {
				if seen[string(r)] {
					t.Fatalf("duplicate %s", r)
				}
				seen[string(r)] = true
			}
			if len(seen) != calls {
				t.Errorf("drained %d distinct, want %d", len(seen), calls)
			}
		})
	}
}

// TestLoneAppenderNeverWaits: a caller alone never waits for MaxDelay, not even
// for a moment in which it is still counted as on its way in after the writer has
// its op (the writer then waited MaxDelay for a caller that had already arrived).
// MaxDelay is far longer than any commit, so one such wait is plain to see.
func TestLoneAppenderNeverWaits(t *testing.T) {
	const maxDelay = 2 * time.Second
	s := openTest(t, filepath.Join(t.TempDir(), "spool.db"), Options{MaxDelay: maxDelay})
	for i := range 3000 { // the race showed within a few hundred appends under -race
		t0 := time.Now()
		if err := s.Append(context.Background(), [][]byte{reading(i)}); err != nil {
			t.Fatal(err)
		}
		if took := time.Since(t0); took >= maxDelay {
			t.Fatalf("append %d alone took %v: the writer waited MaxDelay (%v) for nobody", i, took, maxDelay)
		}
	}
}

func TestRecountOnOpen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "spool.db")
	clock := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	s := openTest(t, path, Options{Now: func() time.Time { return clock }})
	appendAll(t, s, readings(0, 50))
	b, _, _ := s.NextBatch(20, 0)
	if err := s.AckBatch(b.ID); err != nil {
		t.Fatal(err)
	}
	if err := s.DeadLetter(context.Background(), DeadLetter{Payload: []byte("x"), Reason: "r"}); err != nil {
		t.Fatal(err)
	}
	before := s.Stats()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openTest(t, path, Options{})
	after := s.Stats()
	if after.Readings != before.Readings || after.Bytes != before.Bytes || after.DeadLetters != before.DeadLetters ||
		after.DeadLetterBytes != before.DeadLetterBytes || !after.OldestAppend.Equal(before.OldestAppend) || after.Readings != 30 {
		t.Errorf("after reopen %+v\nbefore %+v", after, before)
	}
	// Sequence numbers continue: never reused.
	appendAll(t, s, readings(50, 51))
	drained := drainAll(t, s, 1000)
	if !equalReadings(drained, readings(20, 51)) {
		t.Errorf("drained %d readings, want 31 in order", len(drained))
	}
}

func TestSeqNeverReused(t *testing.T) {
	path := filepath.Join(t.TempDir(), "spool.db")
	s := openTest(t, path, Options{})
	appendAll(t, s, readings(0, 5))
	b1, _, _ := s.NextBatch(10, 0)
	if err := s.AckBatch(b1.ID); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openTest(t, path, Options{})
	appendAll(t, s, readings(5, 6))
	b2, _, _ := s.NextBatch(10, 0)
	if b2.First <= b1.Last || b2.ID == b1.ID {
		t.Errorf("after emptying and reopening, batch %s starts at %d, want after %d", b2.ID, b2.First, b1.Last)
	}
}

func TestClose(t *testing.T) {
	path := filepath.Join(t.TempDir(), "spool.db")
	s := openTest(t, path, Options{})
	// Appends racing Close either commit (nil) or get ErrClosed: nothing in between.
	var wg sync.WaitGroup
	var mu sync.Mutex
	var ok [][]byte
	for g := range 8 {
		wg.Go(func() {
			for i := range 50 {
				r := reading(g*1000 + i)
				err := s.Append(context.Background(), [][]byte{r})
				if errors.Is(err, ErrClosed) {
					return
				}
				if err != nil {
					t.Errorf("Append: %v", err)
					return
				}
				mu.Lock()
				ok = append(ok, r)
				mu.Unlock()
			}
		})
	}
	time.Sleep(5 * time.Millisecond) // let some appends through; the assertions hold either way
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	if err := s.Close(); err != nil {
		t.Errorf("second Close = %v", err)
	}
	calls := []struct {
		name string
		call func() error
	}{
		{"Append", func() error { return s.Append(context.Background(), readings(0, 1)) }},
		{"DeadLetter", func() error { return s.DeadLetter(context.Background(), DeadLetter{}) }},
		{"NextBatch", func() error { _, _, err := s.NextBatch(1, 0); return err }},
		{"AckBatch", func() error { return s.AckBatch("x") }},
		{"DeadLetters", func() error { _, err := s.DeadLetters(1); return err }},
	}
	for _, c := range calls {
		t.Run(c.name, func(t *testing.T) {
			if err := c.call(); !errors.Is(err, ErrClosed) {
				t.Errorf("%s after Close = %v, want ErrClosed", c.name, err)
			}
		})
	}
	s2 := openTest(t, path, Options{})
	got := drainAll(t, s2, 1000)
	set := make(map[string]int)
	for _, r := range got {
		set[string(r)]++
	}
	for _, r := range ok {
		if set[string(r)] != 1 {
			t.Errorf("acknowledged reading %s found %d times after reopen", r, set[string(r)])
		}
	}
}

// TestCompactionBound: after filling past the bound and draining, the file returns
// under MaxBytes, and the data and batch state survive compaction.
func TestCompactionBound(t *testing.T) {
	tests := []struct {
		name   string
		policy string
	}{
		{name: "drop-oldest", policy: PolicyDropOldest},
		{name: "reject-new", policy: PolicyRejectNew},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			const maxBytes = 2 << 20
			path := filepath.Join(t.TempDir(), "spool.db")
			s := openTest(t, path, Options{MaxBytes: maxBytes, Policy: tc.policy})
			n := 0
			for st := s.Stats(); st.Dropped == 0 && st.Rejected == 0; st = s.Stats() {
				batch := readings(n, n+100)
				n += 100
				if err := s.Append(context.Background(), batch); err != nil && !errors.Is(err, ErrFull) {
					t.Fatal(err)
				}
			}
			full := s.Stats()
			t.Logf("full: %d readings, %d bytes, file %d bytes", full.Readings, full.Bytes, full.FileBytes)
			if full.FileBytes <= maxBytes {
				t.Fatalf("file %d bytes after filling; the test needs it past %d", full.FileBytes, maxBytes)
			}
			// Drain all but the last 10 readings, then leave an open batch.
			for st := s.Stats(); st.Readings > 10; st = s.Stats() {
				b, ok, err := s.NextBatch(int(min(500, st.Readings-10)), 0)
				if err != nil || !ok {
					t.Fatalf("NextBatch: ok=%v err=%v", ok, err)
				}
				if err := s.AckBatch(b.ID); err != nil {
					t.Fatal(err)
				}
			}
			left := s.Stats().Readings
			open, ok, err := s.NextBatch(3, 0)
			if err != nil || !ok {
				t.Fatalf("NextBatch: ok=%v err=%v", ok, err)
			}
			if err := s.DeadLetter(context.Background(), DeadLetter{Payload: []byte("x"), Reason: "r"}); err != nil {
				t.Fatal(err)
			}
			deadline := time.Now().Add(30 * time.Second)
			for s.Stats().FileBytes > maxBytes {
				if time.Now().After(deadline) {
					t.Fatalf("file still %d bytes, want <= %d", s.Stats().FileBytes, maxBytes)
				}
				time.Sleep(10 * time.Millisecond)
			}
			st := s.Stats()
			t.Logf("drained: %d readings, file %d bytes, %d compactions", st.Readings, st.FileBytes, st.Compactions)
			if st.Compactions == 0 || st.Readings != left || st.DeadLetters != 1 {
				t.Errorf("after compaction stats = %+v, want >=1 compaction, %d readings, 1 dead letter", st, left)
			}
			again, ok, err := s.NextBatch(100, 0)
			if err != nil || !ok || again.ID != open.ID || !equalReadings(again.Readings, open.Readings) {
				t.Fatalf("open batch after compaction = %s, want %s unchanged (err %v)", again.ID, open.ID, err)
			}
			if err := s.AckBatch(open.ID); err != nil {
				t.Fatal(err)
			}
			appendAll(t, s, readings(n, n+1))
			rest := drainAll(t, s, 1000)
			if int64(len(rest)) != left-3+1 || string(rest[len(rest)-1]) != string(reading(n)) {
				t.Errorf("after compaction drained %d readings, want %d ending with the new one", len(rest), left-3+1)
			}
			b, ok, _ := s.NextBatch(1, 0)
			if ok {
				t.Errorf("spool not empty: %+v", b)
			}
			if _, err := os.Stat(compactPath(path)); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("compaction file left behind: %v", err)
			}
		})
	}
}

func TestOpenRemovesLeftoverCompaction(t *testing.T) {
	path := filepath.Join(t.TempDir(), "spool.db")
	s := openTest(t, path, Options{})
	appendAll(t, s, readings(0, 3))
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	// A crash during compaction, before the rename: a partial copy beside the file.
	if err := os.WriteFile(compactPath(path), []byte("partial"), 0o600); err != nil {
		t.Fatal(err)
	}
	s = openTest(t, path, Options{})
	if _, err := os.Stat(compactPath(path)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("leftover compaction file still there: %v", err)
	}
	if got := drainAll(t, s, 10); !equalReadings(got, readings(0, 3)) {
		t.Errorf("readings after reopen = %q", got)
	}
}

func TestTakeDeadLettersCanceled(t *testing.T) {
	s := openTest(t, filepath.Join(t.TempDir(), "spool.db"), Options{})
	if err := s.DeadLetter(context.Background(), DeadLetter{Payload: []byte("x"), Reason: "r"}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	got, err := s.TakeDeadLetters(ctx, []uint64{1})
	if !errors.Is(err, context.Canceled) || got != nil {
		t.Fatalf("TakeDeadLetters(canceled) = %v, %v; want nothing and context.Canceled", got, err)
	}
	if st := s.Stats(); st.DeadLetters != 1 {
		t.Errorf("dead letters = %d after a canceled take, want 1 (not removed)", st.DeadLetters)
	}
}
