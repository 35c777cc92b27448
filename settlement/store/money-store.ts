import { sql, type Transaction } from 'kysely';
import {
  InsufficientFunds,
  MAY_GO_NEGATIVE,
  assertBalanced,
  kindOf,
  type MoneyAccountId,
  type Transfer,
} from '../market/accounts.ts';
import { CURRENCIES, type Asset, type Minor } from '../market/types.ts';
import type { LedgerDb, LedgerSchema } from './database.ts';

/**
 * The money ledger's storage (migration 006), written once for both engines with Kysely.
 * `apply` stores transfers inside a caller's transaction, so that a market operation (an order
 * and its escrow, an auction and its payments) commits or rolls back as a whole.
 *
 * Concurrency: the first statement of `apply` writes (it creates missing accounts), which on
 * SQLite takes the write lock at once (waiting busy_timeout) rather than failing on an upgrade;
 * on PostgreSQL the accounts a transfer touches are then locked FOR UPDATE in id order, so two
 * workers moving money on the same accounts queue rather than deadlock, and a balance checked
 * is the balance written.
 */
export type Trx = Transaction<LedgerSchema>;

export interface BalanceRow {
  account: MoneyAccountId;
  owner: string | null;
  kind: string;
  currency: Asset;
  balance: Minor;
}

export interface PostingRow {
  transferId: number;
  reason: string;
  ref: { kind: string; id: string };
  memo: string;
  atMs: number;
  account: MoneyAccountId;
  currency: Asset;
  amount: Minor;
}

const ownerOf = (account: string): string | null => (kindOf(account) === 'owner' ? account.slice(0, account.lastIndexOf('/')) : null);
const currencyOf = (account: string): Asset => account.slice(account.lastIndexOf('/') + 1) as Asset;

export class MoneyStore {
  constructor(
    private readonly db: LedgerDb,
    private readonly engine: 'sqlite' | 'postgres',
  ) {}

  /**
   * Runs `fn` in one transaction. SQLite: `fn` must await nothing but its own queries, and the
   * transaction takes the write lock first (a write that changes no row), as BEGIN IMMEDIATE
   * would: the ledger's commit thread writes from another connection, and a transaction that
   * read first could not become a writer after that thread committed (SQLITE_BUSY_SNAPSHOT,
   * which no busy timeout waits out).
   */
  transaction<T>(fn: (trx: Trx) => Promise<T>): Promise<T> {
    return this.db.transaction().execute(async (trx) => {
      if (this.engine === 'sqlite') await sql`UPDATE money_accounts SET balance = balance WHERE id = ''`.execute(trx);
      return fn(trx);
    });
  }

  /**
   * Stores balanced transfers and moves the balances, refusing the lot (InsufficientFunds,
   * UnbalancedTransfer) when any would take an account that may not go negative below zero.
   * Returns the transfer ids.
   */
  async apply(trx: Trx, transfers: readonly Transfer[], atMs: number): Promise<number[]> {
    for (const t of transfers) assertBalanced(t);
    const accounts = [...new Set(transfers.flatMap((t) => t.postings.map((p) => p.account as string)))].sort();
    if (accounts.length === 0) return [];
    await trx
      .insertInto('money_accounts')
      .values(accounts.map((id) => ({ id, owner: ownerOf(id), kind: kindOf(id), currency: currencyOf(id), balance: '0', created_at_ms: atMs })))
      .onConflict((oc) => oc.column('id').doNothing())
      .execute();
    let q = trx.selectFrom('money_accounts').select(['id', 'balance']).where('id', 'in', accounts).orderBy('id');
    if (this.engine === 'postgres') q = q.forUpdate();
    const balances = new Map((await q.execute()).map((r) => [r.id, BigInt(r.balance)]));
    const ids: number[] = [];
    for (const t of transfers) {
      for (const p of t.postings) {
        const next = balances.get(p.account)! + p.amount;
        if (next < 0n && !MAY_GO_NEGATIVE[kindOf(p.account)]) throw new InsufficientFunds(p.account, balances.get(p.account)!, -p.amount);
        balances.set(p.account, next);
      }
      const row = await trx
        .insertInto('money_transfers')
        .values({ reason: t.reason, ref_kind: t.ref.kind, ref_id: t.ref.id, memo: t.memo, at_ms: atMs })
        .returning('id')
        .executeTakeFirstOrThrow();
      const id = Number(row.id);
      ids.push(id);
      await trx
        .insertInto('money_postings')
        .values(t.postings.map((p) => ({ transfer_id: id, account: p.account, currency: p.currency, amount: p.amount.toString() })))
        .execute();
    }
    for (const id of accounts) {
      await trx.updateTable('money_accounts').set({ balance: balances.get(id)!.toString() }).where('id', '=', id).execute();
    }
    return ids;
  }

  /** Balances of one registry account (every currency it has touched), or of every account. */
  async balances(owner?: string): Promise<BalanceRow[]> {
    let q = this.db.selectFrom('money_accounts').selectAll().orderBy('id');
    if (owner !== undefined) q = q.where('owner', '=', owner);
    return (await q.execute()).map((r) => ({
      account: r.id as MoneyAccountId,
      owner: r.owner,
      kind: r.kind,
      currency: r.currency as Asset,
      balance: BigInt(r.balance),
    }));
  }

  /** An account's balance inside a transaction, locked (PostgreSQL: FOR UPDATE) until it ends; 0 if it does not exist. */
  async lockedBalance(trx: Trx, account: MoneyAccountId): Promise<Minor> {
    await trx
      .insertInto('money_accounts')
      .values({ id: account, owner: ownerOf(account), kind: kindOf(account), currency: currencyOf(account), balance: '0', created_at_ms: 0 })
      .onConflict((oc) => oc.column('id').doNothing())
      .execute();
    let q = trx.selectFrom('money_accounts').select('balance').where('id', '=', account);
    if (this.engine === 'postgres') q = q.forUpdate();
    return BigInt((await q.executeTakeFirstOrThrow()).balance);
  }

  async balance(account: MoneyAccountId): Promise<Minor> {
    const r = await this.db.selectFrom('money_accounts').select('balance').where('id', '=', account).executeTakeFirst();
    return r ? BigInt(r.balance) : 0n;
  }

  /** Postings on the given accounts, newest first; or those of transfers referring to `ref`. */
  async postings(filter: { accounts?: readonly string[]; ref?: { kind: string; id: string }; limit?: number }): Promise<PostingRow[]> {
    let q = this.db
      .selectFrom('money_postings as p')
      .innerJoin('money_transfers as t', 't.id', 'p.transfer_id')
      .select(['p.transfer_id', 't.reason', 't.ref_kind', 't.ref_id', 't.memo', 't.at_ms', 'p.account', 'p.currency', 'p.amount'])
      .orderBy('p.transfer_id', 'desc')
      .orderBy('p.account');
    if (filter.accounts) q = q.where('p.account', 'in', filter.accounts.length ? [...filter.accounts] : ['']);
    if (filter.ref) q = q.where('t.ref_kind', '=', filter.ref.kind).where('t.ref_id', '=', filter.ref.id);
    if (filter.limit !== undefined) q = q.limit(filter.limit);
    return (await q.execute()).map((r) => ({
      transferId: Number(r.transfer_id),
      reason: r.reason,
      ref: { kind: r.ref_kind, id: r.ref_id },
      memo: r.memo,
      atMs: Number(r.at_ms),
      account: r.account as MoneyAccountId,
      currency: r.currency as Asset,
      amount: BigInt(r.amount),
    }));
  }

  /**
   * The books' invariants, checked from the stored rows: per currency the postings sum to zero,
   * every account's balance equals the sum of its postings, and no account that may not go
   * negative is. Returns the problems found (none on a sound ledger). `gtx market check` and the
   * property tests run it.
   */
  async check(): Promise<string[]> {
    const problems: string[] = [];
    const sums = new Map<string, bigint>(CURRENCIES.map((c) => [c, 0n]));
    const perAccount = new Map<string, bigint>();
    // Streamed in pages: the journal grows without bound.
    const PAGE = 10_000;
    for (let after = -1; ; ) {
      const rows = await this.db
        .selectFrom('money_postings')
        .select(['transfer_id', 'account', 'currency', 'amount'])
        .where('transfer_id', '>', after)
        .orderBy('transfer_id')
        .orderBy('account')
        .limit(PAGE)
        .execute();
      for (const r of rows) {
        const a = BigInt(r.amount);
        sums.set(r.currency, (sums.get(r.currency) ?? 0n) + a);
        perAccount.set(r.account, (perAccount.get(r.account) ?? 0n) + a);
      }
      if (rows.length < PAGE) break;
      // A page may end inside a transfer: restart from its first posting's transfer.
      const last = Number(rows.at(-1)!.transfer_id);
      const cut = rows.filter((r) => Number(r.transfer_id) === last);
      for (const r of cut) {
        const a = BigInt(r.amount);
        sums.set(r.currency, sums.get(r.currency)! - a);
        perAccount.set(r.account, perAccount.get(r.account)! - a);
      }
      after = last - 1;
      if (cut.length === rows.length) throw new Error(`transfer ${last} has more than ${PAGE} postings`);
    }
    for (const [currency, sum] of sums) if (sum !== 0n) problems.push(`postings in ${currency} sum to ${sum}, not 0`);
    for (const b of await this.balances()) {
      const posted = perAccount.get(b.account) ?? 0n;
      if (posted !== b.balance) problems.push(`${b.account}: balance ${b.balance} but postings sum to ${posted}`);
      if (b.balance < 0n && !MAY_GO_NEGATIVE[kindOf(b.account)]) problems.push(`${b.account}: negative balance ${b.balance}`);
    }
    return problems;
  }
}
