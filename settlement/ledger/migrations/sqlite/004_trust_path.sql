-- The trust path (issue 13). Mirrored column for column by postgres/004_trust_path.sql.

-- The archive holds exactly what was signed: the RFC 8785 bytes the signature covers and the raw
-- 64-byte signature. Rows of earlier releases are filled from their stored payload by the code
-- step of this migration (ledger/migrations.ts); 005 then drops the payload column.
ALTER TABLE envelopes ADD COLUMN signed TEXT;
ALTER TABLE envelopes ADD COLUMN sig BLOB;

-- Every refusal is counted per gateway, reason and hour; payloads are kept only as rate-limited
-- samples in `rejections` (ingest/rejection-recorder.ts), pruned after a retention period.
CREATE TABLE rejection_counts (
  gateway TEXT NOT NULL,       -- '' when the topic named no gateway
  reason  TEXT NOT NULL,
  hour_ms INTEGER NOT NULL,    -- start of the UTC hour
  count   INTEGER NOT NULL,
  PRIMARY KEY (gateway, reason, hour_ms)
) WITHOUT ROWID;
CREATE INDEX rejections_received ON rejections (received_at_ms);

-- Open gaps: two stored readings of a meter with seqs missing between them. Kept up to date by
-- the commit (ledger/plan.ts). Once a gap is older than [ingest] gap_grace_s, the energy across it
-- is booked as estimated interval energy; the split's parameters are kept so that a late fill
-- removes exactly what was booked before adding the exact pairs.
CREATE TABLE meter_gaps (
  meter           TEXT NOT NULL,
  from_seq        INTEGER NOT NULL,
  to_seq          INTEGER NOT NULL,
  opened_at_ms    INTEGER NOT NULL,
  estimated_at_ms INTEGER,
  est_market      TEXT,
  est_interval_ms INTEGER,
  est_time_zone   TEXT,
  PRIMARY KEY (meter, from_seq)
) WITHOUT ROWID;
CREATE INDEX meter_gaps_due ON meter_gaps (opened_at_ms) WHERE estimated_at_ms IS NULL;
INSERT INTO meter_gaps (meter, from_seq, to_seq, opened_at_ms)
  SELECT meter, prev_seq, seq, received_at_ms FROM
    (SELECT meter, seq, received_at_ms, lag(seq) OVER (PARTITION BY meter ORDER BY seq) AS prev_seq FROM readings) AS s
  WHERE seq - prev_seq > 1;

-- Estimated energy (across gaps) beside the exact energy (consecutive readings).
ALTER TABLE interval_energy ADD COLUMN est_import_wh INTEGER NOT NULL DEFAULT 0;
ALTER TABLE interval_energy ADD COLUMN est_export_wh INTEGER NOT NULL DEFAULT 0;

-- A meter moved from a revoked gateway to its replacement: the new gateway's chain starts at from_seq.
CREATE TABLE meter_handovers (
  meter       TEXT NOT NULL,
  from_seq    INTEGER NOT NULL,
  old_gateway TEXT NOT NULL,
  new_gateway TEXT NOT NULL,
  at_ms       INTEGER NOT NULL,
  PRIMARY KEY (meter, from_seq)
);

-- API keys: only the SHA-256 of a key is kept; `id` is its public handle (shown in lists, used to revoke).
CREATE TABLE api_keys (
  id            TEXT PRIMARY KEY,
  key_hash      TEXT NOT NULL UNIQUE,
  role          TEXT NOT NULL,
  label         TEXT NOT NULL,
  created_at_ms INTEGER NOT NULL,
  revoked_at_ms INTEGER
);
