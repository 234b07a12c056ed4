package sqlitestore_test

import (
	"path/filepath"
	"testing"

	"github.com/atrium-iot/atrium/services/analytics/sqlitestore"
	"github.com/atrium-iot/atrium/services/analytics/storetest"
)

func TestContract(t *testing.T) {
	dir := t.TempDir()
	storetest.Run(t, func(t *testing.T, name string) storetest.Store {
		s, err := sqlitestore.Open(t.Context(), filepath.Join(dir, name+".db"), sqlitestore.Options{})
		if err != nil {
			t.Fatal(err)
		}
		return s
	})
}

func TestOpenErrors(t *testing.T) {
	tests := []struct {
		name string
		path string
		opts sqlitestore.Options
	}{
		{"empty path", "", sqlitestore.Options{}},
		{"query in path", "x.db?mode=ro", sqlitestore.Options{}},
		{"bad synchronous", filepath.Join(t.TempDir(), "a.db"), sqlitestore.Options{Synchronous: "SOMETIMES"}},
		{"missing directory", filepath.Join(t.TempDir(), "no", "such", "a.db"), sqlitestore.Options{}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if s, err := sqlitestore.Open(t.Context(), tc.path, tc.opts); err == nil {
				s.Close()
				t.Errorf("Open(%q) succeeded", tc.path)
			}
		})
	}
}
