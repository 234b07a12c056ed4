// Package spool is the edge agent's durable store-and-forward queue: every reading the
// agent accepts is written to a bbolt file and fsynced before the device gets its PUBACK,
// and stays there until the cloud has acknowledged the batch that carried it.
//
// # Layout
//
// The file holds three buckets:
//
//   - "readings": key = big-endian uint64 sequence number, value = 8-byte big-endian
//     append time (Unix ns) followed by the reading's JSON. Bucket order is arrival
//     order, so per-sensor order is preserved. Sequence numbers are never reused (the
//     bucket's sequence holds the last one handed out, and compaction copies it).
//   - "dead": dead letters, key = big-endian uint64 id, value = JSON.
//   - "meta": the format version ("2") and the open batches record: per open batch,
//     oldest first, 56 bytes (original first, current first, last seq, and the batch's
//     32-byte random nonce). A version 1 file (24-byte records, no nonce) is upgraded
//     on Open: its open batches get a nonce, so new ids, and keep their readings; the
//     cloud takes them as new batches and counts what it already has as duplicates.
//     A build that reads version 1 only refuses a version 2 file; it does not misread it.
//
// Readings, bytes and dead letters are counted in memory and recounted from disk on Open.
//
// # Group commit
//
// Every write (Append, DeadLetter, forming a batch, AckBatch, DeadLetterBatch,
// TakeDeadLetters) goes to one writer goroutine, the project's group-commit writer
// (internal/groupcommit). It commits as soon as the previous commit has finished, in
// one bbolt transaction, whatever queued meanwhile, each call applied as it joins; it lingers
// up to Options.MaxDelay only while other callers are already inside Append or
// DeadLetter and about to queue, so a lone appender never waits for a timer. Each caller
// gets its own result: a call refused by the full policy changes nothing and does not
// affect the others in the same transaction; an I/O error fails the whole transaction
// and every call in it, and the in-memory counters stay as they were.
//
// # Batches
//
// A batch is a contiguous range of readings. Several batches can be open at once; their ranges do not overlap and the record
// lists them in seq order. FormBatch forms the next one from the oldest readings
// after the newest open batch (after the acked ones' holes, the ranges stay in seq
// order); NextBatch returns the oldest open batch, or forms one when none is open.
// Both persist the range in the commit that forms it, before returning it, so the
// same id always comes back with the same readings, also after a restart or a crash
// (OpenBatches lists them all). Invariant: one id, one content. A resent id therefore
// never carries a reading the cloud did not see under that id, and the cloud's answer
// (which names rejected readings by index) always lines up with the readings.
//
// # Batch ids
//
// A batch's id is the first 16 bytes of HMAC-SHA256(nonce, first seq), as 32 hex
// digits, where nonce is 32 bytes from crypto/rand made when the batch is formed and
// kept in its record, in the commit that forms it. So an id
//
//   - carries 128 bits that nobody can guess or derive: not from earlier ids, the
//     spool's sequence numbers, the time or the host, and the cloud's idempotency
//     record for it cannot be claimed by anyone else ahead of the agent;
//   - stays the same across retries, restarts and crashes (the nonce and the range
//     are on disk), so a resent batch is recognized by the cloud;
//   - changes when drop-oldest shrinks the batch (its first seq changes), and every
//     id given out for the batch since it was formed (first seqs from the original
//     one up to the current one) still names it;
//   - never names other readings, also when the file is restored from a backup or
//     copied to another machine and sequence numbers are handed out again: new
//     batches get new nonces.
//
// A secret kept once per file with an HMAC of each batch's range would also be
// stable, but would give the same id to different readings in the last two cases.
// The ids are needed by the agent and the cloud only: Stats and the agent's status
// server do not show them; logs do.
//
// AckBatch and DeadLetterBatch take any open batch, in any order. The spool itself
// does not order deliveries: the forwarder decides which open batches may be in
// flight together (package forward: only batches without a common sensor, so each
// sensor's readings reach the cloud in spool order).
//
// # Full spool
//
// MaxBytes bounds the readings' JSON plus a fixed 32 bytes per reading for the key,
// the append time and bbolt's per-record header, so the file tracks the bound. Dead
// letters get their own allowance of MaxBytes/10 (and at most MaxDeadLetters entries);
// the oldest are evicted to make room, and counted.
//
// With "reject-new" a call that does not fit fails with ErrFull and stores nothing.
// With "drop-oldest" the oldest readings are deleted to make room, also when they belong
// to open batches (the forwarder may have them in flight). Then, in the same
// transaction, open batches left without readings are removed and the one the cut
// falls into is shrunk to its remaining readings and gets a new id (its new first
// seq); the batches after it keep their ids. This keeps the invariant above: the
// cloud sees the shrunk batch as a new batch and drops the readings it already has by
// identity, so there is no loss and no duplicate. An AckBatch or DeadLetterBatch that
// names an older id of the same batch (the forwarder's request was in flight during the
// shrink) applies to what is left of it: the cloud's answer covered a superset.
//
// # Disk use
//
// bbolt never shrinks its file. After a commit, when no request is queued, the writer
// compacts the file when it is larger than MaxBytes and the live data is under a
// quarter of it (typically: a backlog was filled, then drained). Compaction copies the
// live data with bbolt.Compact into "<path>.compact", fsyncs it, renames it over the
// spool file, fsyncs the directory and reopens. A crash before the rename leaves the old
// file (the leftover temporary file is removed on Open); after it, the new complete one.
// While the spool is full the file holds MaxBytes of readings, up to MaxBytes/10 of dead
// letters, page slack (about 6% measured with 150-byte readings) and bbolt's growth
// step (16 MiB; below 16 MiB the file doubles instead).
//
// # Crash safety
//
// Append returns nil only after the bbolt commit (write + fdatasync) that holds its
// readings. An acked batch's readings and its record are deleted in one commit, so a
// crash never brings an acked batch back, whatever the order of the acks. bbolt's freelist is not written on each
// commit (NoFreelistSync, as etcd does); Open rebuilds it, about 0.1 s for a million
// readings. A call whose context ends while it waits for the writer (behind a long
// commit or a compaction, say) stores nothing and returns the context's error at
// once; a call already in the transaction being committed waits for that commit.
// Either way an error never leaves in doubt whether the call was stored.
package spool
