-- Foundation schema: registered gateways, raw signed envelopes, readings, rejections.
CREATE TABLE gateways (
  id             TEXT PRIMARY KEY,
  public_key_pem TEXT NOT NULL,
  -- pending: enrolled, not yet allowed to report; revoked: refused from revoked_at_ms on.
  status         TEXT NOT NULL CHECK (status IN ('pending', 'active', 'revoked')),
  created_at_ms  INTEGER NOT NULL,
  -- scrypt hash of the gateway's MQTT password (broker/credentials.ts); null before enrollment.
  mqtt_secret_hash TEXT,
  revoked_at_ms  INTEGER
);

-- The payload exactly as received: what an auditor re-verifies.
CREATE TABLE envelopes (
  id             TEXT PRIMARY KEY,
  gateway        TEXT NOT NULL REFERENCES gateways(id),
  received_at_ms INTEGER NOT NULL,
  reading_count  INTEGER NOT NULL,
  raw            TEXT NOT NULL
);

CREATE TABLE readings (
  meter            TEXT NOT NULL,
  seq              INTEGER NOT NULL,
  envelope_id      TEXT NOT NULL REFERENCES envelopes(id),
  gateway          TEXT NOT NULL,
  ts_ms            INTEGER NOT NULL,
  import_wh        INTEGER NOT NULL,
  export_wh        INTEGER NOT NULL,
  power_w          INTEGER NOT NULL,
  voltage_mv       INTEGER,
  current_ma       INTEGER,
  frequency_mhz    INTEGER,
  prev             TEXT NOT NULL,
  hash             TEXT NOT NULL,
  received_at_ms   INTEGER NOT NULL,
  PRIMARY KEY (meter, seq)
) WITHOUT ROWID;
CREATE INDEX readings_envelope ON readings (envelope_id);

CREATE TABLE rejections (
  id             INTEGER PRIMARY KEY AUTOINCREMENT,
  received_at_ms INTEGER NOT NULL,
  topic          TEXT NOT NULL,
  gateway        TEXT,
  envelope_id    TEXT,
  reason         TEXT NOT NULL,
  detail         TEXT NOT NULL,
  -- At most the first 64 KiB of the payload, with the full size and digest.
  payload        BLOB NOT NULL,
  payload_bytes  INTEGER NOT NULL,
  payload_sha256 TEXT NOT NULL
);
CREATE INDEX rejections_reason ON rejections (reason);
