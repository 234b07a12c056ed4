package sqlitestore

import (
	"path/filepath"
	"testing"

	"github.com/atrium-iot/atrium/services/notification"
	"github.com/atrium-iot/atrium/services/notification/storetest"
)

func TestContract(t *testing.T) {
	dir := t.TempDir()
	storetest.Run(t, func(t *testing.T, name string) notification.Store {
		s, err := Open(t.Context(), filepath.Join(dir, name+".db"), Options{})
		if err != nil {
			t.Fatalf("Open: %v", err)
		}
		return s
	})
}

func TestOpen(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		name string
		path string
		opts Options
		ok   bool
	}{
		{"new file", filepath.Join(dir, "a.db"), Options{}, true},
		{"existing file", filepath.Join(dir, "a.db"), Options{}, true},
		{"normal sync", filepath.Join(dir, "b.db"), Options{Synchronous: "normal"}, true},
		{"unknown sync mode", filepath.Join(dir, "c.db"), Options{Synchronous: "sometimes"}, false},
		{"missing directory", filepath.Join(dir, "no", "such", "d.db"), Options{}, false},
		{"empty path", "", Options{}, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s, err := Open(t.Context(), tc.path, tc.opts)
			if (err == nil) != tc.ok {
				t.Fatalf("Open(%q): err = %v, want ok %v", tc.path, err, tc.ok)
			}
			if err != nil {
				return
			}
			defer s.Close()
			var version int
			if err := s.rdb.QueryRowContext(t.Context(), "PRAGMA user_version").Scan(&version); err != nil || version != 2 {
				t.Fatalf("user_version = %d, %v; want 2", version, err)
			}
		})
	}
}
