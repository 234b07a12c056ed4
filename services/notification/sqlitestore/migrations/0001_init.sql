-- Key/value facts about the store itself (e.g. that the default rules were seeded).
CREATE TABLE meta (
    key   TEXT NOT NULL PRIMARY KEY,
    value TEXT NOT NULL
) WITHOUT ROWID;

-- Rules as their JSON (the webhook secret included), keyed by id.
CREATE TABLE rules (
    id   TEXT NOT NULL PRIMARY KEY,
    body TEXT NOT NULL
) WITHOUT ROWID;

-- Alerts; seq orders them (newest raised = highest seq) and is the list cursor.
CREATE TABLE alerts (
    seq         INTEGER NOT NULL PRIMARY KEY,
    id          TEXT    NOT NULL UNIQUE,
    rule_id     TEXT    NOT NULL,
    room_id     TEXT    NOT NULL DEFAULT '',
    sensor_id   TEXT    NOT NULL DEFAULT '',
    type        TEXT    NOT NULL DEFAULT '',
    severity    TEXT    NOT NULL,
    state       TEXT    NOT NULL,
    value       REAL    NOT NULL,
    message     TEXT    NOT NULL DEFAULT '',
    raised_ms   INTEGER NOT NULL,
    acked_ms    INTEGER,
    resolved_ms INTEGER
);

-- At most one open alert per condition: the store's guard against duplicates.
CREATE UNIQUE INDEX alerts_open ON alerts (rule_id, room_id, sensor_id, type) WHERE state != 'resolved';
CREATE INDEX alerts_state ON alerts (state, seq);

-- The system event log; seq orders it and is the list cursor.
CREATE TABLE events (
    seq         INTEGER NOT NULL PRIMARY KEY,
    id          TEXT    NOT NULL UNIQUE,
    type        TEXT    NOT NULL,
    severity    TEXT    NOT NULL DEFAULT '',
    room_id     TEXT    NOT NULL DEFAULT '',
    sensor_id   TEXT    NOT NULL DEFAULT '',
    alert_id    TEXT    NOT NULL DEFAULT '',
    rule_id     TEXT    NOT NULL DEFAULT '',
    message     TEXT    NOT NULL DEFAULT '',
    data        TEXT,
    time_ms     INTEGER NOT NULL,
    recorded_ms INTEGER NOT NULL
);

CREATE INDEX events_type ON events (type, seq);
CREATE INDEX events_room ON events (room_id, seq);

-- Sensor last-seen times, so silence detection survives a restart.
CREATE TABLE sensors (
    id           TEXT    NOT NULL PRIMARY KEY,
    room_id      TEXT    NOT NULL DEFAULT '',
    last_seen_ms INTEGER NOT NULL,
    offline      INTEGER NOT NULL DEFAULT 0
) WITHOUT ROWID;
