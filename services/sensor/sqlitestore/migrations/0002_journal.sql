-- The journal: readings accepted but not yet merged into the readings table, in
-- the order they arrived. Appending to it fills pages one after another, where the
-- readings table, keyed by sensor, would change one page per sensor a commit; the
-- writer moves its rows into readings in large sorted merges (see journal.go).
-- Its rows' identities are unique and not in readings (checked at ingest).
CREATE TABLE journal (
    seq         INTEGER PRIMARY KEY,
    sensor_id   TEXT    NOT NULL,
    ts_ms       INTEGER NOT NULL,
    type        TEXT    NOT NULL,
    room_id     TEXT    NOT NULL DEFAULT '',
    site        TEXT    NOT NULL DEFAULT '',
    value       REAL    NOT NULL,
    unit        TEXT    NOT NULL DEFAULT '',
    received_ms INTEGER NOT NULL
);
