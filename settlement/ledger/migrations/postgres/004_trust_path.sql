-- The trust path (issue 13). Mirrors sqlite/004_trust_path.sql column for column.

-- The archive holds exactly what was signed (see the SQLite file).
ALTER TABLE envelopes ADD COLUMN signed TEXT;
ALTER TABLE envelopes ADD COLUMN sig BYTEA;
DO $$
BEGIN
  EXECUTE 'ALTER TABLE envelopes ALTER COLUMN signed SET COMPRESSION lz4';
EXCEPTION WHEN OTHERS THEN
  RAISE NOTICE 'envelopes.signed keeps the default compression: %', SQLERRM;
END $$;

CREATE TABLE rejection_counts (
  gateway TEXT COLLATE "C" NOT NULL,
  reason  TEXT NOT NULL,
  hour_ms BIGINT NOT NULL,
  count   BIGINT NOT NULL,
  PRIMARY KEY (gateway, reason, hour_ms)
);
CREATE INDEX rejections_received ON rejections (received_at_ms);

CREATE TABLE meter_gaps (
  meter           TEXT COLLATE "C" NOT NULL,
  from_seq        BIGINT NOT NULL,
  to_seq          BIGINT NOT NULL,
  opened_at_ms    BIGINT NOT NULL,
  estimated_at_ms BIGINT,
  est_market      TEXT,
  est_interval_ms BIGINT,
  est_time_zone   TEXT,
  PRIMARY KEY (meter, from_seq)
);
CREATE INDEX meter_gaps_due ON meter_gaps (opened_at_ms) WHERE estimated_at_ms IS NULL;
INSERT INTO meter_gaps (meter, from_seq, to_seq, opened_at_ms)
  SELECT meter, prev_seq, seq, received_at_ms FROM
    (SELECT meter, seq, received_at_ms, lag(seq) OVER (PARTITION BY meter ORDER BY seq) AS prev_seq FROM readings) AS s
  WHERE seq - prev_seq > 1;

ALTER TABLE interval_energy ADD COLUMN est_import_wh BIGINT NOT NULL DEFAULT 0;
ALTER TABLE interval_energy ADD COLUMN est_export_wh BIGINT NOT NULL DEFAULT 0;

CREATE TABLE meter_handovers (
  meter       TEXT COLLATE "C" NOT NULL,
  from_seq    BIGINT NOT NULL,
  old_gateway TEXT COLLATE "C" NOT NULL,
  new_gateway TEXT COLLATE "C" NOT NULL,
  at_ms       BIGINT NOT NULL,
  PRIMARY KEY (meter, from_seq)
);

CREATE TABLE api_keys (
  id            TEXT COLLATE "C" PRIMARY KEY,
  key_hash      TEXT NOT NULL UNIQUE,
  role          TEXT NOT NULL,
  label         TEXT NOT NULL,
  created_at_ms BIGINT NOT NULL,
  revoked_at_ms BIGINT
);
