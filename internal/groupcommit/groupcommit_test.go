package groupcommit

import (
	"context"
	"errors"
	"slices"
	"sync"
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
	waitFor(t, func() bool { return len(w.reqs) == len(vs) })
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

func TestMaxWait(t *testing.T) {
	r := &recorder{}
	w := New(r.commit, nil, Options{MaxWait: time.Hour, MaxSize: 3})
	defer w.Close()
	var wg sync.WaitGroup
	for v := range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if out, err := w.Do(context.Background(), v); err != nil || out != 2*v {
				t.Errorf("Do(%d) = %d, %v", v, out, err)
			}
		}()
		// Each call arrives after the group opened: only MaxWait gathers them.
		waitFor(t, func() bool { return len(w.reqs) == 0 })
	}
	wg.Wait()
	if groups := r.recorded(); len(groups) != 1 || len(groups[0]) != 3 {
		t.Errorf("groups = %v, want one of three calls", groups)
	}
}

func TestClose(t *testing.T) {
	w, _, release := blocked(t, Options{}, nil)
	answered := make(chan error, 1)
	go func() {
		_, err := w.Do(context.Background(), 1)
		answered <- err
	}()
	waitFor(t, func() bool { return len(w.reqs) == 1 })
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
