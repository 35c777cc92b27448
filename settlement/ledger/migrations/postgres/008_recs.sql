-- Renewable Energy Certificates (docs/recs.md): minted by a job from verified exact export of
-- generation and bidirectional meters, one per meter and hour (UTC) of production, with the
-- readings they rest on. rec_coverage is what has been certified per meter and hour, so the same
-- Wh is never certified twice: a later fill of a gap certifies only what it adds.
-- Mirrored column for column by migrations/sqlite/008_recs.sql.

CREATE TABLE recs (
  id               TEXT COLLATE "C" PRIMARY KEY,
  meter            TEXT COLLATE "C" NOT NULL REFERENCES meters(id),
  generator_owner  TEXT COLLATE "C" NOT NULL REFERENCES accounts(id),
  owner            TEXT COLLATE "C" NOT NULL REFERENCES accounts(id),   -- who holds it now
  energy_source    TEXT NOT NULL,
  market           TEXT NOT NULL,
  period_start_ms  BIGINT NOT NULL,
  period_end_ms    BIGINT NOT NULL,
  volume_wh        BIGINT NOT NULL CHECK (volume_wh > 0),
  issued_at_ms     BIGINT NOT NULL,
  status           TEXT NOT NULL CHECK (status IN ('active', 'for_sale', 'sold', 'retired')),
  first_seq        BIGINT NOT NULL,
  last_seq         BIGINT NOT NULL,
  envelopes        TEXT NOT NULL,               -- JSON array of the envelope ids of first_seq..last_seq
  price            NUMERIC(78, 0),                        -- for sale: minor units of `currency` per kWh
  currency         TEXT,
  parent           TEXT COLLATE "C",                   -- split from (partial retirement), same provenance
  retired_at_ms    BIGINT,
  retire_reason    TEXT,
  beneficiary      TEXT
);
CREATE INDEX recs_for_sale ON recs (status, energy_source);
CREATE INDEX recs_meter ON recs (meter, period_start_ms);
CREATE INDEX recs_owner ON recs (owner, status);

CREATE TABLE rec_coverage (
  meter          TEXT COLLATE "C" NOT NULL,
  hour_start_ms  BIGINT NOT NULL,
  certified_wh   BIGINT NOT NULL,
  PRIMARY KEY (meter, hour_start_ms)
);
