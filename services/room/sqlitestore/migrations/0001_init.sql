-- Rooms, created by POST /rooms or by the first reading that names them.
CREATE TABLE rooms (
    id         TEXT    NOT NULL PRIMARY KEY,
    name       TEXT    NOT NULL,
    floor      INTEGER,
    building   TEXT    NOT NULL DEFAULT '',
    capacity   INTEGER,
    area_m2    REAL,
    created_ms INTEGER NOT NULL,
    updated_ms INTEGER NOT NULL
) WITHOUT ROWID;

-- Where each sensor is: assigned = 1 when placed by PUT /rooms/{id}/sensors/{sid}
-- (its readings then follow the assignment); else the room of its newest reading
-- (seen_ms is that reading's time).
CREATE TABLE sensors (
    id       TEXT    NOT NULL PRIMARY KEY,
    room_id  TEXT    NOT NULL,
    assigned INTEGER NOT NULL DEFAULT 0,
    seen_ms  INTEGER NOT NULL
) WITHOUT ROWID;

CREATE INDEX sensors_room ON sensors (room_id, id);

-- The newest reading of each (room, type, sensor). It only moves forward in time.
CREATE TABLE latest (
    room_id   TEXT    NOT NULL,
    type      TEXT    NOT NULL,
    sensor_id TEXT    NOT NULL,
    value     REAL    NOT NULL,
    unit      TEXT    NOT NULL DEFAULT '',
    ts_ms     INTEGER NOT NULL,
    PRIMARY KEY (room_id, type, sensor_id)
) WITHOUT ROWID;

-- Rollups per room, type and minute (start_ms is the minute's start), per five
-- minutes and per hour: n readings, their sum, min and max. A history bucket
-- merges the rollups of the coarsest of these that divides it.
CREATE TABLE rollup_1m (
    room_id  TEXT    NOT NULL,
    type     TEXT    NOT NULL,
    start_ms INTEGER NOT NULL,
    n        INTEGER NOT NULL,
    vsum     REAL    NOT NULL,
    vmin     REAL    NOT NULL,
    vmax     REAL    NOT NULL,
    PRIMARY KEY (room_id, type, start_ms)
) WITHOUT ROWID;

CREATE TABLE rollup_5m (
    room_id  TEXT    NOT NULL,
    type     TEXT    NOT NULL,
    start_ms INTEGER NOT NULL,
    n        INTEGER NOT NULL,
    vsum     REAL    NOT NULL,
    vmin     REAL    NOT NULL,
    vmax     REAL    NOT NULL,
    PRIMARY KEY (room_id, type, start_ms)
) WITHOUT ROWID;

CREATE TABLE rollup_1h (
    room_id  TEXT    NOT NULL,
    type     TEXT    NOT NULL,
    start_ms INTEGER NOT NULL,
    n        INTEGER NOT NULL,
    vsum     REAL    NOT NULL,
    vmin     REAL    NOT NULL,
    vmax     REAL    NOT NULL,
    PRIMARY KEY (room_id, type, start_ms)
) WITHOUT ROWID;

-- The batch ids applied, so that a redelivered batch changes nothing, with the
-- rooms each went to (comma separated).
CREATE TABLE applied (
    batch_id TEXT    NOT NULL PRIMARY KEY,
    at_ms    INTEGER NOT NULL,
    rooms    TEXT    NOT NULL
) WITHOUT ROWID;

CREATE INDEX applied_at ON applied (at_ms);
