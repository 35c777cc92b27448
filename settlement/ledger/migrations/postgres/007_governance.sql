-- Governance (docs/governance.md): NRG stakes. NRG amounts are bigint base units (18 decimals)
-- as NUMERIC(78,0) (decimal TEXT on SQLite); the tokens themselves live in the money journal
-- of migration 006 (asset NRG), a stake's in the system staking account.
-- Mirrored column for column by migrations/sqlite/007_governance.sql.

CREATE TABLE stakes (
  id              TEXT COLLATE "C" PRIMARY KEY,
  staker          TEXT COLLATE "C" NOT NULL REFERENCES accounts(id),
  amount          NUMERIC(78, 0) NOT NULL,           -- NRG base units
  lock_days       INTEGER NOT NULL CHECK (lock_days BETWEEN 0 AND 1461),
  voting_power    NUMERIC(78, 0) NOT NULL,           -- NRG base units × the lock's multiplier
  staked_at_ms    BIGINT NOT NULL,
  unlocks_at_ms   BIGINT NOT NULL,
  unstaked_at_ms  BIGINT
);
CREATE INDEX stakes_staker ON stakes (staker, staked_at_ms);

-- Proposals to change a market parameter, voted on by staked voting power (docs/governance.md).
CREATE TABLE proposals (
  id               TEXT COLLATE "C" PRIMARY KEY,
  proposer         TEXT COLLATE "C" NOT NULL REFERENCES accounts(id),
  title            TEXT NOT NULL,
  market           TEXT COLLATE "C" NOT NULL REFERENCES markets(id),
  parameter        TEXT NOT NULL,
  value            TEXT NOT NULL,            -- canonical text of the new value (see governance/proposals.ts)
  status           TEXT NOT NULL CHECK (status IN ('active', 'passed', 'rejected', 'executed')),
  created_at_ms    BIGINT NOT NULL,
  voting_ends_at_ms BIGINT NOT NULL,
  executes_at_ms   BIGINT,                   -- passed: voting end + 2 days
  executed_at_ms   BIGINT,
  yes_power        NUMERIC(78, 0),           -- the tally, once voting has ended
  no_power         NUMERIC(78, 0),
  abstain_power    NUMERIC(78, 0),
  total_power      NUMERIC(78, 0)
);
CREATE INDEX proposals_status ON proposals (status, voting_ends_at_ms);
CREATE INDEX proposals_proposer ON proposals (proposer, status);

CREATE TABLE votes (
  proposal     TEXT COLLATE "C" NOT NULL REFERENCES proposals(id),
  voter        TEXT COLLATE "C" NOT NULL REFERENCES accounts(id),
  choice       TEXT NOT NULL CHECK (choice IN ('yes', 'no', 'abstain')),
  power        NUMERIC(78, 0) NOT NULL,      -- the voter's voting power when it voted
  voted_at_ms  BIGINT NOT NULL,
  PRIMARY KEY (proposal, voter)
);

-- Executed changes, in order: a market's parameters are its config overridden by the newest of each.
CREATE TABLE parameter_changes (
  proposal        TEXT COLLATE "C" PRIMARY KEY REFERENCES proposals(id),
  market          TEXT COLLATE "C" NOT NULL,
  parameter       TEXT NOT NULL,
  value           TEXT NOT NULL,
  effective_at_ms BIGINT NOT NULL
);
CREATE INDEX parameter_changes_market ON parameter_changes (market, effective_at_ms);
