package spool

import (
	"bufio"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

// The crash test re-runs this test binary as a child that appends and forwards in a
// loop, printing what the spool acknowledged, and kills it with SIGKILL.
const (
	crashEnvPath  = "ATRIUM_SPOOL_CRASH_CHILD"
	crashEnvRound = "ATRIUM_SPOOL_CRASH_ROUND"
	crashMaxBytes = 64 << 10
)

func TestMain(m *testing.M) {
	if path := os.Getenv(crashEnvPath); path != "" {
		round, _ := strconv.Atoi(os.Getenv(crashEnvRound))
		crashChild(path, round)
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func crashReading(n int64) []byte {
	return fmt.Appendf(nil, `{"sensor_id":"crash","room_id":"r1","type":"counter","value":%d,"pad":"%s"}`, n, strings.Repeat("p", 70))
}

func crashValue(r []byte) (int64, error) {
	var v struct{ Value int64 }
	if err := json.Unmarshal(r, &v); err != nil {
		return 0, err
	}
	return v.Value, nil
}

// crashValues are the values of a batch's readings, in order.
func crashValues(b Batch) []int64 {
	var out []int64
	for _, r := range b.Readings {
		n, _ := crashValue(r)
		out = append(out, n)
	}
	return out
}

// crashChild appends from 4 goroutines and forwards until it is killed: in even
// rounds one batch at a time (NextBatch, AckBatch), in odd rounds with up to three
// open batches (OpenBatches, FormBatch) acked in random order. Every line goes out in one write (under PIPE_BUF), so a kill never splits one.
// A n: Append of reading n returned nil. F id n,n,..: NextBatch returned id with those.
// B id: AckBatch(id) called. D id: AckBatch(id) returned nil. C k: k compactions so far.
func crashChild(path string, round int) {
	time.AfterFunc(60*time.Second, func() { os.Exit(3) }) // never outlive the parent
	var outMu sync.Mutex
	emit := func(line string) {
		outMu.Lock()
		defer outMu.Unlock()
		if _, err := os.Stdout.WriteString(line + "\n"); err != nil {
			os.Exit(4)
		}
	}
	s, err := Open(path, Options{MaxBytes: crashMaxBytes, Policy: PolicyRejectNew})
	if err != nil {
		fmt.Fprintln(os.Stderr, "open:", err)
		os.Exit(2)
	}
	emit("R")
	ctx := context.Background()
	for g := range 4 {
		go func() {
			for i := int64(0); ; i++ {
				n := int64(round)*10_000_000 + int64(g)*1_000_000 + i
				err := s.Append(ctx, [][]byte{crashReading(n)})
				switch {
				case err == nil:
					emit("A " + strconv.FormatInt(n, 10))
				case errors.Is(err, ErrFull):
					time.Sleep(time.Millisecond)
				default:
					fmt.Fprintln(os.Stderr, "append:", err)
					os.Exit(2)
				}
			}
		}()
	}
	if round%2 == 1 {
		crashWindow(s, emit)
	}
	var compactions uint64
	for batches := 0; ; batches++ {
		if batches%20 == 19 { // let the spool fill up so it gets full and then compacts
			time.Sleep(100 * time.Millisecond)
		}
		b, ok, err := s.NextBatch(50, 0)
		if err != nil {
			fmt.Fprintln(os.Stderr, "next batch:", err)
			os.Exit(2)
		}
		if !ok {
			select {
			case <-s.Ready():
			case <-time.After(5 * time.Millisecond):
			}
			continue
		}
		emitGiven(emit, b)
		emit("B " + b.ID)
		if err := s.AckBatch(b.ID); err != nil {
			fmt.Fprintln(os.Stderr, "ack:", err)
			os.Exit(2)
		}
		emit("D " + b.ID)
		if c := s.Stats().Compactions; c != compactions {
			compactions = c
			emit("C " + strconv.FormatUint(c, 10))
		}
	}
}

// emitGiven emits the F line of a batch handed out; a reading that does not decode
// ends the child.
func emitGiven(emit func(string), b Batch) {
	ns := make([]string, len(b.Readings))
	for i, r := range b.Readings {
		n, err := crashValue(r)
		if err != nil {
			fmt.Fprintln(os.Stderr, "decode:", err)
			os.Exit(2)
		}
		ns[i] = strconv.FormatInt(n, 10)
	}
	emit("F " + b.ID + " " + strings.Join(ns, ","))
}

// crashWindow forwards with up to three open batches, acking them in random order,
// until the child is killed.
func crashWindow(s *Spool, emit func(string)) {
	fail := func(what string, err error) {
		fmt.Fprintln(os.Stderr, what+":", err)
		os.Exit(2)
	}
	open, err := s.OpenBatches()
	if err != nil {
		fail("open batches", err)
	}
	for _, b := range open {
		emitGiven(emit, b)
	}
	var compactions uint64
	for batches := 0; ; batches++ {
		if batches%20 == 19 {
			time.Sleep(100 * time.Millisecond)
		}
		for len(open) < 3 {
			b, ok, err := s.FormBatch(50, 0)
			if err != nil {
				fail("form batch", err)
			}
			if !ok {
				break
			}
			emitGiven(emit, b)
			open = append(open, b)
		}
		if len(open) == 0 {
			select {
			case <-s.Ready():
			case <-time.After(5 * time.Millisecond):
			}
			continue
		}
		i := rand.IntN(len(open))
		b := open[i]
		open = append(open[:i], open[i+1:]...)
		emit("B " + b.ID)
		if err := s.AckBatch(b.ID); err != nil {
			fail("ack", err)
		}
		emit("D " + b.ID)
		if c := s.Stats().Compactions; c != compactions {
			compactions = c
			emit("C " + strconv.FormatUint(c, 10))
		}
	}
}

// crashLedger is what the children printed, across rounds.
type crashLedger struct {
	appended    map[int64]bool
	ackBegun    map[int64]bool
	ackDone     map[int64]bool
	formed      map[string][]int64
	begun       map[string]bool // batches whose ack was called
	compactions int
}

func (l *crashLedger) read(t *testing.T, r io.Reader) (lastFormed string, lastBegun string, lines int) {
	t.Helper()
	br := bufio.NewReader(r)
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			return // a fragment without a newline cannot happen; ignore it anyway
		}
		lines++
		f := strings.Fields(line)
		switch f[0] {
		case "R":
		case "A":
			n, _ := strconv.ParseInt(f[1], 10, 64)
			l.appended[n] = true
		case "F":
			var ns []int64
			for _, x := range strings.Split(f[2], ",") {
				n, _ := strconv.ParseInt(x, 10, 64)
				ns = append(ns, n)
			}
			if prev, ok := l.formed[f[1]]; ok && !slices.Equal(prev, ns) {
				t.Errorf("batch %s came back with other readings:\n%v\n%v", f[1], prev, ns)
			}
			l.formed[f[1]] = ns
			lastFormed = f[1]
		case "B":
			for _, n := range l.formed[f[1]] {
				l.ackBegun[n] = true
			}
			lastBegun = f[1]
			l.begun[f[1]] = true
		case "D":
			for _, n := range l.formed[f[1]] {
				l.ackDone[n] = true
			}
		case "C":
			l.compactions++
		default:
			t.Errorf("unexpected child line %q", line)
		}
	}
}

func TestCrashKill9(t *testing.T) {
	if testing.Short() {
		t.Skip("re-runs the test binary")
	}
	path := filepath.Join(t.TempDir(), "spool.db")
	l := &crashLedger{
		appended: map[int64]bool{}, ackBegun: map[int64]bool{}, ackDone: map[int64]bool{},
		formed: map[string][]int64{}, begun: map[string]bool{},
	}
	const rounds = 10
	for round := range rounds {
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), crashEnvPath+"="+path, crashEnvRound+"="+strconv.Itoa(round))
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		var stderr strings.Builder
		cmd.Stderr = &stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		// Wait for "R" (the spool is open), then kill at a random moment.
		br := bufio.NewReader(stdout)
		readyCh := make(chan error, 1)
		go func() {
			line, err := br.ReadString('\n')
			if err == nil && line != "R\n" {
				err = fmt.Errorf("first line %q", line)
			}
			readyCh <- err
		}()
		select {
		case err := <-readyCh:
			if err != nil {
				_ = cmd.Process.Kill()
				_ = cmd.Wait()
				t.Fatalf("round %d: child did not start: %v\n%s", round, err, stderr.String())
			}
		case <-time.After(30 * time.Second):
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
			t.Fatalf("round %d: child did not start in time\n%s", round, stderr.String())
		}
		type readResult struct {
			formed, begun string
			lines         int
		}
		done := make(chan readResult, 1)
		go func() {
			f, b, n := l.read(t, br)
			done <- readResult{f, b, n}
		}()
		time.Sleep(time.Duration(100+rand.IntN(600)) * time.Millisecond)
		if err := cmd.Process.Kill(); err != nil { // SIGKILL
			t.Fatal(err)
		}
		werr := cmd.Wait()
		res := <-done
		if ee := (*exec.ExitError)(nil); !errors.As(werr, &ee) || ee.ExitCode() != -1 {
			t.Fatalf("round %d: child ended with %v, want killed\n%s", round, werr, stderr.String())
		}
		t.Logf("round %d: %d lines, %d appended so far, %d acked, %d compactions", round, res.lines, len(l.appended), len(l.ackDone), l.compactions)
		l.verify(t, path, res.formed, res.begun)
		if t.Failed() {
			return
		}
	}
	if len(l.appended) == 0 || len(l.ackDone) == 0 {
		t.Fatalf("children acknowledged %d appends and %d acks: the test exercised nothing", len(l.appended), len(l.ackDone))
	}
	// Finally drain through the API: every acknowledged reading not acked by the
	// children comes out exactly once.
	s := openTest(t, path, Options{MaxBytes: crashMaxBytes, Policy: PolicyRejectNew})
	seen := map[int64]int{}
	for _, r := range drainAll(t, s, 500) {
		n, err := crashValue(r)
		if err != nil {
			t.Fatal(err)
		}
		seen[n]++
	}
	for n := range l.appended {
		if !l.ackBegun[n] && seen[n] != 1 {
			t.Errorf("acknowledged reading %d drained %d times, want 1", n, seen[n])
		}
	}
}

// verify opens the file as the child left it and checks: every acknowledged reading
// is there exactly once unless its batch's ack had started; no reading of a completed
// ack is there; the open batch is the one the child last formed, unchanged.
func (l *crashLedger) verify(t *testing.T, path, lastFormed, lastBegun string) {
	t.Helper()
	s := openTest(t, path, Options{MaxBytes: crashMaxBytes, Policy: PolicyRejectNew})
	defer s.Close()
	stored := map[int64]int{}
	var rec batchRec
	err := s.view(func(tx *bolt.Tx) error {
		c := tx.Bucket(bucketReadings).Cursor()
		for k, v := c.First(); k != nil; k, v = c.Next() {
			n, err := crashValue(readingJSON(v))
			if err != nil {
				return fmt.Errorf("seq %d: %w", binary.BigEndian.Uint64(k), err)
			}
			stored[n]++
		}
		var err error
		rec, err = decodeBatchRec(tx.Bucket(bucketMeta).Get(metaBatch))
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	total := 0
	for n, c := range stored {
		total += c
		if c != 1 {
			t.Errorf("reading %d stored %d times", n, c)
		}
		if l.ackDone[n] {
			t.Errorf("reading %d of a completed ack is back", n)
		}
	}
	if st := s.Stats(); st.Readings != int64(total) {
		t.Errorf("Stats.Readings = %d, file holds %d", st.Readings, total)
	}
	lost := 0
	for n := range l.appended {
		if stored[n] == 0 && !l.ackBegun[n] {
			lost++
			if lost <= 5 {
				t.Errorf("acknowledged reading %d lost", n)
			}
		}
	}
	if lost > 5 {
		t.Errorf("... %d acknowledged readings lost in all", lost)
	}
	if rec.ok {
		b, ok, err := s.NextBatch(1, 1)
		if err != nil || !ok {
			t.Fatalf("NextBatch with an open batch record: ok=%v err=%v", ok, err)
		}
		if want, printed := l.formed[b.ID]; printed && !slices.Equal(crashValues(b), want) {
			t.Errorf("open batch %s has %v, the child was given %v", b.ID, crashValues(b), want)
		}
	}
	// Every batch a child was given and had not started to ack is still open, with
	// the readings it was given.
	open, err := s.OpenBatches()
	if err != nil {
		t.Fatal(err)
	}
	openIDs := map[string]bool{}
	for _, b := range open {
		openIDs[b.ID] = true
		if want, printed := l.formed[b.ID]; printed && !slices.Equal(crashValues(b), want) {
			t.Errorf("open batch %s has %v, a child was given %v", b.ID, crashValues(b), want)
		}
	}
	for id := range l.formed {
		if !l.begun[id] && !openIDs[id] {
			t.Errorf("batch %s was handed out and not acked, but is not open", id)
		}
	}
	// The last batch the child was given and had not started to ack must still be open.
	if lastFormed != "" && lastFormed != lastBegun && !openIDs[lastFormed] {
		if !rec.ok || batchID(rec, rec.first) != lastFormed {
			t.Errorf("batch %s was handed out and not acked, but the open batch is %+v", lastFormed, rec)
		}
	}
}
