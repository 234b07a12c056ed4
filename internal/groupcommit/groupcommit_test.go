package groupcommit

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/atrium-iot/atrium/internal/apperr"
)

// recorder commits groups of ints, answering each call with its value doubled,
// and records the groups. While gate is open (non-nil), the first commit waits
// on it.
type recorder struct {
	mu      sync.Mutex
	groups  [][]int
	gate    chan struct{}
	entered chan struct{}
	fail    error
}

func (r *recorder) commit(group []int) ([]int, error) {
	r.mu.Lock()
	r.groups = append(r.groups, slices.Clone(group))
	gate := r.gate
	r.gate = nil
	r.mu.Unlock()
	if gate != nil {
		close(r.entered)
		<-gate
	}
	if r.fail != nil {
		return nil, r.fail
	}
	out := make([]int, len(group))
	for i, v := range group {
		out[i] = 2 * v
	}
	return out, nil
}

func (r *recorder) recorded() [][]int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.groups)
}

// blocked starts a writer whose first commit (of call 0) holds until the
// returned release is called, so that the calls made meanwhile queue up.
func blocked(t *testing.T, opts Options, size func(int) int) (*Writer[int, int], *recorder, func()) {
	t.Helper()
	gate := make(chan struct{})
	r := &recorder{gate: gate, entered: make(chan struct{})}
	w := New(r.commit, size, opts)
	t.Cleanup(w.Close)
	go func() { _, _ = w.Do(context.Background(), 0) }()
	<-r.entered
	return w, r, sync.OnceFunc(func() { close(gate) })
}

// doAll makes the calls vs at once (each waits until it is queued) and
// returns their answers and errors.
func doAll(t *testing.T, w *Writer[int, int], ctxs []context.Context, vs []int, release func()) ([]int, []error) {
	t.Helper()
	outs, errs := make([]int, len(vs)), make([]error, len(vs))
	var wg sync.WaitGroup
	for i, v := range vs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			outs[i], errs[i] = w.Do(ctxs[i], v)
		}()
	}
	waitFor(t, func() bool { return w.Queued() == len(vs) })
	release()
	wg.Wait()
	return outs, errs
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !cond(); time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 10s")
		}
	}
}

func background(n int) []context.Context {
	out := make([]context.Context, n)
	for i := range out {
		out[i] = context.Background()
	}
	return out
}

func sorted(g []int) []int { g = slices.Clone(g); slices.Sort(g); return g }

func TestGroups(t *testing.T) {
	tests := []struct {
		name string
		opts Options
		size func(int) int
		vs   []int
		// want are the groups after the first ({0}), each sorted.
		want [][]int
	}{
		{"every waiting call in one group", Options{}, nil, []int{1, 2, 3, 4}, [][]int{{1, 2, 3, 4}}},
		{"MaxSize counts calls", Options{MaxSize: 2}, nil, []int{1, 2, 3, 4, 5}, [][]int{{1, 2}, {3, 4}, {5}}},
		{"MaxSize weighs calls with size", Options{MaxSize: 5}, func(v int) int { return v }, []int{4, 4, 4}, [][]int{{4, 4}, {4}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w, r, release := blocked(t, tt.opts, tt.size)
			outs, errs := doAll(t, w, background(len(tt.vs)), tt.vs, release)
			for i, v := range tt.vs {
				if errs[i] != nil || outs[i] != 2*v {
					t.Errorf("Do(%d) = %d, %v; want %d", v, outs[i], errs[i], 2*v)
				}
			}
			groups := r.recorded()[1:]
			var got [][]int
			for _, g := range groups {
				got = append(got, sorted(g))
			}
			// The queue's order is the order the goroutines reached it: only the
			// sizes of the groups are fixed when the values are equal or grouped whole.
			if len(got) != len(tt.want) {
				t.Fatalf("groups = %v, want %v", got, tt.want)
			}
			for i := range got {
				if len(got[i]) != len(tt.want[i]) {
					t.Errorf("groups = %v, want sizes of %v", got, tt.want)
				}
			}
		})
	}
}

func TestCancelledCallsLeftOut(t *testing.T) {
	w, r, release := blocked(t, Options{}, nil)
	gone, cancel := context.WithCancel(context.Background())
	ctxs := background(3)
	ctxs[1] = gone
	done := make(chan struct{})
	go func() {
		defer close(done)
		outs, errs := doAll(t, w, ctxs, []int{1, 2, 3}, func() { cancel(); release() })
		if !errors.Is(errs[1], context.Canceled) {
			t.Errorf("cancelled call: err = %v", errs[1])
		}
		if errs[0] != nil || errs[2] != nil || outs[0] != 2 || outs[2] != 6 {
			t.Errorf("live calls = %v, %v", outs, errs)
		}
	}()
	<-done
	groups := r.recorded()
	if len(groups) != 2 || !slices.Equal(sorted(groups[1]), []int{1, 3}) {
		t.Errorf("groups = %v, want [[0] [1 3]]", groups)
	}
}

func TestCommitErrorAnswersAll(t *testing.T) {
	boom := errors.New("disk full")
	r := &recorder{fail: boom}
	w := New(r.commit, nil, Options{})
	defer w.Close()
	if _, err := w.Do(context.Background(), 1); !errors.Is(err, boom) {
		t.Errorf("Do = %v, want %v", err, boom)
	}
	short := New(func(g []int) ([]int, error) { return nil, nil }, nil, Options{})
	defer short.Close()
	if _, err := short.Do(context.Background(), 1); err == nil {
		t.Error("a commit answering no call: Do succeeded")
	}
}

func TestMaxWaitForCallsComing(t *testing.T) {
	r := &recorder{}
	w := New(r.commit, nil, Options{MaxWait: time.Hour, MaxSize: 3})
	defer w.Close()
	for range 3 {
		w.Coming()
	}
	var wg sync.WaitGroup
	for v := range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if out, err := w.DoComing(context.Background(), v); err != nil || out != 2*v {
				t.Errorf("DoComing(%d) = %d, %v", v, out, err)
			}
		}()
		// Each call arrives after the group opened: only the wait gathers them.
		waitFor(t, func() bool { return len(w.reqs) == 0 && w.coming.Load() == int64(2-v) })
	}
	wg.Wait()
	if groups := r.recorded(); len(groups) != 1 || len(groups[0]) != 3 {
		t.Errorf("groups = %v, want one of three calls", groups)
	}
}

func TestNoWaitWithoutCallsComing(t *testing.T) {
	r := &recorder{}
	w := New(r.commit, nil, Options{MaxWait: time.Hour})
	defer w.Close()
	// Nothing announced: a lone call is committed at once despite MaxWait.
	if out, err := w.Do(context.Background(), 1); err != nil || out != 2 {
		t.Fatalf("Do = %d, %v", out, err)
	}
	// A call announced and withdrawn leaves nothing to wait for.
	w.Coming()
	w.NotComing()
	if out, err := w.Do(context.Background(), 2); err != nil || out != 4 {
		t.Fatalf("Do = %d, %v", out, err)
	}
	// A closed writer counts out the call it refuses.
	w.Close()
	w.Coming()
	if _, err := w.DoComing(context.Background(), 3); !errors.Is(err, ErrClosed) {
		t.Errorf("DoComing after Close = %v", err)
	}
	if n := w.coming.Load(); n != 0 {
		t.Errorf("coming = %d after every call ended, want 0", n)
	}
}

// parity is a Group that takes calls of the parity of its first, applies
// each as it joins (its answer is the value and the number of calls before it
// in the group), and never waits when odd.
type parity struct {
	vs   []int
	log  *[]string
	seen *sync.Mutex
}

func (p *parity) Add(v int) bool {
	if len(p.vs) > 0 && v%2 != p.vs[0]%2 {
		return false
	}
	p.vs = append(p.vs, v)
	return true
}

func (p *parity) Wait() bool { return p.vs[0]%2 == 0 }

func (p *parity) Commit() ([]int, error) {
	p.seen.Lock()
	*p.log = append(*p.log, fmt.Sprint(p.vs))
	p.seen.Unlock()
	out := make([]int, len(p.vs))
	for i, v := range p.vs {
		out[i] = 100*v + i
	}
	return out, nil
}

func TestGroupsRefuseAndHooks(t *testing.T) {
	var (
		mu     sync.Mutex
		log    []string
		after  atomic.Int64
		idle   = make(chan struct{}, 16)
		gate   = make(chan struct{})
		inside = make(chan struct{})
	)
	first := true
	w := NewGroups(func() Group[int, int] {
		if first { // the first group holds until the others are queued
			first = false
			close(inside)
			<-gate
		}
		return &parity{log: &log, seen: &mu}
	}, nil, Options{MaxCalls: 3, After: func() { after.Add(1) }, Idle: func() { idle <- struct{}{} }})
	defer w.Close()
	go func() { _, _ = w.Do(context.Background(), 0) }()
	<-inside
	outs, errs := make([]int, 5), make([]error, 5)
	var wg sync.WaitGroup
	for i, v := range []int{2, 4, 6, 1, 3} {
		wg.Add(1)
		go func() { defer wg.Done(); outs[i], errs[i] = w.Do(context.Background(), v) }()
		waitFor(t, func() bool { return len(w.reqs) == i+1 })
	}
	close(gate)
	wg.Wait()
	<-idle
	mu.Lock()
	defer mu.Unlock()
	// MaxCalls 3; 1 is refused by the even group of 6 and begins the next.
	want := []string{"[0 2 4]", "[6]", "[1 3]"}
	if !slices.Equal(log, want) {
		t.Errorf("groups = %v, want %v", log, want)
	}
	if want := []int{201, 402, 600, 100, 301}; !slices.Equal(outs, want) || errors.Join(errs...) != nil {
		t.Errorf("answers = %v, %v; want %v", outs, errs, want)
	}
	if n := after.Load(); n != 3 {
		t.Errorf("After ran %d times, want 3 (once per group)", n)
	}
}

func TestIdleAfter(t *testing.T) {
	idle := make(chan time.Time, 4)
	w := New(func(g []int) ([]int, error) { return g, nil }, nil,
		Options{Idle: func() { idle <- time.Now() }, IdleAfter: 20 * time.Millisecond})
	defer w.Close()
	done := time.Now()
	if _, err := w.Do(context.Background(), 1); err != nil {
		t.Fatal(err)
	}
	at := <-idle
	if d := at.Sub(done); d < 20*time.Millisecond {
		t.Errorf("Idle ran %v after the last group, want at least IdleAfter", d)
	}
	select {
	case <-idle:
		t.Error("Idle ran twice in one idle spell")
	case <-time.After(60 * time.Millisecond):
	}
}

func TestCancelledWhileQueuedIsLeftOut(t *testing.T) {
	w, r, release := blocked(t, Options{}, nil)
	ctx, cancel := context.WithCancel(context.Background())
	got := make(chan error, 1)
	go func() { _, err := w.Do(ctx, 1); got <- err }()
	waitFor(t, func() bool { return w.Queued() == 1 })
	live := make(chan error, 1)
	go func() { _, err := w.Do(context.Background(), 2); live <- err }()
	waitFor(t, func() bool { return w.Queued() == 2 })
	cancel()
	// Not in a group yet: Do returns at once, though the writer is still busy.
	if err := <-got; !errors.Is(err, context.Canceled) {
		t.Errorf("Do = %v, want context.Canceled", err)
	}
	release()
	if err := <-live; err != nil {
		t.Fatal(err)
	}
	if groups := r.recorded(); len(groups) != 2 || !slices.Equal(groups[1], []int{2}) {
		t.Errorf("groups = %v, want [[0] [2]]: the abandoned call left out", groups)
	}
}

// gated is a Group whose Commit signals entered and waits for open.
type gated struct {
	vs            []int
	entered, open chan struct{}
}

func (g *gated) Add(v int) bool { g.vs = append(g.vs, v); return true }
func (g *gated) Wait() bool     { return false }
func (g *gated) Commit() ([]int, error) {
	close(g.entered)
	<-g.open
	return slices.Clone(g.vs), nil
}

func TestCancelledInAGroupWaitsForItsCommit(t *testing.T) {
	g := &gated{entered: make(chan struct{}), open: make(chan struct{})}
	w := NewGroups(func() Group[int, int] { return g }, nil, Options{})
	defer w.Close()
	ctx, cancel := context.WithCancel(context.Background())
	type result struct {
		out int
		err error
	}
	got := make(chan result, 1)
	go func() { out, err := w.Do(ctx, 7); got <- result{out, err} }()
	<-g.entered
	cancel()
	select {
	case r := <-got:
		t.Fatalf("Do returned %v, %v while its group was committing", r.out, r.err)
	case <-time.After(20 * time.Millisecond):
	}
	close(g.open)
	// The call was committed: its answer says so, not ctx's error.
	if r := <-got; r.err != nil || r.out != 7 {
		t.Errorf("Do = %d, %v; want the commit's answer 7", r.out, r.err)
	}
}

func TestClose(t *testing.T) {
	w, _, release := blocked(t, Options{}, nil)
	answered := make(chan error, 1)
	go func() {
		_, err := w.Do(context.Background(), 1)
		answered <- err
	}()
	waitFor(t, func() bool { return w.Queued() == 1 })
	closed := make(chan struct{})
	go func() { w.Close(); close(closed) }()
	waitFor(t, func() bool { w.life.RLock(); defer w.life.RUnlock(); return w.closed })
	if _, err := w.Do(context.Background(), 2); !errors.Is(err, ErrClosed) || !errors.Is(err, apperr.ErrUnavailable) {
		t.Errorf("Do after Close = %v, want ErrClosed (unavailable)", err)
	}
	release()
	if err := <-answered; err != nil {
		t.Errorf("call handed over before Close: %v", err)
	}
	<-closed
	w.Close() // again: returns at once
}

// TestLoneCallerCommitsOnItsOwnGoroutine: a call that finds the writer idle is
// committed on its caller's goroutine (no handoff to the writer's goroutine and
// back), and Idle still runs after its group; a call that arrives while another
// group commits waits in the queue and goes to the writer's goroutine.
func TestLoneCallerCommitsOnItsOwnGoroutine(t *testing.T) {
	var (
		mu     sync.Mutex
		stacks = map[int]string{}
		gate   = make(chan struct{})
		inside = make(chan struct{}, 1)
		idle   = make(chan struct{}, 4)
	)
	w := New(func(vs []int) ([]int, error) {
		buf := make([]byte, 64<<10)
		st := string(buf[:runtime.Stack(buf, false)])
		mu.Lock()
		for _, v := range vs {
			stacks[v] = st
		}
		mu.Unlock()
		if slices.Contains(vs, 1) {
			inside <- struct{}{}
			<-gate
		}
		return vs, nil
	}, nil, Options{Idle: func() { idle <- struct{}{} }})
	defer w.Close()
	if _, err := w.Do(context.Background(), 0); err != nil {
		t.Fatal(err)
	}
	select {
	case <-idle:
	case <-time.After(10 * time.Second):
		t.Fatal("Idle did not run after the lone call's group")
	}
	done := make(chan error, 2)
	go func() { _, err := w.Do(context.Background(), 1); done <- err }()
	<-inside
	go func() { _, err := w.Do(context.Background(), 2); done <- err }()
	waitFor(t, func() bool { return w.Queued() == 1 })
	close(gate)
	noErrors(t, done, 2)
	mu.Lock()
	defer mu.Unlock()
	if !strings.Contains(stacks[0], "TestLoneCallerCommitsOnItsOwnGoroutine(") {
		t.Errorf("the lone call was not committed on its caller's goroutine:\n%s", stacks[0])
	}
	if !strings.Contains(stacks[2], ").run(") {
		t.Errorf("the call queued behind a commit was not committed by the writer's goroutine:\n%s", stacks[2])
	}
}

// TestRefusedByALoneCallersGroup: a call refused by the group of a caller that
// committed alone begins the next group, which the writer's goroutine commits.
func TestRefusedByALoneCallersGroup(t *testing.T) {
	var (
		mu     sync.Mutex
		log    []string
		gate   = make(chan struct{})
		inside = make(chan struct{})
	)
	first := true
	w := NewGroups(func() Group[int, int] {
		if first { // the lone caller's group holds until 1 and 3 are queued
			first = false
			close(inside)
			<-gate
		}
		return &parity{log: &log, seen: &mu}
	}, nil, Options{})
	defer w.Close()
	done := make(chan error, 3)
	go func() { _, err := w.Do(context.Background(), 0); done <- err }()
	<-inside
	for i, v := range []int{1, 3} {
		go func() { _, err := w.Do(context.Background(), v); done <- err }()
		waitFor(t, func() bool { return w.Queued() == i+1 })
	}
	close(gate)
	noErrors(t, done, 3)
	mu.Lock()
	defer mu.Unlock()
	if want := []string{"[0]", "[1 3]"}; !slices.Equal(log, want) {
		t.Errorf("groups = %v, want %v", log, want)
	}
}

// noErrors waits for n calls' errors on done and fails on the first one.
func noErrors(t *testing.T, done <-chan error, n int) {
	t.Helper()
	for range n {
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
}
