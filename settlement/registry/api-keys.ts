import { createHash, randomBytes } from 'node:crypto';
import type { LedgerDb } from '../store/database.ts';

/**
 * Who may call the REST API. The one list of roles: adding one (installer, prosumer …) is an
 * edit here, after which the CLI accepts it and routes can name it in their `roles`.
 * - admin: issues installer codes, revokes gateways; reads everything utilities read.
 * - utility: reads every meter's readings and intervals and every market's.
 * - prosumer: bound to one registry account; places, lists and cancels its own orders and sees
 *   its own balances and trades, nothing of anyone else's.
 */
export const API_ROLES = ['admin', 'utility', 'prosumer'] as const;
export type ApiRole = (typeof API_ROLES)[number];

export function isApiRole(s: string): s is ApiRole {
  return (API_ROLES as readonly string[]).includes(s);
}

/** An API key as listed: never the key itself, which is shown once at creation. */
export interface ApiKeyRecord {
  /** Public handle: shown in listings and logs, used to revoke. */
  id: string;
  /** A role this release may not know (a newer release wrote it): such a key grants nothing. */
  role: string;
  label: string;
  createdAtMs: number;
  revokedAtMs: number | null;
  /** The account a prosumer key acts for; null for other roles. */
  account: string | null;
}

/** Who presented a valid key: a prosumer always with its account. */
export type ApiPrincipal = { keyId: string; role: 'admin' | 'utility' } | { keyId: string; role: 'prosumer'; account: string };

/** 256 random bits, base64url: `gtx_` + 43 characters. The prefix makes a leaked key easy to spot. */
export function newApiKey(): string {
  return `gtx_${randomBytes(32).toString('base64url')}`;
}

/** What the ledger keeps of a key. A plain SHA-256 suffices: the key is random, not a password. */
export function hashApiKey(key: string): string {
  return createHash('sha256').update(key, 'utf8').digest('hex');
}

// 32 symbols, so each random byte maps to one without bias; no 0/o/1/l to misread.
const ID_ALPHABET = 'abcdefghijkmnpqrstuvwxyz23456789';

function newKeyId(): string {
  return [...randomBytes(10)].map((b) => ID_ALPHABET[b % 32]).join('');
}

/** API keys in the ledger (`api_keys`, migration 004), written once for both engines. */
export class ApiKeyStore {
  constructor(
    private readonly db: LedgerDb,
    private readonly now: () => number = Date.now,
  ) {}

  /** A new key: the returned `key` is the only time it exists outside the caller. */
  async create(role: ApiRole, label = '', account: string | null = null): Promise<{ key: string; record: ApiKeyRecord }> {
    if ((role === 'prosumer') !== (account !== null)) {
      throw new RangeError(role === 'prosumer' ? 'a prosumer key needs the account it acts for (--account)' : `a ${role} key is not bound to an account`);
    }
    const key = newApiKey();
    const record: ApiKeyRecord = { id: newKeyId(), role, label, createdAtMs: this.now(), revokedAtMs: null, account };
    await this.db
      .insertInto('api_keys')
      .values({ id: record.id, key_hash: hashApiKey(key), role, label, created_at_ms: record.createdAtMs, revoked_at_ms: null, account })
      .execute();
    return { key, record };
  }

  async list(): Promise<ApiKeyRecord[]> {
    const rows = await this.db.selectFrom('api_keys').selectAll().orderBy('created_at_ms').orderBy('id').execute();
    return rows.map((r) => ({
      id: r.id,
      role: r.role,
      label: r.label,
      createdAtMs: Number(r.created_at_ms),
      revokedAtMs: r.revoked_at_ms === null ? null : Number(r.revoked_at_ms),
      account: r.account,
    }));
  }

  /** Revokes at once (the API looks keys up on every request); a second revoke keeps the first time. */
  async revoke(id: string): Promise<'revoked' | 'already_revoked' | 'unknown'> {
    const res = await this.db
      .updateTable('api_keys')
      .set({ revoked_at_ms: this.now() })
      .where('id', '=', id)
      .where('revoked_at_ms', 'is', null)
      .executeTakeFirst();
    if (Number(res.numUpdatedRows) > 0) return 'revoked';
    const row = await this.db.selectFrom('api_keys').select('id').where('id', '=', id).executeTakeFirst();
    return row ? 'already_revoked' : 'unknown';
  }

  /** The holder of `key` if it is stored, not revoked and of a known role; found by its hash. */
  async authenticate(key: string): Promise<ApiPrincipal | undefined> {
    const row = await this.db
      .selectFrom('api_keys')
      .select(['id', 'role', 'revoked_at_ms', 'account'])
      .where('key_hash', '=', hashApiKey(key))
      .executeTakeFirst();
    if (!row || row.revoked_at_ms !== null || !isApiRole(row.role)) return undefined;
    if (row.role === 'prosumer') return row.account === null ? undefined : { keyId: row.id, role: 'prosumer', account: row.account };
    return { keyId: row.id, role: row.role };
  }
}
