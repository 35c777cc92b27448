import { readFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { parse as parseToml } from 'smol-toml';

/** Settlement configuration: `config/settlement.toml`, every key optional. See README. */
export interface SettlementConfig {
  dataDir: string;
  /** `databaseUrl` (PostgreSQL) wins over `sqlitePath` when set. */
  ledger: { sqlitePath: string; databaseUrl?: string };
  mqtt:
    | { mode: 'embedded'; listenHost: string; listenPort: number; clientId: string }
    | { mode: 'external'; url: string; clientId: string; username?: string; password?: string };
  ingest: { maxPayloadBytes: number; maxClockSkewMs: number; commitBatchMax: number };
  /** Time series for utilities and Grafana; null = none. See docs/influxdb.md. */
  influxdb: { url: string; database: string; flushIntervalMs: number; maxBacklogPoints: number } | null;
  /** REST API, web pages and /metrics; null turns the HTTP server off. */
  http: { host: string; port: number } | null;
  logLevel: string;
}

export class ConfigError extends Error {
  override readonly name = 'ConfigError';
}

export function defaultSettlementConfig(dataDir = './data'): SettlementConfig {
  return {
    dataDir,
    ledger: { sqlitePath: resolve(dataDir, 'ledger.sqlite'), databaseUrl: process.env.DATABASE_URL || undefined },
    mqtt: { mode: 'embedded', listenHost: '127.0.0.1', listenPort: 1883, clientId: 'gtx-settlement' },
    ingest: { maxPayloadBytes: 256 * 1024, maxClockSkewMs: 300_000, commitBatchMax: 512 },
    http: { host: '127.0.0.1', port: 8080 },
    influxdb: null,
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

/** Reads a settlement TOML file; relative paths are relative to the file's folder. */
export function loadSettlementConfig(path: string): SettlementConfig {
  let doc: Table;
  try {
    doc = parseToml(readFileSync(path, 'utf8')) as Table;
  } catch (e) {
    throw new ConfigError(`${path}: ${(e as Error).message}`);
  }
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
  const clientId = str(m, 'client_id', w) ?? 'gtx-settlement';
  const url = str(m, 'url', w);
  if (url) {
    if (m.listen !== undefined) throw new ConfigError(`${w}: set either url (external broker) or listen (embedded broker), not both`);
    cfg.mqtt = { mode: 'external', url, clientId, username: str(m, 'username', w), password: str(m, 'password', w) };
  } else {
    const { host, port } = parseListen(str(m, 'listen', w) ?? '127.0.0.1:1883', w);
    cfg.mqtt = { mode: 'embedded', listenHost: host, listenPort: port, clientId };
  }

  const i = table(doc, 'ingest', path);
  const wi = `${path} [ingest]`;
  cfg.ingest.maxPayloadBytes = int(i, 'max_payload_bytes', wi, 1024) ?? cfg.ingest.maxPayloadBytes;
  const skew = int(i, 'max_clock_skew_s', wi, 1);
  if (skew !== undefined) cfg.ingest.maxClockSkewMs = skew * 1000;
  cfg.ingest.commitBatchMax = int(i, 'commit_batch_max', wi, 1) ?? cfg.ingest.commitBatchMax;

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
  if (h.enabled === false) cfg.http = null;
  else {
    const listen = str(h, 'listen', wh);
    if (listen) cfg.http = parseListen(listen, wh);
  }
  return cfg;
}
