import type { LedgerDb } from './database.ts';

/**
 * Enrollment codes as listed to admins and installers, written once for both engines. The code
 * itself is never stored (only its SHA-256) and never shown again: a code is named by the first
 * CODE_ID_LENGTH hex digits of that hash.
 */
export interface EnrollmentCodeListing {
  id: string;
  owner: string;
  market: string;
  createdAtMs: number;
  expiresAtMs: number;
  usedAtMs: number | null;
  /** The gateway that enrolled with it. */
  usedBy: string | null;
  /** The API key id that issued it; null for codes from the CLI or earlier releases. */
  issuedBy: string | null;
}

export const CODE_ID_LENGTH = 16;
export const codeIdOf = (codeHash: string): string => codeHash.slice(0, CODE_ID_LENGTH);

export class EnrollmentCodeStore {
  constructor(private readonly db: LedgerDb) {}

  /** Records which key issued the code with this hash. */
  async recordIssuer(codeHash: string, keyId: string): Promise<void> {
    await this.db.insertInto('enrollment_code_issuers').values({ code_hash: codeHash, issued_by: keyId }).execute();
  }

  /** Newest first, at most `limit`; `issuedBy` set: only the codes that key issued. */
  async list(opts: { issuedBy?: string; limit: number }): Promise<EnrollmentCodeListing[]> {
    let q = this.db
      .selectFrom('enrollment_codes as c')
      .leftJoin('enrollment_code_issuers as i', 'i.code_hash', 'c.code_hash')
      .select(['c.code_hash', 'c.owner', 'c.market', 'c.created_at_ms', 'c.expires_at_ms', 'c.used_at_ms', 'c.used_by', 'i.issued_by'])
      .orderBy('c.created_at_ms', 'desc')
      .orderBy('c.code_hash')
      .limit(opts.limit);
    if (opts.issuedBy !== undefined) q = q.where('i.issued_by', '=', opts.issuedBy);
    return (await q.execute()).map((r) => ({
      id: codeIdOf(r.code_hash),
      owner: r.owner,
      market: r.market,
      createdAtMs: Number(r.created_at_ms),
      expiresAtMs: Number(r.expires_at_ms),
      usedAtMs: r.used_at_ms === null ? null : Number(r.used_at_ms),
      usedBy: r.used_by,
      issuedBy: r.issued_by,
    }));
  }
}
