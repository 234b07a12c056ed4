-- The status last published for each sensor in sensor.status.changed
-- (sensor.StatusMark): the service compares the registry against it, so a
-- change is published once, across restarts.
CREATE TABLE sensor_status (
    sensor_id TEXT PRIMARY KEY,
    status    TEXT NOT NULL,
    at_ms     INTEGER NOT NULL
) WITHOUT ROWID;
