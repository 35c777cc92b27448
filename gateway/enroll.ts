import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Value } from '@sinclair/typebox/value';
import {
  ENROLLMENT_PATH,
  EnrollmentResponseSchema,
  type EnrollmentRequest,
  type EnrollmentResponse,
} from '../protocol/index.ts';
import { DEFAULT_BROKER_URL, type GatewayConfig } from './config.ts';
import { loadOrCreateKey } from './keys.ts';
import { Outbox, type HeadAdoption } from './outbox.ts';

export class EnrollError extends Error {
  override readonly name = 'EnrollError';
}

export interface MqttCredentials {
  url: string;
  username: string;
  password: string;
  /** The market settlement enrolled this gateway in (for the price it shows Home Assistant); absent in files saved before it was kept. */
  market?: string;
}

const CREDENTIALS_FILE = 'mqtt-credentials.json';

/** Builds the request from the gateway's config: its id, public key and meters. */
export function enrollmentRequest(cfg: GatewayConfig, code: string): EnrollmentRequest {
  const key = loadOrCreateKey(cfg.keyFile);
  return {
    code,
    gateway: cfg.id,
    publicKeyPem: key.publicKeyPem,
    meters: cfg.meters.map((m) => ({
      id: m.id,
      model: m.definition.id,
      role: m.role,
      ratedPowerW: m.ratedPowerW,
      energySource: m.energySource,
    })),
  };
}

/** Settlement's answer, with what this gateway made of it. */
export interface Enrolled extends EnrollmentResponse {
  /** The broker URL saved with the credentials (settlement's, made reachable from here). */
  brokerUrl: string;
  /** What happened to each meter's chain head in the outbox (see Outbox.adoptChainHeads). */
  heads: HeadAdoption[];
}

/**
 * POSTs the enrollment to settlement, keeps the returned MQTT login and broker URL (mode 0600),
 * and continues each meter's hash chain where the ledger has it, so a gateway that replaces
 * another goes on at seq + 1 instead of restarting at 1 (which settlement refuses).
 */
export async function enroll(cfg: GatewayConfig, settlementUrl: string, code: string): Promise<Enrolled> {
  if (!/^https?:\/\//i.test(settlementUrl) || !URL.canParse(settlementUrl)) {
    throw new EnrollError(`the settlement URL must start with http:// or https://, e.g. http://127.0.0.1:8080; got "${settlementUrl}"`);
  }
  const url = new URL(ENROLLMENT_PATH, settlementUrl);
  let res: Response;
  try {
    res = await fetch(url, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify(enrollmentRequest(cfg, code)),
      signal: AbortSignal.timeout(ENROLL_TIMEOUT_MS),
    });
  } catch (e) {
    throw new EnrollError(unreachable(e, url));
  }
  const body = (await res.json().catch(() => ({}))) as { message?: string; code?: string };
  if (!res.ok) {
    throw new EnrollError(
      `settlement at ${url.origin} refused the enrollment: ${body.code ?? `HTTP ${res.status}`}: ${body.message ?? res.statusText} (HTTP ${res.status})`,
    );
  }
  // A settlement from before chainHeads still enrolled us (the code is spent): keep its login.
  const answer: unknown = { chainHeads: [], ...body };
  if (!Value.Check(EnrollmentResponseSchema, answer)) throw new EnrollError('settlement answered with an unexpected enrollment response');
  const brokerUrl = reachableBrokerUrl(answer.mqtt.url, url.href);
  saveCredentials(cfg.dataDir, { ...answer.mqtt, url: brokerUrl, market: answer.market });
  let heads: HeadAdoption[];
  const outbox = new Outbox(cfg.outboxFile);
  try {
    heads = outbox.adoptChainHeads(answer.chainHeads);
  } catch (e) {
    throw new EnrollError(`enrolled, but could not store the meters' chain heads in ${cfg.outboxFile}: ${(e as Error).message}`);
  } finally {
    outbox.close();
  }
  return { ...answer, brokerUrl, heads };
}

const ENROLL_TIMEOUT_MS = 15_000;

/** Why the settlement could not be asked, in words that say what to check. */
function unreachable(e: unknown, url: URL): string {
  const err = e as Error & { cause?: { code?: string; message?: string } };
  const at = url.origin;
  if (err.name === 'TimeoutError' || err.name === 'AbortError') {
    return `no answer from ${at} within ${ENROLL_TIMEOUT_MS / 1000} s: is this the settlement's [http] address, and does a firewall let it through?`;
  }
  switch (err.cause?.code) {
    case 'ECONNREFUSED':
      return `nothing listens at ${at}: is the settlement running, and is this its [http] address?`;
    case 'ENOTFOUND':
    case 'EAI_AGAIN':
      return `cannot find the host ${url.hostname} (of ${at}): check the host name in --url, or use the settlement's IP address`;
    case 'ECONNRESET':
    case 'EPROTO':
      return `${at} closed the connection: is this the settlement's [http] address (http:// vs https://)?`;
    case 'EHOSTUNREACH':
    case 'ENETUNREACH':
      return `no route to ${at}: check the network between this gateway and the settlement`;
    default:
      return `cannot reach settlement at ${at}: ${err.cause?.message ?? err.message}`;
  }
}

const isUnspecified = (host: string) => host === '0.0.0.0' || host === '[::]';
const isLoopback = (host: string) => host === 'localhost' || host === '[::1]' || host.startsWith('127.');

/**
 * Settlement names its embedded broker by the address it listens on. 0.0.0.0 means "every
 * address of that host", and 127.0.0.1 is only right on that host: reached from elsewhere, the
 * broker is at the host this gateway reached settlement by.
 */
export function reachableBrokerUrl(brokerUrl: string, settlementUrl: string): string {
  let broker: URL;
  let settlement: URL;
  try {
    broker = new URL(brokerUrl);
    settlement = new URL(settlementUrl);
  } catch {
    return brokerUrl;
  }
  const local = isUnspecified(settlement.hostname) || isLoopback(settlement.hostname);
  if (isUnspecified(broker.hostname) || (isLoopback(broker.hostname) && !local)) {
    broker.hostname = isUnspecified(settlement.hostname) ? '127.0.0.1' : settlement.hostname;
    return broker.toString();
  }
  return brokerUrl;
}

/** Where the gateway's MQTT connection goes, and which login it uses. */
export interface BrokerSettings {
  url: string;
  username?: string;
  password?: string;
  /** config: [mqtt] url set on purpose; enrollment: the URL settlement returned; default: neither. */
  source: 'config' | 'enrollment' | 'default';
}

/**
 * The config's [mqtt] url when it was set on purpose, else the broker settlement named at
 * enrollment; the config's login when it names one, else the enrolled one.
 */
export function brokerSettings(cfg: GatewayConfig): BrokerSettings {
  const saved = savedCredentials(cfg.dataDir);
  const login = cfg.mqtt.username
    ? { username: cfg.mqtt.username, password: cfg.mqtt.password }
    : saved
      ? { username: saved.username, password: saved.password }
      : {};
  if (cfg.mqtt.url) return { url: cfg.mqtt.url, ...login, source: 'config' };
  if (saved?.url) return { url: saved.url, ...login, source: 'enrollment' };
  return { url: DEFAULT_BROKER_URL, ...login, source: 'default' };
}

/** Keeps the MQTT login settlement issued; only this gateway's user may read it. */
export function saveCredentials(dataDir: string, creds: MqttCredentials): void {
  mkdirSync(dataDir, { recursive: true, mode: 0o700 });
  writeFileSync(join(dataDir, CREDENTIALS_FILE), JSON.stringify(creds, null, 2), { mode: 0o600 });
}

/** Credentials saved by a previous enrollment, if any. */
export function savedCredentials(dataDir: string): MqttCredentials | undefined {
  const file = join(dataDir, CREDENTIALS_FILE);
  if (!existsSync(file)) return undefined;
  return JSON.parse(readFileSync(file, 'utf8')) as MqttCredentials;
}
