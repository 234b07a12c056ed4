-- Batch ids are scoped to their caller and remembered with a fingerprint of the
-- request. batches.id (and outbox.batch_id) now hold the batch's key,
-- sensor.BatchKey(principal, batch id); principal is the caller and fingerprint
-- the request's (sensor.Fingerprint). Rows from before keep their plain id and
-- get '' for both: no caller's key is a plain id, so a resent old batch is
-- stored again as a new one (its readings then count as duplicates), and their
-- pending events are still published.
ALTER TABLE batches ADD COLUMN principal TEXT NOT NULL DEFAULT '';
ALTER TABLE batches ADD COLUMN fingerprint TEXT NOT NULL DEFAULT '';
