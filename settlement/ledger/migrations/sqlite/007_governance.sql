-- Governance (docs/governance.md): NRG stakes. NRG amounts are bigint base units (18 decimals)
-- as decimal TEXT (NUMERIC(78,0) on PostgreSQL); the tokens themselves live in the money journal
-- of migration 006 (asset NRG), a stake's in the system staking account.
-- Mirrored column for column by migrations/postgres/007_governance.sql.

CREATE TABLE stakes (
  id              TEXT PRIMARY KEY,
  staker          TEXT NOT NULL REFERENCES accounts(id),
  amount          TEXT NOT NULL,           -- NRG base units
  lock_days       INTEGER NOT NULL CHECK (lock_days BETWEEN 0 AND 1461),
  voting_power    TEXT NOT NULL,           -- NRG base units × the lock's multiplier
  staked_at_ms    INTEGER NOT NULL,
  unlocks_at_ms   INTEGER NOT NULL,
  unstaked_at_ms  INTEGER
);
CREATE INDEX stakes_staker ON stakes (staker, staked_at_ms);

-- Proposals to change a market parameter, voted on by staked voting power (docs/governance.md).
CREATE TABLE proposals (
  id               TEXT PRIMARY KEY,
  proposer         TEXT NOT NULL REFERENCES accounts(id),
  title            TEXT NOT NULL,
  market           TEXT NOT NULL REFERENCES markets(id),
  parameter        TEXT NOT NULL,
  value            TEXT NOT NULL,            -- canonical text of the new value (see governance/proposals.ts)
  status           TEXT NOT NULL CHECK (status IN ('active', 'passed', 'rejected', 'executed')),
  created_at_ms    INTEGER NOT NULL,
  voting_ends_at_ms INTEGER NOT NULL,
  executes_at_ms   INTEGER,                  -- passed: voting end + 2 days
  executed_at_ms   INTEGER,
  yes_power        TEXT,                     -- the tally, once voting has ended
  no_power         TEXT,
  abstain_power    TEXT,
  total_power      TEXT
);
CREATE INDEX proposals_status ON proposals (status, voting_ends_at_ms);
CREATE INDEX proposals_proposer ON proposals (proposer, status);

CREATE TABLE votes (
  proposal     TEXT NOT NULL REFERENCES proposals(id),
  voter        TEXT NOT NULL REFERENCES accounts(id),
  choice       TEXT NOT NULL CHECK (choice IN ('yes', 'no', 'abstain')),
  power        TEXT NOT NULL,                -- the voter's voting power when it voted
  voted_at_ms  INTEGER NOT NULL,
  PRIMARY KEY (proposal, voter)
);

-- Executed changes, in order: a market's parameters are its config overridden by the newest of each.
CREATE TABLE parameter_changes (
  proposal        TEXT PRIMARY KEY REFERENCES proposals(id),
  market          TEXT NOT NULL,
  parameter       TEXT NOT NULL,
  value           TEXT NOT NULL,
  effective_at_ms INTEGER NOT NULL
);
CREATE INDEX parameter_changes_market ON parameter_changes (market, effective_at_ms);
