import { randomBytes, scrypt, scryptSync, timingSafeEqual } from 'node:crypto';
import { isReservedId, isValidId, RESERVED_ID_PREFIX } from '../../protocol/index.ts';
import { SETTLEMENT_USERNAME } from './acl.ts';

/**
 * MQTT credentials: who may connect to the settlement's broker, and how their secrets are kept.
 *
 * Secrets are issued by the settlement (`newSecret`, 256 random bits) and only their scrypt
 * hash is stored. The stored form carries its own parameters so they can be raised later
 * without invalidating existing hashes:
 *
 *     scrypt$<N>$<r>$<p>$<salt, base64url>$<hash, base64url>
 */

/** scrypt cost: N=2^14, r=8, p=1 (16 MiB, tens of ms), a 16-byte salt and a 32-byte key. */
const N = 16_384;
const R = 8;
const P = 1;
const SALT_BYTES = 16;
const KEY_BYTES = 32;

const storedRe = /^scrypt\$(\d{1,8})\$(\d{1,2})\$(\d{1,2})\$([A-Za-z0-9_-]{16,128})\$([A-Za-z0-9_-]{16,256})$/;

interface Parsed {
  n: number;
  r: number;
  p: number;
  salt: Buffer;
  hash: Buffer;
}

function parse(stored: string): Parsed | undefined {
  const m = storedRe.exec(stored);
  if (!m) return undefined;
  const n = Number(m[1]);
  const r = Number(m[2]);
  const p = Number(m[3]);
  // Bounds keep a corrupt or hostile stored value from making one verify cost seconds or GiBs.
  if (n < 1024 || n > 1_048_576 || (n & (n - 1)) !== 0) return undefined;
  if (r < 1 || r > 32 || p < 1 || p > 16) return undefined;
  const salt = Buffer.from(m[4]!, 'base64url');
  const hash = Buffer.from(m[5]!, 'base64url');
  if (salt.length < 8 || hash.length < 16) return undefined;
  return { n, r, p, salt, hash };
}

const maxmem = (n: number, r: number, p: number) => 128 * n * r * p + 128 * r * (n + p + 2) + (1 << 20);

/** A new MQTT secret: 32 random bytes, base64url (43 characters, no padding). */
export function newSecret(): string {
  return randomBytes(32).toString('base64url');
}

/** The stored form of `secret` (salted scrypt). */
export function hashSecret(secret: string): string {
  const salt = randomBytes(SALT_BYTES);
  const hash = scryptSync(secret, salt, KEY_BYTES, { N, r: R, p: P, maxmem: maxmem(N, R, P) });
  return `scrypt$${N}$${R}$${P}$${salt.toString('base64url')}$${hash.toString('base64url')}`;
}

/** True when `secret` matches `stored`; false for a wrong secret or a malformed stored value. */
export function verifySecret(secret: string, stored: string): boolean {
  const s = parse(stored);
  if (!s) return false;
  const got = scryptSync(secret, s.salt, s.hash.length, { N: s.n, r: s.r, p: s.p, maxmem: maxmem(s.n, s.r, s.p) });
  return timingSafeEqual(got, s.hash);
}

/** `verifySecret` on the libuv thread pool, so a burst of (re)connecting gateways doesn't stall the event loop. */
export function verifySecretAsync(secret: string, stored: string): Promise<boolean> {
  const s = parse(stored);
  if (!s) return Promise.resolve(false);
  return new Promise((resolve, reject) => {
    scrypt(secret, s.salt, s.hash.length, { N: s.n, r: s.r, p: s.p, maxmem: maxmem(s.n, s.r, s.p) }, (err, got) => {
      if (err) reject(err);
      else resolve(timingSafeEqual(got, s.hash));
    });
  });
}

export type GatewayCredentialStatus = 'pending' | 'active' | 'revoked';

/** What the broker needs to know about a username. */
export type CredentialRecord = (
  | { kind: 'settlement' }
  | { kind: 'gateway'; gatewayId: string; status: GatewayCredentialStatus }
) & { secretHash: string };

/** Where the broker looks up MQTT usernames (backed by the ledger in production). */
export interface CredentialStore {
  lookup(username: string): Promise<CredentialRecord | undefined>;
}

/** An in-memory credential store, for tests and single-process demos. */
export class MemoryCredentialStore implements CredentialStore {
  private readonly records = new Map<string, CredentialRecord>();

  /** Sets the settlement's own secret (username `gtx-settlement`). */
  putSettlement(secret: string): void {
    this.records.set(SETTLEMENT_USERNAME, { kind: 'settlement', secretHash: hashSecret(secret) });
  }

  /** Adds or replaces a gateway (username = gateway id) with the secret issued to it. */
  putGateway(gatewayId: string, secret: string, status: GatewayCredentialStatus = 'active'): void {
    if (!isValidId(gatewayId)) throw new Error(`"${gatewayId}" cannot be a gateway's MQTT username: use a valid gateway id`);
    if (isReservedId(gatewayId)) {
      throw new Error(`"${gatewayId}" cannot be a gateway's MQTT username: ids starting with ${RESERVED_ID_PREFIX} are reserved for the settlement`);
    }
    this.records.set(gatewayId, { kind: 'gateway', gatewayId, status, secretHash: hashSecret(secret) });
  }

  setGatewayStatus(gatewayId: string, status: GatewayCredentialStatus): void {
    const rec = this.records.get(gatewayId);
    if (rec?.kind !== 'gateway') throw new Error(`no gateway "${gatewayId}" in the credential store`);
    this.records.set(gatewayId, { ...rec, status });
  }

  delete(username: string): void {
    this.records.delete(username);
  }

  async lookup(username: string): Promise<CredentialRecord | undefined> {
    return this.records.get(username);
  }
}
