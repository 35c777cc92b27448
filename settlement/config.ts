import { readFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { dirname, resolve } from 'node:path';
import { parse as parseToml } from 'smol-toml';
import { unknownConfigKey, type ConfigShape } from '../protocol/config-keys.ts';
import { DEFAULT_MAX_BACKFILL_MS } from './ledger/ledger.ts';
import { feeFromConfig, ratesFromConfig } from './market/conversion.ts';
import type { StableCredits } from './market/market.ts';
import { MINOR_DIGITS, priceFromConfig, scaledFromNumber } from './market/money.ts';
import type { GovernanceRules } from './governance/governance.ts';
import type { TokenSupply } from './tokens/nrg.ts';
import type { RewardRules } from './rewards/rewards.ts';
import { DEFAULT_REC_RULES, type RecRules } from './recs/rules.ts';
import { assertPricingParams } from './market/pricing.ts';
import { PPM, parseClock, type MarketRules } from './market/rules.ts';
import { CURRENCIES, type Currency } from './market/types.ts';

/** Settlement configuration: `config/settlement.toml`, every key optional. See README. */
export interface SettlementConfig {
  dataDir: string;
  /** `databaseUrl` (PostgreSQL) wins over `sqlitePath` when set. */
  ledger: { sqlitePath: string; databaseUrl?: string };
  mqtt:
    | {
        mode: 'embedded';
        listenHost: string;
        listenPort: number;
        clientId: string;
        /** Every client must log in and is confined to its topics (docs/mqtt-security.md). */
        auth: boolean;
        tls?: { keyFile: string; certFile: string; host: string; port: number };
      }
    | {
        mode: 'external';
        url: string;
        clientId: string;
        username?: string;
        password?: string;
        /** Several workers share the readings through `$share/<group>/…`; unset = one worker. */
        sharedGroup?: string;
        /** Mosquitto's password file, kept in step at enrollment and revocation (docs/mqtt-security.md). */
        mosquittoPasswordFile?: string;
        mosquittoPidFile?: string;
      };
  ingest: {
    maxPayloadBytes: number;
    maxClockSkewMs: number;
    commitBatchMax: number;
    commitsInFlight?: number;
    /** Readings older than this, and spans between neighbouring readings longer than it, are refused. */
    maxBackfillMs: number;
    /** A gap open this long gets its energy booked as estimated. */
    gapGraceMs: number;
    /** Watchdog: a commit taking longer replaces the writer thread. */
    commitTimeoutMs: number;
    /** Intake pushes back beyond this many envelopes, or bytes, awaiting their commit outcome. */
    maxQueuedEnvelopes: number;
    maxQueuedBytes: number;
    /** Rejection payload samples kept per minute (all gateways), each cut to sampleBytes. */
    rejectionSamplesPerMinute: number;
    rejectionSampleBytes: number;
    /** Rejection samples and counts older than this are deleted. */
    rejectionRetentionMs: number;
  };
  /** Markets this settlement runs; upserted into the registry at start, each with its trading rules. */
  markets: Array<{ id: string; name: string; timeZone: string; intervalMinutes: number; rules: MarketRules; holidays?: string[] }>;
  /** [stable_credits]: the currencies balances are kept in, conversion rates and fee. */
  credits: StableCredits;
  /** [governance]: the NRG supply and pool, staking and proposal thresholds (NRG base units). */
  governance: { supply: TokenSupply; rules: GovernanceRules };
  /** [rewards]: conservation rewards, NRG base units per kWh saved and the baseline's days. */
  rewards: RewardRules;
  /** [recs]: how hours of generation accumulate into certificates. */
  recs: RecRules;
  /**
   * A configured admin API key (`Authorization: Bearer …`, or the older `x-admin-key` header), at
   * least 32 characters (checkAdminKey); null = only admin keys stored in the ledger
   * (`gtx settlement api-key create --role admin`) reach the admin API.
   */
  adminKey: string | null;
  /** Lifetime of an installer code. */
  enrollmentCodeTtlMs: number;
  /** Time series for utilities and Grafana; null = none. See docs/influxdb.md. */
  influxdb: { url: string; database: string; flushIntervalMs: number; maxBacklogPoints: number } | null;
  /** REST API, web pages and /metrics; null turns the HTTP server off. */
  http: { host: string; port: number } | null;
  /** [http] write_rate_limit_per_minute: write requests under /api/v1 a minute per API key (per address without one); 0 = no limit (api/rate-limit.ts). */
  writeRateLimitPerMinute: number;
  logLevel: string;
}

const DAY_MS = 86_400_000;

export class ConfigError extends Error {
  override readonly name = 'ConfigError';
}

/** The admin key is a bearer secret to the whole admin API: short ones are guessable. */
export const ADMIN_KEY_MIN_LENGTH = 32;

/** Refuses a configured admin key shorter than ADMIN_KEY_MIN_LENGTH, saying how to make one. */
export function checkAdminKey(key: string | null): void {
  if (key === null || key.length >= ADMIN_KEY_MIN_LENGTH) return;
  throw new ConfigError(
    `the admin key (GTX_ADMIN_KEY or [enrollment] admin_key) has ${key.length} characters, it needs at least ${ADMIN_KEY_MIN_LENGTH}: ` +
      'make one with `openssl rand -base64 32`, or leave it unset and store an admin key with `gtx settlement api-key create --role admin`',
  );
}

/** Unique per process, so several workers can share one broker. */
function defaultClientId(): string {
  return `gtx-settlement-${hostname()}-${process.pid}`;
}

export function defaultSettlementConfig(dataDir = './data'): SettlementConfig {
  return {
    dataDir,
    ledger: { sqlitePath: resolve(dataDir, 'ledger.sqlite'), databaseUrl: process.env.DATABASE_URL || undefined },
    mqtt: { mode: 'embedded', listenHost: '127.0.0.1', listenPort: 1883, clientId: defaultClientId(), auth: true },
    ingest: {
      maxPayloadBytes: 256 * 1024,
      maxClockSkewMs: 300_000,
      commitBatchMax: 512,
      maxBackfillMs: DEFAULT_MAX_BACKFILL_MS,
      gapGraceMs: 3600_000,
      commitTimeoutMs: 10_000,
      maxQueuedEnvelopes: 4096,
      maxQueuedBytes: 64 * 1024 * 1024,
      rejectionSamplesPerMinute: 30,
      rejectionSampleBytes: 4096,
      rejectionRetentionMs: 30 * DAY_MS,
    },
    http: { host: '127.0.0.1', port: 8080 },
    // A person clicking never sends 2 writes a second for a minute; a flooding script does.
    writeRateLimitPerMinute: 120,
    influxdb: null,
    markets: [{ id: 'thailand_central', name: 'Thailand Central', timeZone: 'Asia/Bangkok', intervalMinutes: 15, rules: marketRules({}, {}, 'THB', 'defaults') }],
    credits: defaultCredits(),
    governance: loadGovernance({}, 'defaults'),
    rewards: loadRewards({}, 'defaults'),
    recs: DEFAULT_REC_RULES,
    // An empty GTX_ADMIN_KEY counts as unset.
    adminKey: process.env.GTX_ADMIN_KEY || null,
    enrollmentCodeTtlMs: 7 * 24 * 3600_000,
    logLevel: 'info',
  };
}

type Table = Record<string, unknown>;

function table(t: Table, key: string, where: string): Table {
  const v = t[key];
  if (v === undefined) return {};
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new ConfigError(`${where}: [${key}] must be a table`);
  return v as Table;
}

function str(t: Table, key: string, where: string): string | undefined {
  const v = t[key];
  if (v === undefined) return undefined;
  if (typeof v !== 'string' || v === '') throw new ConfigError(`${where}: ${key} must be a non-empty string`);
  return v;
}

function int(t: Table, key: string, where: string, min: number): number | undefined {
  const v = t[key];
  if (v === undefined) return undefined;
  if (typeof v !== 'number' || !Number.isInteger(v) || v < min) throw new ConfigError(`${where}: ${key} must be an integer ≥ ${min}`);
  return v;
}

/** "host:port" or "[v6]:port" → parts; port may be 0 for "pick a free one". */
export function parseListen(s: string, where: string): { host: string; port: number } {
  const m = /^(?:\[([^\]]+)\]|([^:]+)):(\d{1,5})$/.exec(s);
  const port = m ? Number(m[3]) : NaN;
  if (!m || port > 65535) throw new ConfigError(`${where}: listen must look like 127.0.0.1:1883, got "${s}"`);
  return { host: (m[1] ?? m[2])!, port };
}

// ---- the market: [dynamic_pricing], [auction], [stable_credits] -------------------------------

const PRICING_KEYS = ['p_balance', 'p_con', 'k', 'update_interval', 'min_ratio'] as const;
const AUCTION_KEYS = ['interval_minutes', 'market_open', 'market_close', 'min_volume', 'max_price_deviation'] as const;
const CREDITS_KEYS = ['supported_currencies', 'default_currency', 'conversion_fee', 'rates'] as const;
const GOVERNANCE_KEYS = ['nrg_total_supply', 'stake_min_amount', 'vote_threshold', 'incentive_pool'] as const;
const REWARDS_KEYS = ['rate', 'baseline_days'] as const;
const RECS_KEYS = ['min_volume_wh', 'max_period_hours'] as const;

/** [recs]: min_volume_wh (default 1: a certificate per hour), max_period_hours (default 24), shorter than the backfill window. */
function loadRecs(t: Table, where: string, maxBackfillMs: number): RecRules {
  const w = `${where} [recs]`;
  const minVolumeWh = int(t, 'min_volume_wh', w, 1) ?? DEFAULT_REC_RULES.minVolumeWh;
  const hours = int(t, 'max_period_hours', w, 1);
  const maxPeriodMs = hours === undefined ? DEFAULT_REC_RULES.maxPeriodMs : hours * 3_600_000;
  if (maxPeriodMs >= maxBackfillMs) {
    throw new ConfigError(`${w}: max_period_hours must be shorter than [ingest] max_backfill_days (${maxBackfillMs / 3_600_000} h), or energy waiting for the minimum could leave the window`);
  }
  return { minVolumeWh, maxPeriodMs };
}

/** [rewards]: rate in NRG per kWh saved (default 0.1), baseline_days (default 10). */
function loadRewards(t: Table, where: string): RewardRules {
  const w = `${where} [rewards]`;
  const ratePerKwh = checked(w, () => scaledFromNumber(num(t, 'rate', w) ?? 0.1, MINOR_DIGITS.NRG, 'rate'));
  if (ratePerKwh < 0n) throw new ConfigError(`${w}: rate must not be negative`);
  const baselineDays = int(t, 'baseline_days', w, 1) ?? 10;
  if (baselineDays > 30) throw new ConfigError(`${w}: baseline_days must be at most 30`);
  return { ratePerKwh, baselineDays };
}

/** [governance], NRG amounts in whole or decimal NRG (up to 18 decimals) → base units. */
function loadGovernance(t: Table, where: string): { supply: TokenSupply; rules: GovernanceRules } {
  const w = `${where} [governance]`;
  const nrg = (key: string, dflt: number) => checked(w, () => scaledFromNumber(num(t, key, w) ?? dflt, MINOR_DIGITS.NRG, key));
  const totalSupply = nrg('nrg_total_supply', 1_000_000_000);
  const incentivePool = nrg('incentive_pool', 100_000_000);
  const stakeMin = nrg('stake_min_amount', 100);
  const voteThreshold = nrg('vote_threshold', 1000);
  if (totalSupply <= 0n) throw new ConfigError(`${w}: nrg_total_supply must be positive`);
  if (incentivePool < 0n || incentivePool > totalSupply) throw new ConfigError(`${w}: incentive_pool must be from 0 to nrg_total_supply`);
  if (stakeMin <= 0n || voteThreshold < 0n) throw new ConfigError(`${w}: stake_min_amount must be positive and vote_threshold not negative`);
  return { supply: { totalSupply, incentivePool }, rules: { stakeMin, voteThreshold } };
}

/** Example rates (per unit of the first currency); set your own under [stable_credits.rates]. */
const DEFAULT_RATES = { THB_USD: 0.028, THB_EUR: 0.026, USD_THB: 35.5, EUR_THB: 38.5, USD_EUR: 0.92, EUR_USD: 1.08 };

function defaultCredits(): StableCredits {
  return { currencies: [...CURRENCIES], defaultCurrency: 'THB', rates: ratesFromConfig(DEFAULT_RATES), fee: feeFromConfig(0.001) };
}

function num(t: Table, key: string, where: string): number | undefined {
  const v = t[key];
  if (v === undefined) return undefined;
  if (typeof v !== 'number' || !Number.isFinite(v)) throw new ConfigError(`${where}: ${key} must be a number`);
  return v;
}

/** A config call that throws RangeError (money.ts, pricing.ts …) as a ConfigError naming the place. */
function checked<T>(where: string, f: () => T): T {
  try {
    return f();
  } catch (e) {
    throw new ConfigError(`${where}: ${(e as Error).message}`);
  }
}

/**
 * One market's rules: the file's [dynamic_pricing] and [auction] (`top`), overridden by the
 * market's own [markets.dynamic_pricing] / [markets.auction] (`own`). Defaults as in
 * config/settlement.toml.
 */
function marketRules(top: { pricing?: Table; auction?: Table }, own: { pricing?: Table; auction?: Table }, currency: Currency, where: string, energyMinutes = 15): MarketRules {
  const pick = (section: 'pricing' | 'auction', key: string) => (own[section]?.[key] !== undefined ? own[section] : top[section]) ?? {};
  const wp = `${where} [dynamic_pricing]`;
  const wa = `${where} [auction]`;
  const p = (key: string) => num(pick('pricing', key), key, wp);
  const a = (key: string) => pick('auction', key)[key];
  const pricing = {
    pBalance: checked(wp, () => priceFromConfig(p('p_balance') ?? 4.0, currency)),
    pCon: checked(wp, () => priceFromConfig(p('p_con') ?? 2.0, currency)),
    k: p('k') ?? 1.0,
    minRatio: p('min_ratio') ?? 0.01,
    updateIntervalMs: (int(pick('pricing', 'update_interval'), 'update_interval', wp, 1) ?? 300) * 1000,
  };
  checked(where, () => assertPricingParams(pricing));
  // Default 30 min, or the market's energy interval where 30 is not a multiple of it (60 → 60).
  const intervalMinutes = int(pick('auction', 'interval_minutes'), 'interval_minutes', wa, 1) ?? (30 % energyMinutes === 0 ? 30 : energyMinutes);
  if (1440 % intervalMinutes !== 0 || intervalMinutes % energyMinutes !== 0) {
    throw new ConfigError(`${wa}: interval_minutes must divide a day and be a multiple of the market's energy interval (${energyMinutes} min)`);
  }
  const clock = (key: string, dflt: string) => {
    const v = a(key) ?? dflt;
    const m = typeof v === 'string' ? parseClock(v) : undefined;
    if (m === undefined) throw new ConfigError(`${wa}: ${key} must be a time like "06:00", got ${JSON.stringify(v)}`);
    return m;
  };
  const openMinute = clock('market_open', '06:00');
  const closeMinute = clock('market_close', '22:00');
  if (closeMinute <= openMinute) throw new ConfigError(`${wa}: market_close must be after market_open (use "24:00" for midnight)`);
  const minVolume = num(pick('auction', 'min_volume'), 'min_volume', wa) ?? 1.0;
  const deviation = num(pick('auction', 'max_price_deviation'), 'max_price_deviation', wa) ?? 0.5;
  const minVolumeWh = Number(checked(wa, () => scaledFromNumber(minVolume, 3, 'min_volume')));
  const maxPriceDeviationPpm = Number(checked(wa, () => scaledFromNumber(deviation, 6, 'max_price_deviation')));
  if (minVolumeWh < 1) throw new ConfigError(`${wa}: min_volume must be at least 0.001 kWh`);
  if (maxPriceDeviationPpm < 0 || maxPriceDeviationPpm > PPM) throw new ConfigError(`${wa}: max_price_deviation must be a fraction from 0 to 1`);
  return { currency, pricing, auction: { intervalMinutes, openMinute, closeMinute, minVolumeWh, maxPriceDeviationPpm } };
}

function loadCredits(doc: Table, path: string): StableCredits {
  const t = table(doc, 'stable_credits', path);
  const w = `${path} [stable_credits]`;
  const d = defaultCredits();
  let currencies = d.currencies;
  if (t.supported_currencies !== undefined) {
    const v = t.supported_currencies;
    if (!Array.isArray(v) || v.length === 0 || !v.every((c): c is Currency => typeof c === 'string' && (CURRENCIES as readonly string[]).includes(c))) {
      throw new ConfigError(`${w}: supported_currencies must be a non-empty list of ${CURRENCIES.join(', ')}`);
    }
    currencies = [...new Set(v)];
  }
  const dflt = str(t, 'default_currency', w) ?? d.defaultCurrency;
  if (!(currencies as readonly string[]).includes(dflt)) throw new ConfigError(`${w}: default_currency must be one of supported_currencies (${currencies.join(', ')})`);
  const fee = num(t, 'conversion_fee', w);
  const rates = t.rates === undefined ? d.rates : checked(`${w} rates`, () => ratesFromConfig(table(t, 'rates', w) as Record<string, number>));
  return { currencies, defaultCurrency: dflt as Currency, rates, fee: fee === undefined ? d.fee : checked(w, () => feeFromConfig(fee)) };
}

/** Every table and key loadSettlementConfig reads; anything else in the file is refused. */
export const SETTLEMENT_CONFIG_SHAPE: ConfigShape = {
  settlement: { kind: 'table', keys: ['data_dir', 'log_level'] },
  ledger: { kind: 'table', keys: ['sqlite_path', 'database_url'] },
  markets: { kind: 'array', keys: ['id', 'name', 'time_zone', 'interval_minutes', 'dynamic_pricing', 'auction', 'holidays'] },
  dynamic_pricing: { kind: 'table', keys: PRICING_KEYS },
  auction: { kind: 'table', keys: AUCTION_KEYS },
  stable_credits: { kind: 'table', keys: CREDITS_KEYS },
  governance: { kind: 'table', keys: GOVERNANCE_KEYS },
  rewards: { kind: 'table', keys: REWARDS_KEYS },
  recs: { kind: 'table', keys: RECS_KEYS },
  enrollment: { kind: 'table', keys: ['code_ttl_hours', 'admin_key'] },
  mqtt: {
    kind: 'table',
    keys: [
      'listen',
      'auth',
      'tls_listen',
      'tls_key_file',
      'tls_cert_file',
      'url',
      'username',
      'password',
      'shared_group',
      'mosquitto_password_file',
      'mosquitto_pid_file',
      'client_id',
    ],
  },
  ingest: {
    kind: 'table',
    keys: [
      'max_payload_bytes',
      'max_clock_skew_s',
      'commit_batch_max',
      'commits_in_flight',
      'max_backfill_days',
      'gap_grace_s',
      'commit_timeout_s',
      'max_queued_envelopes',
      'max_queued_mib',
      'rejection_samples_per_minute',
      'rejection_sample_bytes',
      'rejection_retention_days',
    ],
  },
  http: { kind: 'table', keys: ['listen', 'enabled', 'write_rate_limit_per_minute'] },
  influxdb: { kind: 'table', keys: ['url', 'database', 'flush_interval_ms', 'max_backlog_points'] },
};

/** Reads a settlement TOML file; relative paths are relative to the file's folder. */
export function loadSettlementConfig(path: string): SettlementConfig {
  let doc: Table;
  try {
    doc = parseToml(readFileSync(path, 'utf8')) as Table;
  } catch (e) {
    const missing = (e as NodeJS.ErrnoException).code === 'ENOENT';
    throw new ConfigError(`${path}: ${missing ? 'no such file' : (e as Error).message}`);
  }
  const unknown = unknownConfigKey(doc, SETTLEMENT_CONFIG_SHAPE, path);
  if (unknown) throw new ConfigError(unknown);
  const base = dirname(resolve(path));
  const s = table(doc, 'settlement', path);
  const dataDir = resolve(base, str(s, 'data_dir', `${path} [settlement]`) ?? './data');
  const cfg = defaultSettlementConfig(dataDir);
  cfg.logLevel = str(s, 'log_level', `${path} [settlement]`) ?? cfg.logLevel;

  const l = table(doc, 'ledger', path);
  const sqlite = str(l, 'sqlite_path', `${path} [ledger]`);
  if (sqlite) cfg.ledger.sqlitePath = resolve(base, sqlite);
  // The DATABASE_URL environment variable (already in the defaults) wins over the file.
  cfg.ledger.databaseUrl ??= str(l, 'database_url', `${path} [ledger]`);

  const m = table(doc, 'mqtt', path);
  const w = `${path} [mqtt]`;
  const clientId = str(m, 'client_id', w) ?? defaultClientId();
  const optPath = (p: string | undefined) => (p === undefined ? undefined : resolve(base, p));
  const url = str(m, 'url', w);
  if (url) {
    if (m.listen !== undefined) throw new ConfigError(`${w}: set either url (external broker) or listen (embedded broker), not both`);
    cfg.mqtt = {
      mode: 'external',
      url,
      clientId,
      username: str(m, 'username', w),
      password: process.env.GTX_MQTT_PASSWORD ?? str(m, 'password', w),
      sharedGroup: str(m, 'shared_group', w),
      mosquittoPasswordFile: optPath(str(m, 'mosquitto_password_file', w)),
      mosquittoPidFile: optPath(str(m, 'mosquitto_pid_file', w)),
    };
  } else {
    const { host, port } = parseListen(str(m, 'listen', w) ?? '127.0.0.1:1883', w);
    const auth = m.auth === undefined ? true : m.auth;
    if (typeof auth !== 'boolean') throw new ConfigError(`${w}: auth must be true or false`);
    cfg.mqtt = { mode: 'embedded', listenHost: host, listenPort: port, clientId, auth };
    const tlsListen = str(m, 'tls_listen', w);
    if (tlsListen) {
      const t = parseListen(tlsListen, w);
      const keyFile = str(m, 'tls_key_file', w);
      const certFile = str(m, 'tls_cert_file', w);
      if (!keyFile || !certFile) throw new ConfigError(`${w}: tls_listen needs tls_key_file and tls_cert_file (PEM)`);
      cfg.mqtt.tls = { host: t.host, port: t.port, keyFile: resolve(base, keyFile), certFile: resolve(base, certFile) };
    }
  }

  const i = table(doc, 'ingest', path);
  const wi = `${path} [ingest]`;
  cfg.ingest.maxPayloadBytes = int(i, 'max_payload_bytes', wi, 1024) ?? cfg.ingest.maxPayloadBytes;
  const skew = int(i, 'max_clock_skew_s', wi, 1);
  if (skew !== undefined) cfg.ingest.maxClockSkewMs = skew * 1000;
  cfg.ingest.commitBatchMax = int(i, 'commit_batch_max', wi, 1) ?? cfg.ingest.commitBatchMax;
  const inFlight = int(i, 'commits_in_flight', wi, 1);
  if (inFlight !== undefined) cfg.ingest.commitsInFlight = inFlight;
  const seconds = (key: string, min: number) => {
    const v = int(i, key, wi, min);
    return v === undefined ? undefined : v * 1000;
  };
  const days = (key: string, min: number) => {
    const v = int(i, key, wi, min);
    return v === undefined ? undefined : v * DAY_MS;
  };
  cfg.ingest.maxBackfillMs = days('max_backfill_days', 1) ?? cfg.ingest.maxBackfillMs;
  cfg.ingest.gapGraceMs = seconds('gap_grace_s', 1) ?? cfg.ingest.gapGraceMs;
  cfg.ingest.commitTimeoutMs = seconds('commit_timeout_s', 1) ?? cfg.ingest.commitTimeoutMs;
  cfg.ingest.maxQueuedEnvelopes = int(i, 'max_queued_envelopes', wi, 1) ?? cfg.ingest.maxQueuedEnvelopes;
  const mib = int(i, 'max_queued_mib', wi, 1);
  if (mib !== undefined) cfg.ingest.maxQueuedBytes = mib * 1024 * 1024;
  cfg.ingest.rejectionSamplesPerMinute = int(i, 'rejection_samples_per_minute', wi, 0) ?? cfg.ingest.rejectionSamplesPerMinute;
  cfg.ingest.rejectionSampleBytes = int(i, 'rejection_sample_bytes', wi, 64) ?? cfg.ingest.rejectionSampleBytes;
  cfg.ingest.rejectionRetentionMs = days('rejection_retention_days', 1) ?? cfg.ingest.rejectionRetentionMs;

  cfg.credits = loadCredits(doc, path);
  cfg.governance = loadGovernance(table(doc, 'governance', path), path);
  cfg.rewards = loadRewards(table(doc, 'rewards', path), path);
  cfg.recs = loadRecs(table(doc, 'recs', path), path, cfg.ingest.maxBackfillMs);
  const top = { pricing: table(doc, 'dynamic_pricing', path), auction: table(doc, 'auction', path) };
  const currency = cfg.credits.defaultCurrency;
  cfg.markets = cfg.markets.map((m) => ({ ...m, rules: marketRules(top, {}, currency, path, m.intervalMinutes) }));
  const markets = doc.markets;
  if (markets !== undefined) {
    if (!Array.isArray(markets) || markets.length === 0) throw new ConfigError(`${path}: [[markets]] must be one or more tables`);
    cfg.markets = markets.map((raw, n) => {
      const w = `${path} [[markets]] #${n + 1}`;
      if (typeof raw !== 'object' || raw === null) throw new ConfigError(`${w}: must be a table`);
      const t = raw as Table;
      const id = str(t, 'id', w) ?? '';
      if (!/^[a-z0-9_]{1,64}$/.test(id)) throw new ConfigError(`${w}: id must be 1-64 of a-z, 0-9, _`);
      const timeZone = str(t, 'time_zone', w) ?? 'UTC';
      try {
        new Intl.DateTimeFormat('en-US', { timeZone });
      } catch {
        throw new ConfigError(`${w}: time_zone "${timeZone}" is not an IANA zone (e.g. Asia/Bangkok)`);
      }
      const intervalMinutes = int(t, 'interval_minutes', w, 1) ?? 15;
      if (1440 % intervalMinutes !== 0) throw new ConfigError(`${w}: interval_minutes must divide a day (5, 15, 30, 60 …)`);
      // The market's own [markets.dynamic_pricing] / [markets.auction], checked like the file's.
      const own = { pricing: table(t, 'dynamic_pricing', w), auction: table(t, 'auction', w) };
      const unknown = unknownConfigKey({ dynamic_pricing: own.pricing, auction: own.auction }, { dynamic_pricing: SETTLEMENT_CONFIG_SHAPE.dynamic_pricing!, auction: SETTLEMENT_CONFIG_SHAPE.auction! }, w);
      if (unknown) throw new ConfigError(unknown);
      const holidays = t.holidays ?? [];
      if (!Array.isArray(holidays) || !holidays.every((d) => typeof d === 'string' && /^\d{4}-\d{2}-\d{2}$/.test(d) && !Number.isNaN(Date.parse(`${d}T00:00:00Z`)))) {
        throw new ConfigError(`${w}: holidays must be a list of local dates like "2026-12-05"`);
      }
      return { id, name: str(t, 'name', w) ?? id, timeZone, intervalMinutes, rules: marketRules(top, own, currency, w, intervalMinutes), holidays: holidays as string[] };
    });
  }
  const en = table(doc, 'enrollment', path);
  const ttlH = int(en, 'code_ttl_hours', `${path} [enrollment]`, 1);
  if (ttlH !== undefined) cfg.enrollmentCodeTtlMs = ttlH * 3600_000;
  cfg.adminKey = process.env.GTX_ADMIN_KEY || str(en, 'admin_key', `${path} [enrollment]`) || null;

  const ix = table(doc, 'influxdb', path);
  const wx = `${path} [influxdb]`;
  const influxUrl = str(ix, 'url', wx);
  if (influxUrl) {
    cfg.influxdb = {
      url: influxUrl,
      database: str(ix, 'database', wx) ?? 'gridtokenx',
      flushIntervalMs: int(ix, 'flush_interval_ms', wx, 10) ?? 1000,
      maxBacklogPoints: int(ix, 'max_backlog_points', wx, 1000) ?? 1_000_000,
    };
  }

  const h = table(doc, 'http', path);
  const wh = `${path} [http]`;
  cfg.writeRateLimitPerMinute = int(h, 'write_rate_limit_per_minute', wh, 0) ?? cfg.writeRateLimitPerMinute;
  if (h.enabled === false) cfg.http = null;
  else {
    const listen = str(h, 'listen', wh);
    if (listen) cfg.http = parseListen(listen, wh);
  }
  return cfg;
}
