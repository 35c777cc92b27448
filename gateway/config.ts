import { readFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { parse as parseToml } from 'smol-toml';
import { getDefinition } from '../devices/catalog.ts';
import type { DeviceDefinition } from '../devices/definition.ts';
import { unknownConfigKey, type ConfigShape } from '../protocol/config-keys.ts';
import {
  ENERGY_SOURCES,
  METER_ROLES,
  gatewayId,
  meterId,
  type EnergySource,
  type GatewayId,
  type MeterId,
  type MeterRole,
} from '../protocol/index.ts';

/** Gateway configuration: `config/gateway.toml`. See README. */
export interface GatewayConfig {
  id: GatewayId;
  dataDir: string;
  keyFile: string;
  outboxFile: string;
  pollIntervalMs: number;
  batchMaxReadings: number;
  batchMaxAgeMs: number;
  mqtt: {
    /**
     * Set on purpose (in the config file, or by whoever built this config). Undefined means
     * "not set": the gateway uses the broker URL settlement returned at enrollment, or
     * DEFAULT_BROKER_URL before it is enrolled (see brokerSettings in enroll.ts).
     */
    url?: string;
    username?: string;
    password?: string;
    ackTimeoutMs: number;
    maxInFlight: number;
  };
  meters: MeterConfig[];
}

export interface MeterConfig {
  id: MeterId;
  definition: DeviceDefinition;
  host: string;
  port: number;
  unitId: number;
  timeoutMs: number;
  /** What the meter measures; told to settlement at enrollment. */
  role: MeterRole;
  ratedPowerW: number;
  energySource: EnergySource | null;
}

export class GatewayConfigError extends Error {
  override readonly name = 'GatewayConfigError';
}

/** The broker a gateway tries when neither its config nor an enrollment names one. */
export const DEFAULT_BROKER_URL = 'mqtt://127.0.0.1:1883';

export function gatewayDefaults(id: string, dataDir: string): GatewayConfig {
  return {
    id: gatewayId(id),
    dataDir,
    keyFile: resolve(dataDir, 'gateway.key'),
    outboxFile: resolve(dataDir, 'outbox.sqlite'),
    pollIntervalMs: 5_000,
    batchMaxReadings: 16,
    batchMaxAgeMs: 10_000,
    mqtt: { ackTimeoutMs: 15_000, maxInFlight: 32 },
    meters: [],
  };
}

type Table = Record<string, unknown>;

/** Every table and key loadGatewayConfig reads; anything else in the file is refused. */
export const GATEWAY_CONFIG_SHAPE: ConfigShape = {
  gateway: { kind: 'table', keys: ['id', 'data_dir', 'key_file', 'poll_interval_s', 'batch_max_readings', 'batch_max_age_s'] },
  mqtt: { kind: 'table', keys: ['url', 'username', 'password', 'ack_timeout_s', 'max_in_flight'] },
  meters: {
    kind: 'array',
    keys: ['id', 'model', 'transport', 'host', 'port', 'unit_id', 'timeout_s', 'role', 'energy_source', 'rated_power_w'],
  },
};

export function loadGatewayConfig(path: string): GatewayConfig {
  let doc: Table;
  try {
    doc = parseToml(readFileSync(path, 'utf8')) as Table;
  } catch (e) {
    const missing = (e as NodeJS.ErrnoException).code === 'ENOENT';
    throw new GatewayConfigError(`${path}: ${missing ? 'no such file' : (e as Error).message}`);
  }
  const unknown = unknownConfigKey(doc, GATEWAY_CONFIG_SHAPE, path);
  if (unknown) throw new GatewayConfigError(unknown);
  const base = dirname(resolve(path));
  const fail = (where: string, msg: string): never => {
    throw new GatewayConfigError(`${path} ${where}: ${msg}`);
  };
  const tbl = (v: unknown, where: string): Table =>
    v === undefined ? {} : typeof v === 'object' && v !== null && !Array.isArray(v) ? (v as Table) : fail(where, 'must be a table');
  const str = (t: Table, k: string, where: string): string | undefined =>
    t[k] === undefined ? undefined : typeof t[k] === 'string' && t[k] !== '' ? (t[k] as string) : fail(where, `${k} must be a non-empty string`);
  const num = (t: Table, k: string, where: string, min: number): number | undefined =>
    t[k] === undefined ? undefined : typeof t[k] === 'number' && (t[k] as number) >= min ? (t[k] as number) : fail(where, `${k} must be a number ≥ ${min}`);
  const ident = <T>(f: (s: string) => T, s: string, where: string): T => {
    try {
      return f(s);
    } catch (e) {
      return fail(where, (e as Error).message);
    }
  };

  const g = tbl(doc.gateway, '[gateway]');
  const id = str(g, 'id', '[gateway]') ?? fail('[gateway]', 'id is required');
  ident(gatewayId, id, '[gateway]');
  const dataDir = resolve(base, str(g, 'data_dir', '[gateway]') ?? './data/gateway');
  const cfg = gatewayDefaults(id, dataDir);
  const keyFile = str(g, 'key_file', '[gateway]');
  if (keyFile) cfg.keyFile = resolve(dataDir, keyFile);
  const poll = num(g, 'poll_interval_s', '[gateway]', 0.1);
  if (poll !== undefined) cfg.pollIntervalMs = Math.round(poll * 1000);
  cfg.batchMaxReadings = num(g, 'batch_max_readings', '[gateway]', 1) ?? cfg.batchMaxReadings;
  const age = num(g, 'batch_max_age_s', '[gateway]', 0);
  if (age !== undefined) cfg.batchMaxAgeMs = Math.round(age * 1000);

  const m = tbl(doc.mqtt, '[mqtt]');
  // Undefined when absent: the broker settlement named at enrollment is used (brokerSettings),
  // not a default that may be some other broker on this host.
  cfg.mqtt.url = str(m, 'url', '[mqtt]');
  cfg.mqtt.username = str(m, 'username', '[mqtt]');
  cfg.mqtt.password = str(m, 'password', '[mqtt]');
  const ackTimeout = num(m, 'ack_timeout_s', '[mqtt]', 1);
  if (ackTimeout !== undefined) cfg.mqtt.ackTimeoutMs = Math.round(ackTimeout * 1000);
  cfg.mqtt.maxInFlight = num(m, 'max_in_flight', '[mqtt]', 1) ?? cfg.mqtt.maxInFlight;

  const meters = doc.meters ?? [];
  if (!Array.isArray(meters)) fail('[[meters]]', 'must be an array of tables');
  const seen = new Set<string>();
  (meters as unknown[]).forEach((raw, i) => {
    const where = `[[meters]] #${i + 1}`;
    const t = tbl(raw, where);
    const mid = ident(meterId, str(t, 'id', where) ?? fail(where, 'id is required'), where);
    if (seen.has(mid)) fail(where, `meter id ${mid} appears twice`);
    seen.add(mid);
    const model = str(t, 'model', where) ?? fail(where, 'model is required (e.g. "sdm120")');
    const definition = ident(getDefinition, model, where);
    const transport = str(t, 'transport', where) ?? 'tcp';
    if (transport !== 'tcp') fail(where, `transport "${transport}" is not supported yet; use "tcp"`);
    const role = (str(t, 'role', where) ?? 'consumption') as MeterRole;
    if (!METER_ROLES.includes(role)) fail(where, `role must be one of ${METER_ROLES.join(', ')}`);
    const source = str(t, 'energy_source', where) ?? null;
    if (source !== null && !(ENERGY_SOURCES as readonly string[]).includes(source)) fail(where, `energy_source must be one of ${ENERGY_SOURCES.join(', ')}`);
    if (role !== 'consumption' && source === null) fail(where, `a ${role} meter needs energy_source (${ENERGY_SOURCES.join(', ')})`);
    cfg.meters.push({
      id: mid,
      definition,
      role,
      ratedPowerW: num(t, 'rated_power_w', where, 1) ?? definition.maxPowerW,
      energySource: source as EnergySource | null,
      host: str(t, 'host', where) ?? fail(where, 'host is required'),
      port: num(t, 'port', where, 1) ?? 502,
      unitId: num(t, 'unit_id', where, 0) ?? 1,
      timeoutMs: Math.round((num(t, 'timeout_s', where, 0.1) ?? 2) * 1000),
    });
  });
  return cfg;
}
