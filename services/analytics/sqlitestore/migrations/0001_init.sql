-- The analytics service's copy of the readings: the identities, for dedupe, and
-- per-minute rollups per room and type and per type (building-wide), which every
-- query reads.
-- A reading's identity is (sensor_id, type, ts); series names each (sensor_id,
-- type) once, so the identities take two integers.
CREATE TABLE series (
    id        INTEGER PRIMARY KEY,
    sensor_id TEXT NOT NULL,
    type      TEXT NOT NULL,
    UNIQUE (sensor_id, type)
);
CREATE TABLE readings (
    series INTEGER NOT NULL,
    ts     INTEGER NOT NULL, -- Unix ms
    PRIMARY KEY (series, ts)
) WITHOUT ROWID;

-- mn_ts / mx_ts: the earliest reading time (Unix ms) of the minute's min / max.
CREATE TABLE room_minute (
    room_id TEXT    NOT NULL,
    type    TEXT    NOT NULL,
    minute  INTEGER NOT NULL, -- Unix minute
    n       INTEGER NOT NULL,
    s       REAL    NOT NULL,
    mn      REAL    NOT NULL,
    mn_ts   INTEGER NOT NULL,
    mx      REAL    NOT NULL,
    mx_ts   INTEGER NOT NULL,
    PRIMARY KEY (room_id, type, minute)
) WITHOUT ROWID;

CREATE TABLE type_minute (
    type   TEXT    NOT NULL,
    minute INTEGER NOT NULL,
    n      INTEGER NOT NULL,
    s      REAL    NOT NULL,
    mn     REAL    NOT NULL,
    mn_ts  INTEGER NOT NULL,
    mx     REAL    NOT NULL,
    mx_ts  INTEGER NOT NULL,
    PRIMARY KEY (type, minute)
) WITHOUT ROWID;
CREATE INDEX type_minute_by_minute ON type_minute (minute, type, n, s, mn, mx);

-- The latest reading per room and type.
CREATE TABLE latest (
    room_id TEXT    NOT NULL,
    type    TEXT    NOT NULL,
    ts      INTEGER NOT NULL,
    value   REAL    NOT NULL,
    PRIMARY KEY (room_id, type)
) WITHOUT ROWID;

CREATE TABLE alerts (
    id          TEXT PRIMARY KEY,
    raised_at   INTEGER, -- Unix ms, NULL until raised
    resolved_at INTEGER  -- Unix ms, NULL until resolved
) WITHOUT ROWID;

CREATE TABLE reports (
    id         TEXT PRIMARY KEY,
    created_at INTEGER NOT NULL, -- Unix ms
    status     TEXT    NOT NULL,
    meta       TEXT    NOT NULL, -- JSON of analytics.Report without content
    content    BLOB
);
CREATE INDEX reports_by_created ON reports (created_at DESC, id DESC);
CREATE INDEX reports_pending ON reports (status, created_at, id);
