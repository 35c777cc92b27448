import { NRG, type Asset } from '../market/types.ts';
import { MINOR_DIGITS } from '../market/money.ts';
import type { LedgerDb } from './database.ts';

/**
 * Registry accounts with what they hold per asset, written once for both engines: `available`
 * is the owner's money account (what it can spend), `held` what is set aside for it — the escrow
 * of its open buy orders and its NRG staked for voting. Both are bigint minor units.
 */
export interface AccountBalance {
  currency: Asset;
  available: bigint;
  held: bigint;
}

export interface AccountOverview {
  account: string;
  name: string;
  balances: AccountBalance[];
}

const isAsset = (c: string): c is Asset => Object.hasOwn(MINOR_DIGITS, c);

export class AccountStore {
  constructor(private readonly db: LedgerDb) {}

  /** Accounts in id order after `after`, at most `limit`; `accounts` null: every account. */
  async list(opts: { accounts: readonly string[] | null; after?: string; limit: number }): Promise<AccountOverview[]> {
    if (opts.accounts?.length === 0) return [];
    let q = this.db.selectFrom('accounts').select(['id', 'name']).orderBy('id').limit(opts.limit);
    if (opts.accounts) q = q.where('id', 'in', [...opts.accounts]);
    if (opts.after !== undefined) q = q.where('id', '>', opts.after);
    const accounts = await q.execute();
    if (accounts.length === 0) return [];
    const ids = accounts.map((a) => a.id);
    const totals = new Map<string, Map<Asset, { available: bigint; held: bigint }>>(ids.map((id) => [id, new Map()]));
    const add = (owner: string, currency: string, part: 'available' | 'held', amount: bigint): void => {
      if (!isAsset(currency)) return; // an asset a newer release knows: not shown rather than misformatted
      const perAsset = totals.get(owner);
      if (!perAsset) return;
      const t = perAsset.get(currency) ?? { available: 0n, held: 0n };
      t[part] += amount;
      perAsset.set(currency, t);
    };
    const money = await this.db.selectFrom('money_accounts').select(['owner', 'currency', 'balance']).where('owner', 'in', ids).execute();
    for (const m of money) if (m.owner !== null) add(m.owner, m.currency, 'available', BigInt(m.balance));
    // Escrow is held only while an order is open (a cancel or its auction releases it); at most 100 open orders per account and market.
    const orders = await this.db.selectFrom('orders').select(['account', 'currency', 'escrow']).where('account', 'in', ids).where('status', '=', 'open').execute();
    for (const o of orders) add(o.account, o.currency, 'held', BigInt(o.escrow));
    const stakes = await this.db.selectFrom('stakes').select(['staker', 'amount']).where('staker', 'in', ids).where('unstaked_at_ms', 'is', null).execute();
    for (const s of stakes) add(s.staker, NRG, 'held', BigInt(s.amount));
    return accounts.map((a) => ({
      account: a.id,
      name: a.name,
      balances: [...totals.get(a.id)!.entries()]
        .sort(([x], [y]) => (x < y ? -1 : x > y ? 1 : 0))
        .map(([currency, t]) => ({ currency, available: t.available, held: t.held })),
    }));
  }
}
