import { readFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { parse as parseToml } from 'smol-toml';
import { resolveDefinition } from '../devices/catalog.ts';
import type { DeviceDefinition } from '../devices/definition.ts';
import { unknownConfigKey, type ConfigShape } from '../protocol/config-keys.ts';
import {
  ENERGY_SOURCES,
  METER_ROLES,
  gatewayId,
  isValidId,
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
  /** The outbox may grow to this many bytes; past it new readings are not stored (nothing waiting is deleted). */
  outboxMaxBytes: number;
  /** A read-only status page (and /metrics) on this address; null = off. */
  statusListen: { host: string; port: number } | null;
  mqtt: {
    /**
     * Set on purpose (in the config file, or by whoever built this config). Undefined means
     * "not set": the gateway uses the broker URL settlement returned at enrollment, or
     * DEFAULT_BROKER_URL before it is enrolled (see brokerSettings in enroll.ts).
     */
    url?: string;
    username?: string;
    password?: string;
    /** mqtts://: a CA to trust (PEM), and a client certificate and key when the broker asks for one. */
    caFile?: string;
    certFile?: string;
    keyFile?: string;
    ackTimeoutMs: number;
    maxInFlight: number;
  };
  /** Serial lines and TCP endpoints; each is polled by one client, one request at a time. */
  buses: BusConfig[];
  meters: MeterConfig[];
  /** Home Assistant MQTT discovery on the prosumer's own broker ([home_assistant]); null = off. */
  homeAssistant: HomeAssistantConfig | null;
}

/** Where and how the gateway shows its meters and the market price to Home Assistant. */
export interface HomeAssistantConfig {
  /** mqtt:// or mqtts://, without a login in it (username and password are separate keys). */
  url: string;
  username?: string;
  password?: string;
  /** Topic prefix Home Assistant listens on for discovery ("homeassistant"). */
  discoveryPrefix: string;
  /** Topic prefix of the gateway's state and availability messages ("gridtokenx"). */
  statePrefix: string;
  /** mqtts://: a CA to trust (PEM), read at start. */
  caFile?: string;
  /** The market whose price is shown; default the one the enrollment named. */
  market?: string;
}

export const HA_DEFAULT_DISCOVERY_PREFIX = 'homeassistant';
export const HA_DEFAULT_STATE_PREFIX = 'gridtokenx';

export type Parity = 'none' | 'even' | 'odd';

/**
 * A bus: a serial port (Modbus RTU over RS-485) or a TCP endpoint (a meter, or an RS-485/TCP
 * bridge, many of which take one connection only). Several meters share a bus by unit id.
 */
export type BusConfig =
  | { kind: 'tcp'; name: string; host: string; port: number; connectTimeoutMs: number }
  | { kind: 'rtu'; name: string; path: string; baudRate: number; parity: Parity; dataBits: 7 | 8; stopBits: 1 | 2 };

export interface MeterConfig {
  id: MeterId;
  definition: DeviceDefinition;
  /** The name of its bus in GatewayConfig.buses. */
  bus: string;
  unitId: number;
  /** Per request; a meter that does not answer costs its bus at most this per attempt. */
  timeoutMs: number;
  /** Its own schedule; default [gateway] poll_interval_s. */
  intervalMs?: number;
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
    batchMaxReadings: 64,
    batchMaxAgeMs: 10_000,
    // 30 days of 16 meters read every 10 s take about 1.3 GB (docs/gateway.md#the-outbox).
    outboxMaxBytes: 2048 * 1024 * 1024,
    statusListen: null,
    mqtt: { ackTimeoutMs: 15_000, maxInFlight: 32 },
    buses: [],
    meters: [],
    homeAssistant: null,
  };
}

/** The name of the TCP bus for host:port in `cfg`, added if missing (a meter's `host`/`port` shorthand). */
export function tcpBus(cfg: Pick<GatewayConfig, 'buses'>, host: string, port: number, connectTimeoutMs = 3_000): string {
  const name = `${host.includes(':') ? `[${host}]` : host}:${port}`;
  if (!cfg.buses.some((b) => b.name === name)) cfg.buses.push({ kind: 'tcp', name, host, port, connectTimeoutMs });
  return name;
}

/** Where a bus is, for messages: modbus-tcp://host:port or modbus-rtu:///dev/ttyUSB0@9600/8N1. */
export function busUrl(b: BusConfig): string {
  if (b.kind === 'tcp') return `modbus-tcp://${b.host.includes(':') ? `[${b.host}]` : b.host}:${b.port}`;
  return `modbus-rtu://${b.path}@${b.baudRate}/${b.dataBits}${b.parity[0]!.toUpperCase()}${b.stopBits}`;
}

type Table = Record<string, unknown>;

/** Every table and key loadGatewayConfig reads; anything else in the file is refused. */
export const GATEWAY_CONFIG_SHAPE: ConfigShape = {
  gateway: { kind: 'table', keys: ['id', 'data_dir', 'key_file', 'poll_interval_s', 'batch_max_readings', 'batch_max_age_s', 'outbox_max_mib', 'status_listen'] },
  mqtt: { kind: 'table', keys: ['url', 'username', 'password', 'ca_file', 'cert_file', 'key_file', 'ack_timeout_s', 'max_in_flight'] },
  buses: { kind: 'array', keys: ['name', 'serial', 'baud', 'parity', 'data_bits', 'stop_bits', 'tcp', 'connect_timeout_s'] },
  meters: {
    kind: 'array',
    keys: ['id', 'model', 'bus', 'transport', 'host', 'port', 'unit_id', 'timeout_s', 'poll_interval_s', 'role', 'energy_source', 'rated_power_w'],
  },
  home_assistant: { kind: 'table', keys: ['url', 'username', 'password', 'password_file', 'discovery_prefix', 'state_prefix', 'ca_file', 'market'] },
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
  const mib = num(g, 'outbox_max_mib', '[gateway]', 16);
  if (mib !== undefined) cfg.outboxMaxBytes = Math.round(mib * 1024 * 1024);
  const listen = str(g, 'status_listen', '[gateway]');
  if (listen !== undefined) {
    const m = /^(?:\[([^\]]+)\]|([^:]+)):(\d{1,5})$/.exec(listen);
    if (!m || Number(m[3]) > 65535) fail('[gateway]', `status_listen must look like "127.0.0.1:8081", got "${listen}"`);
    cfg.statusListen = { host: (m![1] ?? m![2])!, port: Number(m![3]) };
  }

  const m = tbl(doc.mqtt, '[mqtt]');
  // Undefined when absent: the broker settlement named at enrollment is used (brokerSettings),
  // not a default that may be some other broker on this host.
  cfg.mqtt.url = str(m, 'url', '[mqtt]');
  cfg.mqtt.username = str(m, 'username', '[mqtt]');
  cfg.mqtt.password = str(m, 'password', '[mqtt]');
  // TLS files relative to the config file, and read now: a missing one is a config error, not a silent plain connection.
  for (const [key, field] of [['ca_file', 'caFile'], ['cert_file', 'certFile'], ['key_file', 'keyFile']] as const) {
    const file = str(m, key, '[mqtt]');
    if (file === undefined) continue;
    const path = resolve(base, file);
    try {
      readFileSync(path);
    } catch (e) {
      fail('[mqtt]', `${key} ${path}: ${(e as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such file' : (e as Error).message}`);
    }
    cfg.mqtt[field] = path;
  }
  if ((cfg.mqtt.certFile === undefined) !== (cfg.mqtt.keyFile === undefined)) fail('[mqtt]', 'cert_file and key_file go together (the client certificate and its key)');
  const ackTimeout = num(m, 'ack_timeout_s', '[mqtt]', 1);
  if (ackTimeout !== undefined) cfg.mqtt.ackTimeoutMs = Math.round(ackTimeout * 1000);
  cfg.mqtt.maxInFlight = num(m, 'max_in_flight', '[mqtt]', 1) ?? cfg.mqtt.maxInFlight;

  if (doc.home_assistant !== undefined) {
    const where = '[home_assistant]';
    const h = tbl(doc.home_assistant, where);
    const readable = (key: string, file: string): string => {
      const p = resolve(base, file);
      try {
        readFileSync(p);
      } catch (e) {
        fail(where, `${key} ${p}: ${(e as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such file' : (e as Error).message}`);
      }
      return p;
    };
    const url = str(h, 'url', where) ?? fail(where, 'url is required, e.g. "mqtt://homeassistant.local:1883" (the broker Home Assistant listens on)');
    const u = URL.canParse(url) ? new URL(url) : undefined;
    if (!u || (u.protocol !== 'mqtt:' && u.protocol !== 'mqtts:') || u.hostname === '') fail(where, `url must look like "mqtt://homeassistant.local:1883" or "mqtts://…", got "${url}"`);
    // A login inside the URL would end up in every log line that names the broker.
    if (u!.username !== '' || u!.password !== '') fail(where, 'url must not carry a login: use username and password (or password_file)');
    if (u!.pathname !== '' && u!.pathname !== '/') fail(where, `url must name a broker only (no path), got "${url}"`);
    const password = str(h, 'password', where);
    const passwordFile = str(h, 'password_file', where);
    if (password !== undefined && passwordFile !== undefined) fail(where, 'give either password or password_file, not both');
    const secret = passwordFile === undefined ? password : readFileSync(readable('password_file', passwordFile), 'utf8').replace(/\r?\n$/, '');
    if (secret === '') fail(where, `password_file ${resolve(base, passwordFile!)} is empty`);
    const username = str(h, 'username', where);
    if (secret !== undefined && username === undefined) fail(where, 'a password needs a username');
    const caFile = str(h, 'ca_file', where);
    if (caFile !== undefined && u!.protocol !== 'mqtts:') fail(where, 'ca_file is for an mqtts:// url');
    const prefix = (key: string, fallback: string): string => {
      const v = str(h, key, where) ?? fallback;
      // One or more plain topic levels: no wildcards, no empty level, nothing HA's discovery
      // topic grammar ([a-zA-Z0-9_-]) or a subscriber's filter would read differently.
      if (!/^[A-Za-z0-9_-]+(\/[A-Za-z0-9_-]+)*$/.test(v)) fail(where, `${key} must be topic levels of letters, digits, '_' or '-' separated by '/', got "${v}"`);
      return v;
    };
    const market = str(h, 'market', where);
    if (market !== undefined && !isValidId(market)) fail(where, `market must be a market id (letters, digits, '.', '_' or '-'), got "${market}"`);
    cfg.homeAssistant = {
      url,
      ...(username === undefined ? {} : { username }),
      ...(secret === undefined ? {} : { password: secret }),
      discoveryPrefix: prefix('discovery_prefix', HA_DEFAULT_DISCOVERY_PREFIX),
      statePrefix: prefix('state_prefix', HA_DEFAULT_STATE_PREFIX),
      ...(caFile === undefined ? {} : { caFile: readable('ca_file', caFile) }),
      ...(market === undefined ? {} : { market }),
    };
    if (cfg.homeAssistant.discoveryPrefix === cfg.homeAssistant.statePrefix) fail(where, 'discovery_prefix and state_prefix must differ');
  }

  const buses = doc.buses ?? [];
  if (!Array.isArray(buses)) fail('[[buses]]', 'must be an array of tables');
  (buses as unknown[]).forEach((raw, i) => {
    const where = `[[buses]] #${i + 1}`;
    const t = tbl(raw, where);
    const name = str(t, 'name', where) ?? fail(where, 'name is required (meters name their bus with bus = "…")');
    if (cfg.buses.some((b) => b.name === name)) fail(where, `bus name ${name} appears twice`);
    const serial = str(t, 'serial', where);
    const tcp = str(t, 'tcp', where);
    if ((serial === undefined) === (tcp === undefined)) fail(where, 'give either serial = "/dev/ttyUSB0" (Modbus RTU) or tcp = "host:port" (Modbus TCP)');
    if (tcp !== undefined) {
      for (const k of ['baud', 'parity', 'data_bits', 'stop_bits']) if (t[k] !== undefined) fail(where, `${k} is for a serial bus; this one is tcp`);
      const m = /^(?:\[([^\]]+)\]|([^:]+))(?::(\d{1,5}))?$/.exec(tcp);
      const port = m?.[3] === undefined ? 502 : Number(m[3]);
      if (!m || port < 1 || port > 65535) fail(where, `tcp must look like "192.168.1.50:502", got "${tcp}"`);
      cfg.buses.push({ kind: 'tcp', name, host: (m![1] ?? m![2])!, port, connectTimeoutMs: Math.round((num(t, 'connect_timeout_s', where, 0.1) ?? 3) * 1000) });
    } else {
      if (t.connect_timeout_s !== undefined) fail(where, 'connect_timeout_s is for a tcp bus');
      const parity = str(t, 'parity', where) ?? 'none';
      if (!['none', 'even', 'odd'].includes(parity)) fail(where, `parity must be none, even or odd, got "${parity}"`);
      const dataBits = num(t, 'data_bits', where, 7) ?? 8;
      if (dataBits !== 7 && dataBits !== 8) fail(where, 'data_bits must be 7 or 8');
      const stopBits = num(t, 'stop_bits', where, 1) ?? 1;
      if (stopBits !== 1 && stopBits !== 2) fail(where, 'stop_bits must be 1 or 2');
      const baudRate = num(t, 'baud', where, 300) ?? 9600;
      if (!Number.isInteger(baudRate) || baudRate > 921_600) fail(where, `baud must be a whole number from 300 to 921600, got ${baudRate}`);
      cfg.buses.push({ kind: 'rtu', name, path: serial!, baudRate, parity: parity as Parity, dataBits: dataBits as 7 | 8, stopBits: stopBits as 1 | 2 });
    }
  });

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
    // A catalog id or alias, or a definition file (.json/.toml) relative to this config.
    const definition = ident((x) => resolveDefinition(x, base), model, where);
    const transport = str(t, 'transport', where);
    if (transport !== undefined && transport !== 'tcp') fail(where, `transport "${transport}" is not supported; name a [[buses]] entry with bus = "…" (serial or tcp)`);
    const busName = str(t, 'bus', where);
    const host = str(t, 'host', where);
    if (busName !== undefined && (host !== undefined || t.port !== undefined)) fail(where, 'give either bus = "…" or host (and port), not both');
    let bus: string;
    if (busName !== undefined) {
      if (!cfg.buses.some((b) => b.name === busName)) fail(where, `bus "${busName}" is not defined; known buses: ${cfg.buses.map((b) => b.name).join(', ') || 'none (add a [[buses]] table)'}`);
      bus = busName;
    } else {
      bus = tcpBus(cfg, host ?? fail(where, 'bus = "…" (a [[buses]] name) or host is required'), num(t, 'port', where, 1) ?? 502);
    }
    const unitId = num(t, 'unit_id', where, 0) ?? 1;
    if (!Number.isInteger(unitId) || unitId > 247) fail(where, `unit_id must be a whole number from 0 to 247, got ${unitId}`);
    const clash = cfg.meters.find((x) => x.bus === bus && x.unitId === unitId);
    if (clash) fail(where, `unit ${unitId} on bus ${bus} is already meter ${clash.id}`);
    const interval = num(t, 'poll_interval_s', where, 0.1);
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
      bus,
      unitId,
      timeoutMs: Math.round((num(t, 'timeout_s', where, 0.05) ?? 1) * 1000),
      ...(interval === undefined ? {} : { intervalMs: Math.round(interval * 1000) }),
    });
  });
  return cfg;
}
