package gateway

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync/atomic"
)

// keyFile is the keys file the gateway serves from: loaded at start, then reloaded
// whenever it changes on disk, so adding or removing a key needs no restart.
type keyFile struct {
	path     string
	log      *slog.Logger
	cur      atomic.Pointer[keyring]
	stamp    fileStamp
	onReload func(*keyring)
}

// fileStamp tells whether a file changed since it was read: a rename over it (as
// WriteKeys does) changes the inode, an edit in place the size or the time.
type fileStamp struct {
	fi      os.FileInfo
	missing bool
}

func (s fileStamp) same(fi os.FileInfo) bool {
	return s.fi != nil && fi != nil && os.SameFile(s.fi, fi) && s.fi.Size() == fi.Size() && s.fi.ModTime().Equal(fi.ModTime())
}

// openKeyFile loads path; a missing or invalid file is an error at start.
func openKeyFile(path string, log *slog.Logger) (*keyFile, error) {
	kf := &keyFile{path: path, log: log}
	fi, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("keys: %w", err)
	}
	if err := kf.load(fi); err != nil {
		return nil, err
	}
	return kf, nil
}

func (kf *keyFile) load(fi os.FileInfo) error {
	b, err := os.ReadFile(kf.path)
	if err != nil {
		return fmt.Errorf("keys: read: %w", err)
	}
	keys, err := decodeKeys(b)
	if err != nil {
		return fmt.Errorf("%s: %w", kf.path, err)
	}
	kr := newKeyring(keys)
	kf.cur.Store(kr)
	kf.stamp = fileStamp{fi: fi}
	if kf.onReload != nil {
		kf.onReload(kr)
	}
	return nil
}

// ring is the keys in force.
func (kf *keyFile) ring() *keyring { return kf.cur.Load() }

// check reloads the file when it changed. A file that disappeared revokes every
// key; a file that no longer parses keeps the last good keys and is reported.
func (kf *keyFile) check() {
	fi, err := os.Stat(kf.path)
	switch {
	case errors.Is(err, os.ErrNotExist):
		if !kf.stamp.missing {
			kf.log.Warn("keys file removed: every key is revoked", "keys_file", kf.path)
			kr := &keyring{}
			kf.cur.Store(kr)
			kf.stamp = fileStamp{missing: true}
			if kf.onReload != nil {
				kf.onReload(kr)
			}
		}
		return
	case err != nil:
		kf.log.Error("keys file unreadable", "keys_file", kf.path, "err", err)
		return
	case kf.stamp.same(fi):
		return
	}
	if err := kf.load(fi); err != nil {
		kf.stamp = fileStamp{fi: fi} // report a bad file once, not every tick
		kf.log.Error("keys file not reloaded, keeping the previous keys", "keys_file", kf.path, "err", err)
		return
	}
	kf.log.Info("keys file reloaded", "keys_file", kf.path, "keys", len(kf.ring().ids))
}
