// Package atomicfile replaces a small file whole: a reader sees the old content or
// the new one, never a part, and a crash leaves one of the two. The broker's
// credentials file and the gateway's keys file are written this way.
package atomicfile

import (
	"os"
	"path/filepath"
)

// Write replaces the file at path with data, readable and writable by its owner
// only (0600): it writes a hidden temporary file in the same directory, syncs it,
// renames it over path and syncs the directory, where the filesystem allows, so
// that the rename survives a crash. The directory must exist.
func Write(path string, data []byte) error {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".*.tmp")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name()) // finds nothing once renamed
	if err := f.Chmod(0o600); err != nil {
		f.Close()
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(f.Name(), path); err != nil {
		return err
	}
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync() // not every filesystem supports it
		d.Close()
	}
	return nil
}
