-- Conservation rewards (docs/rewards.md): one payment per consumption meter and local day, with
-- what it rests on. The row is the claim: a second run or worker finds it and pays nothing.
-- Mirrored column for column by migrations/postgres/009_rewards.sql.
CREATE TABLE reward_payments (
  meter       TEXT NOT NULL REFERENCES meters(id),
  day         TEXT NOT NULL,             -- local date in the market's zone, YYYY-MM-DD
  owner       TEXT NOT NULL REFERENCES accounts(id),
  saved_wh    INTEGER NOT NULL,
  amount      TEXT NOT NULL,             -- NRG base units
  details     TEXT NOT NULL,             -- JSON: per hour baseline, actual and saved Wh
  paid_at_ms  INTEGER NOT NULL,
  PRIMARY KEY (meter, day)
);
