import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Value } from '@sinclair/typebox/value';
import {
  ENROLLMENT_PATH,
  EnrollmentResponseSchema,
  type EnrollmentRequest,
  type EnrollmentResponse,
} from '../protocol/index.ts';
import type { GatewayConfig } from './config.ts';
import { loadOrCreateKey } from './keys.ts';

export class EnrollError extends Error {
  override readonly name = 'EnrollError';
}

export interface MqttCredentials {
  url: string;
  username: string;
  password: string;
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

/** POSTs the enrollment to settlement and keeps the returned MQTT credentials (mode 0600). */
export async function enroll(cfg: GatewayConfig, settlementUrl: string, code: string): Promise<EnrollmentResponse> {
  const url = new URL(ENROLLMENT_PATH, settlementUrl);
  let res: Response;
  try {
    res = await fetch(url, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify(enrollmentRequest(cfg, code)),
      signal: AbortSignal.timeout(15_000),
    });
  } catch (e) {
    throw new EnrollError(`cannot reach settlement at ${url.origin}: ${(e as Error).message}`);
  }
  const body = (await res.json().catch(() => ({}))) as { message?: string; code?: string };
  if (!res.ok) throw new EnrollError(`settlement refused the enrollment (${res.status} ${body.code ?? ''}): ${body.message ?? res.statusText}`);
  if (!Value.Check(EnrollmentResponseSchema, body)) throw new EnrollError('settlement answered with an unexpected enrollment response');
  saveCredentials(cfg.dataDir, body.mqtt);
  return body;
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
