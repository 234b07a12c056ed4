package atomicfile_test

import (
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"testing"

	"github.com/atrium-iot/atrium/internal/atomicfile"
)

// TestWrite: each write leaves the directory holding the file alone (no temporary
// file), with the new content and mode 0600.
func TestWrite(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "doc.json")
	for _, content := range []string{"first\n", "second, longer than the first\n", ""} {
		if err := atomicfile.Write(path, []byte(content)); err != nil {
			t.Fatal(err)
		}
		if got, err := os.ReadFile(path); err != nil || string(got) != content {
			t.Fatalf("read back %q, %v; want %q", got, err, content)
		}
		modes := map[string]fs.FileMode{}
		entries, err := os.ReadDir(dir)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range entries {
			info, err := e.Info()
			if err != nil {
				t.Fatal(err)
			}
			modes[e.Name()] = info.Mode()
		}
		if want := map[string]fs.FileMode{"doc.json": 0o600}; !maps.Equal(modes, want) {
			t.Errorf("directory after writing %q: %v, want %v", content, modes, want)
		}
	}
	if err := atomicfile.Write(filepath.Join(dir, "missing", "doc.json"), []byte("x")); err == nil {
		t.Error("writing into a missing directory succeeded")
	}
}
