-- The market (docs/market.md): money accounts per owner and currency with a double-entry
-- journal, orders, auctions, trades with their delivery settlement, and price history.
-- Amounts are bigints in minor units stored as NUMERIC(78,0) (TEXT on SQLite): room for 18-decimal token amounts, and
-- no driver ever reads them as floating point; the store converts them to bigint.
-- Mirrored column for column by migrations/sqlite/006_market.sql.

-- A prosumer API key is bound to one registry account.
ALTER TABLE api_keys ADD COLUMN account TEXT COLLATE "C" REFERENCES accounts(id);

CREATE TABLE money_accounts (
  id            TEXT COLLATE "C" PRIMARY KEY,      -- "<owner>/<currency>" or "system:<kind>/<currency>"
  owner         TEXT COLLATE "C" REFERENCES accounts(id),   -- null for system accounts
  kind          TEXT NOT NULL CHECK (kind IN ('owner', 'escrow', 'fees', 'imbalance', 'issuance', 'conversion', 'treasury', 'incentives', 'staking')),
  currency      TEXT NOT NULL,         -- THB, USD, EUR (stable credits); checked in code, so a token can join without rebuilding the table
  balance       NUMERIC(78, 0) NOT NULL,
  created_at_ms BIGINT NOT NULL
);
CREATE UNIQUE INDEX money_accounts_owner ON money_accounts (owner, currency) WHERE owner IS NOT NULL;

-- One balanced movement: its postings sum to zero per currency.
CREATE TABLE money_transfers (
  id       BIGSERIAL PRIMARY KEY,
  reason   TEXT NOT NULL,
  ref_kind TEXT NOT NULL,             -- what caused it: order, trade, delivery, conversion, admin
  ref_id   TEXT NOT NULL,
  memo     TEXT NOT NULL,
  at_ms    BIGINT NOT NULL
);
CREATE INDEX money_transfers_ref ON money_transfers (ref_kind, ref_id);

CREATE TABLE money_postings (
  transfer_id BIGINT NOT NULL REFERENCES money_transfers(id),
  account     TEXT COLLATE "C" NOT NULL REFERENCES money_accounts(id),
  currency    TEXT NOT NULL,
  amount      NUMERIC(78, 0) NOT NULL,          -- signed minor units: + into the account, - out of it
  PRIMARY KEY (transfer_id, account)
);
CREATE INDEX money_postings_account ON money_postings (account, transfer_id);

CREATE TABLE orders (
  id                TEXT COLLATE "C" PRIMARY KEY,
  priority          BIGINT NOT NULL,          -- time priority within the market: lower was accepted first
  account           TEXT COLLATE "C" NOT NULL REFERENCES accounts(id),
  market            TEXT COLLATE "C" NOT NULL REFERENCES markets(id),
  side              TEXT NOT NULL CHECK (side IN ('buy', 'sell')),
  energy_wh         BIGINT NOT NULL CHECK (energy_wh > 0),
  limit_price       NUMERIC(78, 0) NOT NULL,            -- minor units per kWh
  currency          TEXT NOT NULL,
  delivery_start_ms BIGINT NOT NULL,
  delivery_end_ms   BIGINT NOT NULL,
  status            TEXT NOT NULL CHECK (status IN ('open', 'filled', 'partial', 'unmatched', 'cancelled')),
  filled_wh         BIGINT NOT NULL,
  escrow            NUMERIC(78, 0) NOT NULL,            -- what is held for a buy order now
  auction_id        TEXT,
  created_at_ms     BIGINT NOT NULL
);
CREATE UNIQUE INDEX orders_priority ON orders (market, priority);
CREATE INDEX orders_book ON orders (market, delivery_start_ms, status);
CREATE INDEX orders_account ON orders (account, created_at_ms);

CREATE TABLE auctions (
  id                TEXT COLLATE "C" PRIMARY KEY,
  market            TEXT COLLATE "C" NOT NULL REFERENCES markets(id),
  delivery_start_ms BIGINT NOT NULL,
  delivery_end_ms   BIGINT NOT NULL,
  run_at_ms         BIGINT NOT NULL,
  clearing_price    NUMERIC(78, 0),                     -- null when nothing crossed
  price_low         NUMERIC(78, 0),
  price_high        NUMERIC(78, 0),
  volume_wh         BIGINT NOT NULL,
  orders            BIGINT NOT NULL,
  trades            BIGINT NOT NULL,
  UNIQUE (market, delivery_start_ms)
);

CREATE TABLE trades (
  id                TEXT COLLATE "C" PRIMARY KEY,
  auction_id        TEXT COLLATE "C" NOT NULL REFERENCES auctions(id),
  market            TEXT NOT NULL,
  delivery_start_ms BIGINT NOT NULL,
  delivery_end_ms   BIGINT NOT NULL,
  buy_order         TEXT COLLATE "C" NOT NULL REFERENCES orders(id),
  sell_order        TEXT COLLATE "C" NOT NULL REFERENCES orders(id),
  buyer             TEXT NOT NULL,
  seller            TEXT NOT NULL,
  energy_wh         BIGINT NOT NULL,
  price             NUMERIC(78, 0) NOT NULL,
  currency          TEXT NOT NULL,
  value             NUMERIC(78, 0) NOT NULL,
  -- Delivery settlement, once the delivery interval's readings are final.
  settled_at_ms     BIGINT,
  seller_metered_wh BIGINT,
  buyer_metered_wh  BIGINT,
  seller_short_wh   BIGINT,
  buyer_short_wh    BIGINT,
  imbalance_price   NUMERIC(78, 0),
  settlement        TEXT                      -- JSON: the intervals and meters it rests on
);
CREATE INDEX trades_auction ON trades (auction_id);
CREATE INDEX trades_unsettled ON trades (delivery_end_ms) WHERE settled_at_ms IS NULL;
CREATE INDEX trades_buyer ON trades (buyer, delivery_start_ms);
CREATE INDEX trades_seller ON trades (seller, delivery_start_ms);

CREATE TABLE price_signals (
  market             TEXT NOT NULL,
  computed_at_ms     BIGINT NOT NULL,
  valid_until_ms     BIGINT NOT NULL,
  price              NUMERIC(78, 0) NOT NULL,
  ratio_ppm          BIGINT NOT NULL,        -- supply/demand × 10^6, after clamping
  supply_wh          BIGINT NOT NULL,
  demand_wh          BIGINT NOT NULL,
  interval_start_ms  BIGINT,
  PRIMARY KEY (market, computed_at_ms)
);
