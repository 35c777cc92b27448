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
