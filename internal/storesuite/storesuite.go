// Package storesuite is the scaffolding every service's store contract suite
// (services/*/storetest) shares: each case runs in a subtest of its own, against
// a store of its own that it may close and reopen to check what survives, and
// every store opened is closed when the subtest ends. It knows no service.
package storesuite

import (
	"io"
	"maps"
	"slices"
	"sync"
	"testing"
)

// Opener opens the store called name, failing t if it cannot. The same name
// opens the same data again; different names are independent, empty stores.
type Opener[S io.Closer] func(t *testing.T, name string) S

// Suite is a contract suite: the stores it runs against and its cases.
type Suite[S io.Closer, H any] struct {
	Open Opener[S]
	// StoreName turns a case's name into its store's name; nil keeps the
	// case's name.
	StoreName func(caseName string) string
	// Harness wraps a case's Harness, its store already open, in the suite's
	// own harness type (which adds the suite's helpers).
	Harness func(*Harness[S]) H
	// Cases are the suite's checks by name (which is also the subtest's).
	Cases map[string]func(t *testing.T, h H)
}

// Run runs every case in a subtest of its own, in the order of their names.
func (s Suite[S, H]) Run(t *testing.T) {
	for _, name := range slices.Sorted(maps.Keys(s.Cases)) {
		t.Run(name, func(t *testing.T) {
			store := name
			if s.StoreName != nil {
				store = s.StoreName(name)
			}
			h := &Harness[S]{T: t, open: s.Open, name: store}
			h.Reopen()
			s.Cases[name](t, s.Harness(h))
		})
	}
}

// Harness holds the store of one case.
type Harness[S io.Closer] struct {
	T *testing.T
	S S // the store opened last

	open  Opener[S]
	name  string
	close func() error
}

// Reopen closes the store opened last, unless the case has closed it, failing
// the test if that fails; opens the case's store again; and arranges for it to
// be closed at the end of the test. It returns the store, also in S.
func (h *Harness[S]) Reopen() S {
	h.T.Helper()
	if err := h.Close(); err != nil {
		h.T.Fatalf("close store: %v", err)
	}
	s := h.open(h.T, h.name)
	var once sync.Once
	var err error
	closeFn := func() error {
		once.Do(func() { err = s.Close() })
		return err
	}
	h.T.Cleanup(func() {
		if err := closeFn(); err != nil {
			h.T.Errorf("close store: %v", err)
		}
	})
	h.S, h.close = s, closeFn
	return s
}

// Close closes the store opened last; closing it again returns the first
// call's error without calling the store.
func (h *Harness[S]) Close() error {
	if h.close == nil {
		return nil
	}
	return h.close()
}
