-- Renewable Energy Certificates (docs/recs.md): minted by a job from verified exact export of
-- generation and bidirectional meters, one per meter and hour (UTC) of production, with the
-- readings they rest on. rec_coverage is what has been certified per meter and hour, so the same
-- Wh is never certified twice: a later fill of a gap certifies only what it adds.
-- Mirrored column for column by migrations/postgres/008_recs.sql.

CREATE TABLE recs (
  id               TEXT PRIMARY KEY,
  meter            TEXT NOT NULL REFERENCES meters(id),
  generator_owner  TEXT NOT NULL REFERENCES accounts(id),
  owner            TEXT NOT NULL REFERENCES accounts(id),   -- who holds it now
  energy_source    TEXT NOT NULL,
  market           TEXT NOT NULL,
  period_start_ms  INTEGER NOT NULL,
  period_end_ms    INTEGER NOT NULL,
  volume_wh        INTEGER NOT NULL CHECK (volume_wh > 0),
  issued_at_ms     INTEGER NOT NULL,
  status           TEXT NOT NULL CHECK (status IN ('active', 'for_sale', 'sold', 'retired')),
  first_seq        INTEGER NOT NULL,
  last_seq         INTEGER NOT NULL,
  envelopes        TEXT NOT NULL,               -- JSON array of the envelope ids of first_seq..last_seq
  price            TEXT,                        -- for sale: minor units of `currency` per kWh
  currency         TEXT,
  parent           TEXT,                   -- split from (partial retirement), same provenance
  retired_at_ms    INTEGER,
  retire_reason    TEXT,
  beneficiary      TEXT
);
CREATE INDEX recs_for_sale ON recs (status, energy_source);
CREATE INDEX recs_meter ON recs (meter, period_start_ms);
CREATE INDEX recs_owner ON recs (owner, status);

CREATE TABLE rec_coverage (
  meter          TEXT NOT NULL,
  hour_start_ms  INTEGER NOT NULL,
  certified_wh   INTEGER NOT NULL,
  PRIMARY KEY (meter, hour_start_ms)
) WITHOUT ROWID;
