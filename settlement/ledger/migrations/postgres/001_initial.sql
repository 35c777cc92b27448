-- Foundation schema: registered gateways, raw signed envelopes, readings, rejections.
-- Mirrors migrations/sqlite/001_initial.sql column for column. Integers that can pass 2^31
-- (Wh counters, ms instants, seq) are BIGINT; the ledger reads them back as JS numbers.
-- Ids are COLLATE "C" so that ORDER BY and comparisons are bytewise, as in SQLite, whatever
-- the database's default collation.
CREATE TABLE gateways (
  id             TEXT COLLATE "C" PRIMARY KEY,
  public_key_pem TEXT NOT NULL,
  -- pending: enrolled, not yet allowed to report; revoked: refused from revoked_at_ms on.
  status         TEXT NOT NULL CHECK (status IN ('pending', 'active', 'revoked')),
  created_at_ms  BIGINT NOT NULL,
  -- scrypt hash of the gateway's MQTT password (broker/credentials.ts); null before enrollment.
  mqtt_secret_hash TEXT,
  revoked_at_ms  BIGINT
);

-- The payload exactly as received: what an auditor re-verifies.
CREATE TABLE envelopes (
  id             TEXT COLLATE "C" PRIMARY KEY,
  gateway        TEXT COLLATE "C" NOT NULL REFERENCES gateways(id),
  received_at_ms BIGINT NOT NULL,
  reading_count  INTEGER NOT NULL,
  raw            TEXT NOT NULL
);

CREATE TABLE readings (
  meter            TEXT COLLATE "C" NOT NULL,
  seq              BIGINT NOT NULL,
  envelope_id      TEXT COLLATE "C" NOT NULL REFERENCES envelopes(id),
  gateway          TEXT COLLATE "C" NOT NULL,
  ts_ms            BIGINT NOT NULL,
  import_wh        BIGINT NOT NULL,
  export_wh        BIGINT NOT NULL,
  power_w          BIGINT NOT NULL,
  voltage_mv       BIGINT,
  current_ma       BIGINT,
  frequency_mhz    BIGINT,
  prev             TEXT NOT NULL,
  hash             TEXT NOT NULL,
  received_at_ms   BIGINT NOT NULL,
  PRIMARY KEY (meter, seq)
);
CREATE INDEX readings_envelope ON readings (envelope_id);

CREATE TABLE rejections (
  id             BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  received_at_ms BIGINT NOT NULL,
  topic          TEXT NOT NULL,
  gateway        TEXT COLLATE "C",
  envelope_id    TEXT COLLATE "C",
  reason         TEXT NOT NULL,
  detail         TEXT NOT NULL,
  -- At most the first 64 KiB of the payload, with the full size and digest.
  payload        BYTEA NOT NULL,
  payload_bytes  BIGINT NOT NULL,
  payload_sha256 TEXT NOT NULL
);
CREATE INDEX rejections_reason ON rejections (reason);
