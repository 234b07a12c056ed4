package spool

import (
	"context"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"math/bits"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

// TestBatchIDsAreRandom: a batch id is 128 bits that look random (each bit set in
// about half of a thousand ids), says nothing of the batch's place in the spool, and
// two spools holding the same readings give their batches different ids.
func TestBatchIDsAreRandom(t *testing.T) {
	const n = 1000
	dir := t.TempDir()
	a := openTest(t, filepath.Join(dir, "a.db"), Options{})
	b := openTest(t, filepath.Join(dir, "b.db"), Options{})
	for _, s := range []*Spool{a, b} {
		if err := s.Append(context.Background(), readings(0, n)); err != nil {
			t.Fatal(err)
		}
	}
	ba, err := a.FormBatches(n, 1, 0)
	if err != nil || len(ba) != n {
		t.Fatalf("FormBatches = %d batches, err %v; want %d", len(ba), err, n)
	}
	bb, err := b.FormBatches(n, 1, 0)
	if err != nil || len(bb) != n {
		t.Fatalf("FormBatches = %d batches, err %v; want %d", len(bb), err, n)
	}
	seen := map[string]bool{}
	var ones [idLen * 8]int
	for i, bt := range ba {
		raw, err := hex.DecodeString(bt.ID)
		if err != nil || len(raw) != 16 {
			t.Fatalf("batch id %q: want 32 hex digits (128 bits), err %v", bt.ID, err)
		}
		if seen[bt.ID] {
			t.Fatalf("batch id %q given twice", bt.ID)
		}
		seen[bt.ID] = true
		if bb[i].First != bt.First || bb[i].ID == bt.ID || seen[bb[i].ID] {
			t.Fatalf("batch %d: ids %q and %q of two spools for seq %d/%d: want different ids", i, bt.ID, bb[i].ID, bt.First, bb[i].First)
		}
		for j, c := range raw {
			for k := range 8 {
				ones[j*8+k] += int(c >> k & 1)
			}
		}
	}
	// For 1000 fair bits the count is 500 ± 16 (one standard deviation): 350–650 is
	// beyond nine of them; a counter, a timestamp or a seq would fail it.
	for i, c := range ones {
		if c < 350 || c > 650 {
			t.Errorf("bit %d of the batch ids set in %d of %d ids: not random", i, c, n)
		}
	}
	// Consecutive batches do not have consecutive (or otherwise close) ids.
	for i := 1; i < len(ba); i++ {
		x, _ := hex.DecodeString(ba[i-1].ID)
		y, _ := hex.DecodeString(ba[i].ID)
		diff := 0
		for j := range x {
			diff += bits.OnesCount8(x[j] ^ y[j])
		}
		if diff < 20 {
			t.Fatalf("ids %s and %s of consecutive batches differ in %d bits", ba[i-1].ID, ba[i].ID, diff)
		}
	}
}

// TestBatchIDsStableAcrossRestarts: open batches keep their ids and readings across
// a close and reopen, and are acked by them; ids that are not this spool's (a guess,
// another spool's, the old "<uuid>-<seq>" form) name no batch.
func TestBatchIDsStableAcrossRestarts(t *testing.T) {
	path := filepath.Join(t.TempDir(), "spool.db")
	s := openTest(t, path, Options{})
	appendAll(t, s, readings(0, 12))
	formed, err := s.FormBatches(3, 4, 0)
	if err != nil || len(formed) != 3 {
		t.Fatalf("FormBatches = %d, %v", len(formed), err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	for round := range 2 {
		s = openTest(t, path, Options{})
		open, err := s.OpenBatches()
		if err != nil {
			t.Fatal(err)
		}
		if len(open) != len(formed) {
			t.Fatalf("round %d: %d open batches, want %d", round, len(open), len(formed))
		}
		for i, b := range open {
			if b.ID != formed[i].ID || !equalReadings(b.Readings, formed[i].Readings) {
				t.Fatalf("round %d: open batch %d = %s, want %s with the same readings", round, i, b.ID, formed[i].ID)
			}
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
	}
	s = openTest(t, path, Options{})
	guess := []string{
		"", "x", "00000000000000000000000000000000", formed[0].ID[:31] + "0",
		"1b4e28ba-2fa1-11d2-883f-0016d3cca427-1", // the version 1 form
		formed[0].ID + "-1",
	}
	if guess[3] == formed[0].ID {
		guess[3] = formed[0].ID[:31] + "1"
	}
	for _, id := range guess {
		if err := s.AckBatch(id); !errors.Is(err, ErrUnknownBatch) {
			t.Errorf("AckBatch(%q) = %v, want ErrUnknownBatch", id, err)
		}
	}
	if err := s.AckBatch(formed[1].ID); err != nil {
		t.Fatal(err)
	}
	if err := s.DeadLetterBatch(formed[2].ID, "test"); err != nil {
		t.Fatal(err)
	}
	dls, err := s.DeadLetters(0)
	if err != nil || len(dls) != 4 || dls[0].Batch != formed[2].ID {
		t.Fatalf("dead letters %+v, %v: want the 4 readings of %s", dls, err, formed[2].ID)
	}
	if st := s.Stats(); st.OpenBatches != 1 || st.Readings != 4 {
		t.Fatalf("stats %+v, want one open batch of 4", st)
	}
}

// TestUpgradeFromVersion1: a file written by a build with "<uuid>-<seq>" ids opens;
// its open batch keeps its readings under a new random id, stable from then on.
func TestUpgradeFromVersion1(t *testing.T) {
	path := filepath.Join(t.TempDir(), "spool.db")
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	at := make([]byte, 8)
	binary.BigEndian.PutUint64(at, uint64(time.Now().UnixNano()))
	err = db.Update(func(tx *bolt.Tx) error {
		meta, _ := tx.CreateBucket(bucketMeta)
		rb, _ := tx.CreateBucket(bucketReadings)
		if _, err := tx.CreateBucket(bucketDead); err != nil {
			return err
		}
		for i := range 6 {
			if err := rb.Put(seqKey(uint64(i+1)), append(append([]byte(nil), at...), reading(i)...)); err != nil {
				return err
			}
		}
		if err := rb.SetSequence(6); err != nil {
			return err
		}
		rec := make([]byte, 24) // the open batch: seqs 1 to 4
		binary.BigEndian.PutUint64(rec[0:], 1)
		binary.BigEndian.PutUint64(rec[8:], 1)
		binary.BigEndian.PutUint64(rec[16:], 4)
		for k, v := range map[string][]byte{"version": []byte("1"), "instance": []byte("1b4e28ba-2fa1-11d2-883f-0016d3cca427"), "batch": rec} {
			if err := meta.Put([]byte(k), v); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}

	s, err := Open(path, Options{})
	if err != nil {
		t.Fatalf("Open a version 1 file: %v", err)
	}
	open, err := s.OpenBatches()
	if err != nil || len(open) != 1 {
		t.Fatalf("OpenBatches = %d, %v", len(open), err)
	}
	b := open[0]
	if _, err := hex.DecodeString(b.ID); err != nil || len(b.ID) != 32 || !equalReadings(b.Readings, readings(0, 4)) {
		t.Fatalf("upgraded open batch %s with %q, want a 128-bit id and readings 0-3", b.ID, b.Readings)
	}
	if err := s.AckBatch("1b4e28ba-2fa1-11d2-883f-0016d3cca427-" + strconv.Itoa(1)); !errors.Is(err, ErrUnknownBatch) {
		t.Errorf("AckBatch(old id) = %v, want ErrUnknownBatch", err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openTest(t, path, Options{})
	again, err := s.OpenBatches()
	if err != nil || len(again) != 1 || again[0].ID != b.ID {
		t.Fatalf("after reopen: %+v, %v; want %s", again, err, b.ID)
	}
	if rest := drainAll(t, s, 100); !equalReadings(rest, readings(0, 6)) {
		t.Errorf("drained %q, want readings 0-5", rest)
	}
	var version string
	_ = s.view(func(tx *bolt.Tx) error { version = string(tx.Bucket(bucketMeta).Get(metaVersion)); return nil })
	if version != formatVersion {
		t.Errorf("format version %q after the upgrade, want %q", version, formatVersion)
	}
}
