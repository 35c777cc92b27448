import type Database from 'better-sqlite3';
import { Kysely, PostgresDialect, SqliteDialect, type Generated } from 'kysely';
import type pg from 'pg';

/**
 * The query builder for stores written once for both engines (Kysely, with the SQLite and the
 * PostgreSQL dialect over the ledger's own connection or pool). The hot ingest path keeps its
 * hand-tuned statements (ledger/sqlite.ts, ledger/postgres.ts); everything else that is new is
 * written here, once. Column types are what a row reads back as: BIGINT columns come back as
 * numbers on both engines (safe integers; the PostgreSQL pool parses int8 so, or fails loudly).
 *
 * SQLite: the Kysely instance shares the ledger's one connection, so a Kysely transaction must
 * not await anything but its own queries.
 */
export interface ApiKeysTable {
  id: string;
  key_hash: string;
  role: string;
  label: string;
  created_at_ms: number;
  revoked_at_ms: number | null;
  /** The registry account a prosumer key is bound to (migration 006); null for other roles. */
  account: Generated<string | null>;
}

/** The customer accounts an installer key serves (migration 010). */
export interface ApiKeyCustomersTable {
  key_id: string;
  account: string;
}

/** Which API key issued an enrollment code (migration 010); codes from the CLI have no row. */
export interface EnrollmentCodeIssuersTable {
  code_hash: string;
  issued_by: string;
}

export interface MeterHandoversTable {
  meter: string;
  from_seq: number;
  old_gateway: string;
  new_gateway: string;
  at_ms: number;
}

export interface RejectionCountsTable {
  gateway: string;
  reason: string;
  hour_ms: number;
  count: number;
}

export interface RejectionsTable {
  id: Generated<number>;
  received_at_ms: number;
  topic: string;
  gateway: string | null;
  envelope_id: string | null;
  reason: string;
  detail: string;
  payload: Buffer;
  payload_bytes: number;
  payload_sha256: string;
}

export interface MeterGapsTable {
  meter: string;
  from_seq: number;
  to_seq: number;
  opened_at_ms: number;
  estimated_at_ms: number | null;
  est_market: string | null;
  est_interval_ms: number | null;
  est_time_zone: string | null;
}

export interface ReadingsTable {
  meter: string;
  seq: number;
  envelope_ref: number;
  gateway: string;
  ts_ms: number;
  import_wh: number;
  export_wh: number;
  power_w: number;
  voltage_mv: number | null;
  current_ma: number | null;
  frequency_mhz: number | null;
  prev: string;
  hash: string;
  received_at_ms: number;
}

export interface EnvelopesTable {
  ref: Generated<number>;
  id: string;
  gateway: string;
  received_at_ms: number;
  reading_count: number;
  signed: string;
  sig: Buffer;
}

export interface IntervalEnergyTable {
  meter: string;
  start_ms: number;
  market: string;
  import_wh: number;
  export_wh: number;
  est_import_wh: number;
  est_export_wh: number;
}

export interface MetersTable {
  id: string;
  gateway: string;
  model: string;
  role: string;
  rated_power_w: number;
  energy_source: string | null;
  market: string;
  owner: string;
  created_at_ms: number;
}

export interface MarketsTable {
  id: string;
  name: string;
  time_zone: string;
  interval_minutes: number;
  created_at_ms: number;
}

export interface GatewaysTable {
  id: string;
  public_key_pem: string;
  status: 'pending' | 'active' | 'revoked';
  created_at_ms: number;
  mqtt_secret_hash: string | null;
  revoked_at_ms: number | null;
}

export interface AccountsTable {
  id: string;
  name: string;
  created_at_ms: number;
}

export interface EnrollmentCodesTable {
  code_hash: string;
  market: string;
  owner: string;
  created_at_ms: number;
  expires_at_ms: number;
  used_at_ms: number | null;
  used_by: string | null;
}

// ---- the market (migration 006). Amounts are bigint minor units as decimal strings. ----------

export interface MoneyAccountsTable {
  id: string;
  owner: string | null;
  kind: string;
  currency: string;
  balance: string;
  created_at_ms: number;
}

export interface MoneyTransfersTable {
  id: Generated<number>;
  reason: string;
  ref_kind: string;
  ref_id: string;
  memo: string;
  at_ms: number;
}

export interface MoneyPostingsTable {
  transfer_id: number;
  account: string;
  currency: string;
  amount: string;
}

export interface OrdersTable {
  id: string;
  priority: number;
  account: string;
  market: string;
  side: 'buy' | 'sell';
  energy_wh: number;
  limit_price: string;
  currency: string;
  delivery_start_ms: number;
  delivery_end_ms: number;
  status: 'open' | 'filled' | 'partial' | 'unmatched' | 'cancelled';
  filled_wh: number;
  escrow: string;
  auction_id: string | null;
  created_at_ms: number;
}

export interface AuctionsTable {
  id: string;
  market: string;
  delivery_start_ms: number;
  delivery_end_ms: number;
  run_at_ms: number;
  clearing_price: string | null;
  price_low: string | null;
  price_high: string | null;
  volume_wh: number;
  orders: number;
  trades: number;
}

export interface TradesTable {
  id: string;
  auction_id: string;
  market: string;
  delivery_start_ms: number;
  delivery_end_ms: number;
  buy_order: string;
  sell_order: string;
  buyer: string;
  seller: string;
  energy_wh: number;
  price: string;
  currency: string;
  value: string;
  settled_at_ms: number | null;
  seller_metered_wh: number | null;
  buyer_metered_wh: number | null;
  seller_short_wh: number | null;
  buyer_short_wh: number | null;
  imbalance_price: string | null;
  settlement: string | null;
}

export interface PriceSignalsTable {
  market: string;
  computed_at_ms: number;
  valid_until_ms: number;
  price: string;
  ratio_ppm: number;
  supply_wh: number;
  demand_wh: number;
  interval_start_ms: number | null;
}

export interface StakesTable {
  id: string;
  staker: string;
  amount: string;
  lock_days: number;
  voting_power: string;
  staked_at_ms: number;
  unlocks_at_ms: number;
  unstaked_at_ms: number | null;
}

export interface ProposalsTable {
  id: string;
  proposer: string;
  title: string;
  market: string;
  parameter: string;
  value: string;
  status: 'active' | 'passed' | 'rejected' | 'executed';
  created_at_ms: number;
  voting_ends_at_ms: number;
  executes_at_ms: number | null;
  executed_at_ms: number | null;
  yes_power: string | null;
  no_power: string | null;
  abstain_power: string | null;
  total_power: string | null;
}

export interface VotesTable {
  proposal: string;
  voter: string;
  choice: 'yes' | 'no' | 'abstain';
  power: string;
  voted_at_ms: number;
}

export interface ParameterChangesTable {
  proposal: string;
  market: string;
  parameter: string;
  value: string;
  effective_at_ms: number;
}

export interface RecsTable {
  id: string;
  meter: string;
  generator_owner: string;
  owner: string;
  energy_source: string;
  market: string;
  period_start_ms: number;
  period_end_ms: number;
  volume_wh: number;
  issued_at_ms: number;
  status: 'active' | 'for_sale' | 'sold' | 'retired';
  first_seq: number;
  last_seq: number;
  envelopes: string;
  price: Generated<string | null>;
  currency: Generated<string | null>;
  parent: Generated<string | null>;
  retired_at_ms: Generated<number | null>;
  retire_reason: Generated<string | null>;
  beneficiary: Generated<string | null>;
}

export interface RecCoverageTable {
  meter: string;
  hour_start_ms: number;
  certified_wh: number;
}

export interface RewardPaymentsTable {
  meter: string;
  day: string;
  owner: string;
  saved_wh: number;
  amount: string;
  details: string;
  paid_at_ms: number;
}

export interface LedgerSchema {
  reward_payments: RewardPaymentsTable;
  recs: RecsTable;
  rec_coverage: RecCoverageTable;
  stakes: StakesTable;
  proposals: ProposalsTable;
  votes: VotesTable;
  parameter_changes: ParameterChangesTable;
  money_accounts: MoneyAccountsTable;
  money_transfers: MoneyTransfersTable;
  money_postings: MoneyPostingsTable;
  orders: OrdersTable;
  auctions: AuctionsTable;
  trades: TradesTable;
  price_signals: PriceSignalsTable;
  gateways: GatewaysTable;
  accounts: AccountsTable;
  enrollment_codes: EnrollmentCodesTable;
  meters: MetersTable;
  markets: MarketsTable;
  api_keys: ApiKeysTable;
  api_key_customers: ApiKeyCustomersTable;
  enrollment_code_issuers: EnrollmentCodeIssuersTable;
  meter_handovers: MeterHandoversTable;
  rejection_counts: RejectionCountsTable;
  rejections: RejectionsTable;
  meter_gaps: MeterGapsTable;
  readings: ReadingsTable;
  envelopes: EnvelopesTable;
  interval_energy: IntervalEnergyTable;
}

export type LedgerDb = Kysely<LedgerSchema>;

export function sqliteDb(db: Database.Database): LedgerDb {
  return new Kysely<LedgerSchema>({ dialect: new SqliteDialect({ database: db }) });
}

export function postgresDb(pool: pg.Pool): LedgerDb {
  return new Kysely<LedgerSchema>({ dialect: new PostgresDialect({ pool }) });
}
