-- Readings reference their envelope by an integer that grows with insertion (`ref`) instead
-- of the random 64-hex id. With the hex id as a key, every stored envelope dirtied a leaf page
-- of two indexes at random places (envelopes' primary key and readings_envelope); appends to
-- integer keys touch the last page only. The id stays in the envelope row; nothing needs an
-- index on it: a resent envelope is recognised by its readings, which are already stored
-- (ledger/plan.ts), and audits reach envelopes through a meter's readings.
CREATE TABLE envelopes_v3 (
  ref            INTEGER PRIMARY KEY,
  id             TEXT NOT NULL,
  gateway        TEXT NOT NULL REFERENCES gateways(id),
  received_at_ms INTEGER NOT NULL,
  reading_count  INTEGER NOT NULL,
  raw            TEXT NOT NULL
);
INSERT INTO envelopes_v3 (id, gateway, received_at_ms, reading_count, raw)
  SELECT id, gateway, received_at_ms, reading_count, raw FROM envelopes ORDER BY received_at_ms, id;
CREATE INDEX envelopes_v3_id ON envelopes_v3 (id);

CREATE TABLE readings_v3 (
  meter            TEXT NOT NULL,
  seq              INTEGER NOT NULL,
  envelope_ref     INTEGER NOT NULL REFERENCES envelopes_v3(ref),
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
INSERT INTO readings_v3
  SELECT r.meter, r.seq, e.ref, r.gateway, r.ts_ms, r.import_wh, r.export_wh, r.power_w, r.voltage_mv,
         r.current_ma, r.frequency_mhz, r.prev, r.hash, r.received_at_ms
  FROM readings r JOIN envelopes_v3 e ON e.id = r.envelope_id;

DROP INDEX envelopes_v3_id;
DROP TABLE readings;
DROP TABLE envelopes;
ALTER TABLE envelopes_v3 RENAME TO envelopes;
ALTER TABLE readings_v3 RENAME TO readings;
