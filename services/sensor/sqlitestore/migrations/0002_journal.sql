-- The journal: batches' new readings not yet merged into the readings table, one
-- row per batch in the order they arrived, in the outbox's compact form (see
-- compact.go). Appending to it writes a few pages a batch, where the readings
-- table, keyed by sensor, would change one page per sensor a commit; the writer
-- moves its readings into readings in large sorted merges (see journal.go).
-- Its readings' identities are unique and not in readings (checked at ingest).
CREATE TABLE journal (
    seq         INTEGER PRIMARY KEY,
    received_ms INTEGER NOT NULL,
    body        BLOB    NOT NULL
);
