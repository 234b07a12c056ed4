-- The reading types of each sensor, as its last sensor.status.changed named
-- them (comma separated), so that sensor_silent rules scoped to a metric still
-- apply to it after a restart.
ALTER TABLE sensors ADD COLUMN types TEXT NOT NULL DEFAULT '';
