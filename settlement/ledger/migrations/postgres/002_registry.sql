-- The registry (markets, prosumer accounts, meters, one-time enrollment codes) and the
-- verified energy per meter and interval derived from counter differences at commit.
-- Mirrors migrations/sqlite/002_registry.sql column for column; ids are COLLATE "C" as in 001.
CREATE TABLE markets (
  id               TEXT COLLATE "C" PRIMARY KEY,
  name             TEXT NOT NULL,
  -- IANA zone in which delivery intervals and market hours are evaluated.
  time_zone        TEXT NOT NULL,
  interval_minutes INTEGER NOT NULL CHECK (interval_minutes > 0),
  created_at_ms    BIGINT NOT NULL
);

CREATE TABLE accounts (
  id            TEXT COLLATE "C" PRIMARY KEY,
  name          TEXT NOT NULL,
  created_at_ms BIGINT NOT NULL
);

CREATE TABLE meters (
  id            TEXT COLLATE "C" PRIMARY KEY,
  gateway       TEXT COLLATE "C" NOT NULL REFERENCES gateways(id),
  model         TEXT NOT NULL,
  role          TEXT NOT NULL CHECK (role IN ('consumption', 'generation', 'bidirectional')),
  rated_power_w BIGINT NOT NULL CHECK (rated_power_w > 0),
  energy_source TEXT CHECK (energy_source IN ('Solar', 'Wind', 'Hydro', 'Geothermal', 'Biomass', 'Other')),
  market        TEXT COLLATE "C" NOT NULL REFERENCES markets(id),
  owner         TEXT COLLATE "C" NOT NULL REFERENCES accounts(id),
  created_at_ms BIGINT NOT NULL
);
CREATE INDEX meters_gateway ON meters (gateway);
CREATE INDEX meters_market ON meters (market);

-- The code itself is shown once, to the admin; only its SHA-256 is kept.
CREATE TABLE enrollment_codes (
  code_hash     TEXT COLLATE "C" PRIMARY KEY,
  market        TEXT COLLATE "C" NOT NULL REFERENCES markets(id),
  owner         TEXT COLLATE "C" NOT NULL REFERENCES accounts(id),
  created_at_ms BIGINT NOT NULL,
  expires_at_ms BIGINT NOT NULL,
  used_at_ms    BIGINT,
  used_by       TEXT COLLATE "C"
);

-- Energy of one meter in one interval (start aligned in the market's zone). No foreign keys:
-- a reading's market comes with its verified envelope, and the rows are sums of counter
-- differences that must never be refused once the readings were accepted.
CREATE TABLE interval_energy (
  meter     TEXT COLLATE "C" NOT NULL,
  start_ms  BIGINT NOT NULL,
  market    TEXT COLLATE "C" NOT NULL,
  import_wh BIGINT NOT NULL,
  export_wh BIGINT NOT NULL,
  PRIMARY KEY (meter, start_ms)
);
CREATE INDEX interval_energy_market ON interval_energy (market, start_ms);
