import { createHash, randomBytes } from 'node:crypto';
import type { Selectable } from 'kysely';
import type { ApiKeysTable, LedgerDb } from '../store/database.ts';
import { ACCOUNT_ID } from './enrollment.ts';

/**
 * Who may call the REST API. The one list of roles: adding one is an edit here, after which the
 * CLI accepts it and routes can name it in their `roles`.
 * - admin: issues installer codes and API keys, revokes gateways; reads everything utilities read.
 * - utility: reads every meter's readings, rejections and intervals and every market's; audits.
 * - installer: bound to a list of customer accounts; issues enrollment codes for them and sees
 *   their gateways, meters, readings and rejections, nothing of anyone else's.
 * - prosumer: bound to one registry account; places, lists and cancels its own orders and sees
 *   its own meters, balances and trades, nothing of anyone else's.
 */
export const API_ROLES = ['admin', 'utility', 'installer', 'prosumer'] as const;
export type ApiRole = (typeof API_ROLES)[number];

export function isApiRole(s: string): s is ApiRole {
  return (API_ROLES as readonly string[]).includes(s);
}

/** Most customer accounts one installer key serves: they end up in one `IN (…)` list per query. */
export const MAX_INSTALLER_CUSTOMERS = 500;

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
  /** The customer accounts an installer key serves, sorted; absent for other roles. */
  customers?: string[];
}

/** Who presented a valid key: a prosumer always with its account, an installer with its customers. */
export type ApiPrincipal =
  | { keyId: string; role: 'admin' | 'utility' }
  | { keyId: string; role: 'installer'; customers: readonly string[] }
  | { keyId: string; role: 'prosumer'; account: string };

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

function recordOf(r: Selectable<ApiKeysTable>, customers: string[]): ApiKeyRecord {
  const rec: ApiKeyRecord = {
    id: r.id,
    role: r.role,
    label: r.label,
    createdAtMs: Number(r.created_at_ms),
    revokedAtMs: r.revoked_at_ms === null ? null : Number(r.revoked_at_ms),
    account: r.account,
  };
  if (r.role === 'installer') rec.customers = customers;
  return rec;
}

/** API keys in the ledger (`api_keys`, migration 004; installers' customers in `api_key_customers`, 010), written once for both engines. */
export class ApiKeyStore {
  constructor(
    private readonly db: LedgerDb,
    private readonly now: () => number = Date.now,
  ) {}

  /**
   * A new key: the returned `key` is the only time it exists outside the caller. A prosumer key
   * needs the account it acts for, an installer key its customer accounts (1 to
   * MAX_INSTALLER_CUSTOMERS account ids); other roles take neither (RangeError).
   */
  async create(role: ApiRole, label = '', account: string | null = null, customers: readonly string[] = []): Promise<{ key: string; record: ApiKeyRecord }> {
    if ((role === 'prosumer') !== (account !== null)) {
      throw new RangeError(role === 'prosumer' ? 'a prosumer key needs the account it acts for (--account)' : `a ${role} key is not bound to an account`);
    }
    const bound = [...new Set(customers)].sort();
    if (role === 'installer') {
      if (bound.length === 0) throw new RangeError('an installer key needs the customer accounts it serves (--customers acct-a,acct-b)');
      if (bound.length > MAX_INSTALLER_CUSTOMERS) throw new RangeError(`an installer key serves at most ${MAX_INSTALLER_CUSTOMERS} customer accounts, got ${bound.length}`);
      const bad = bound.find((c) => !ACCOUNT_ID.test(c));
      if (bad !== undefined) throw new RangeError(`customer account ${JSON.stringify(bad)} must be 1-64 of A-Z a-z 0-9 . _ - starting with a letter or digit`);
    } else if (bound.length > 0) {
      throw new RangeError(`a ${role} key is not bound to customers; only installer keys are`);
    }
    const key = newApiKey();
    const record: ApiKeyRecord = { id: newKeyId(), role, label, createdAtMs: this.now(), revokedAtMs: null, account };
    if (role === 'installer') record.customers = bound;
    // One transaction: an installer key never exists without its customers.
    await this.db.transaction().execute(async (trx) => {
      await trx
        .insertInto('api_keys')
        .values({ id: record.id, key_hash: hashApiKey(key), role, label, created_at_ms: record.createdAtMs, revoked_at_ms: null, account })
        .execute();
      if (bound.length > 0) await trx.insertInto('api_key_customers').values(bound.map((c) => ({ key_id: record.id, account: c }))).execute();
    });
    return { key, record };
  }

  async list(): Promise<ApiKeyRecord[]> {
    const rows = await this.db.selectFrom('api_keys').selectAll().orderBy('created_at_ms').orderBy('id').execute();
    const customers = new Map<string, string[]>();
    for (const c of await this.db.selectFrom('api_key_customers').selectAll().orderBy('key_id').orderBy('account').execute()) {
      const list = customers.get(c.key_id) ?? [];
      list.push(c.account);
      customers.set(c.key_id, list);
    }
    return rows.map((r) => recordOf(r, customers.get(r.id) ?? []));
  }

  /** One key's record, or undefined. */
  async find(id: string): Promise<ApiKeyRecord | undefined> {
    const r = await this.db.selectFrom('api_keys').selectAll().where('id', '=', id).executeTakeFirst();
    return r && recordOf(r, r.role === 'installer' ? await this.customersOf(r.id) : []);
  }

  private async customersOf(id: string): Promise<string[]> {
    return (await this.db.selectFrom('api_key_customers').select('account').where('key_id', '=', id).orderBy('account').execute()).map((c) => c.account);
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
    switch (row.role) {
      case 'prosumer':
        return row.account === null ? undefined : { keyId: row.id, role: 'prosumer', account: row.account };
      case 'installer': {
        // An installer key with no customers (written behind the store's back) grants nothing.
        const customers = await this.customersOf(row.id);
        return customers.length === 0 ? undefined : { keyId: row.id, role: 'installer', customers };
      }
      default:
        return { keyId: row.id, role: row.role };
    }
  }
}
