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
