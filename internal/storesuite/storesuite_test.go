package storesuite

import (
	"slices"
	"strings"
	"testing"
)

// fake is a store that records its life in a shared log.
type fake struct {
	name string
	log  *[]string
}

func (f *fake) Close() error {
	*f.log = append(*f.log, "close "+f.name)
	return nil
}

func TestSuite(t *testing.T) {
	var log []string
	open := func(t *testing.T, name string) *fake {
		log = append(log, "open "+name)
		return &fake{name: name, log: &log}
	}
	t.Run("suite", func(t *testing.T) {
		Suite[*fake, *Harness[*fake]]{
			Open:      open,
			StoreName: strings.ToLower,
			Harness:   func(h *Harness[*fake]) *Harness[*fake] { return h },
			Cases: map[string]func(*testing.T, *Harness[*fake]){
				"First": func(t *testing.T, h *Harness[*fake]) {
					if h.T != t || h.S == nil || h.S.name != "first" {
						t.Errorf("harness: T %p (want %p), S %+v", h.T, t, h.S)
					}
					log = append(log, "run first")
				},
				"Reopen": func(t *testing.T, h *Harness[*fake]) {
					first := h.S
					if s := h.Reopen(); s == first || s != h.S {
						t.Error("Reopen did not open and keep a new store")
					}
					if err := h.Close(); err != nil {
						t.Fatal(err)
					}
					if err := h.Close(); err != nil {
						t.Fatal(err)
					}
					h.Reopen() // after Close: nothing more to close
				},
			},
		}.Run(t)
	})
	want := []string{
		"open first", "run first", "close first",
		"open reopen", "close reopen", "open reopen", "close reopen", "open reopen", "close reopen",
	}
	if !slices.Equal(log, want) {
		t.Errorf("log:\n got %q\nwant %q", log, want)
	}
}
