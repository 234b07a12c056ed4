-- Readings are keyed by their identity. The primary key (sensor_id, ts_ms, type)
-- serves both the duplicate check of INSERT OR IGNORE and a sensor's readings in
-- time order, so the table needs no second index.
CREATE TABLE readings (
    sensor_id   TEXT    NOT NULL,
    ts_ms       INTEGER NOT NULL,
    type        TEXT    NOT NULL,
    room_id     TEXT    NOT NULL DEFAULT '',
    site        TEXT    NOT NULL DEFAULT '',
    value       REAL    NOT NULL,
    unit        TEXT    NOT NULL DEFAULT '',
    received_ms INTEGER NOT NULL,
    PRIMARY KEY (sensor_id, ts_ms, type)
) WITHOUT ROWID;

-- The registry: one row per sensor ever seen.
CREATE TABLE sensors (
    id            TEXT    NOT NULL PRIMARY KEY,
    room_id       TEXT    NOT NULL DEFAULT '',
    site          TEXT    NOT NULL DEFAULT '',
    first_seen_ms INTEGER NOT NULL,
    last_seen_ms  INTEGER NOT NULL
) WITHOUT ROWID;

CREATE INDEX sensors_room ON sensors (room_id, id);

-- Per sensor and type: the reading with the newest timestamp.
CREATE TABLE sensor_types (
    sensor_id TEXT    NOT NULL REFERENCES sensors (id),
    type      TEXT    NOT NULL,
    value     REAL    NOT NULL,
    unit      TEXT    NOT NULL DEFAULT '',
    ts_ms     INTEGER NOT NULL,
    PRIMARY KEY (sensor_id, type)
) WITHOUT ROWID;

CREATE INDEX sensor_types_type ON sensor_types (type, sensor_id);

-- The answer given to each batch id, returned again when the batch is resent.
CREATE TABLE batches (
    id          TEXT    NOT NULL PRIMARY KEY,
    result      TEXT    NOT NULL,
    received_ms INTEGER NOT NULL
) WITHOUT ROWID;

-- The outbox: sensor.data.received bodies not yet published. A row is deleted
-- when its event is acknowledged; seq keeps them oldest first.
CREATE TABLE outbox (
    seq      INTEGER NOT NULL PRIMARY KEY,
    batch_id TEXT    NOT NULL UNIQUE REFERENCES batches (id),
    body     BLOB    NOT NULL
);
