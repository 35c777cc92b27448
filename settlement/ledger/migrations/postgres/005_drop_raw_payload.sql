-- After 004 filled `signed` and `sig` for every envelope (see the SQLite file).
ALTER TABLE envelopes DROP COLUMN raw;
ALTER TABLE envelopes ALTER COLUMN signed SET NOT NULL;
ALTER TABLE envelopes ALTER COLUMN sig SET NOT NULL;
