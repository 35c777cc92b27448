import type { Asset, Minor } from './types.ts';

/**
 * The double-entry money ledger's rules, free of storage. Every movement of money is a
 * Transfer: a set of postings (signed amounts on accounts) that sums to zero in each currency,
 * with its reason and a reference to what caused it. An account's balance is the sum of its
 * postings, so the sum of all balances of a currency is always zero: money is neither created
 * nor lost inside the platform. Money enters through the issuance account (an admin deposit
 * posts −amount there and +amount to the owner), so issuance is the negative of what owners hold.
 */

/**
 * `treasury`, `incentives` and `staking` hold NRG: the whole supply minted to the treasury at
 * genesis, the pool rewards are paid from, and tokens locked in stakes.
 */
export type AccountKind = 'owner' | 'escrow' | 'fees' | 'imbalance' | 'issuance' | 'conversion' | 'treasury' | 'incentives' | 'staking';
export type SystemKind = Exclude<AccountKind, 'owner'>;
export const SYSTEM_KINDS: readonly SystemKind[] = ['escrow', 'fees', 'imbalance', 'issuance', 'conversion', 'treasury', 'incentives', 'staking'];

declare const accountBrand: unique symbol;
export type MoneyAccountId = string & { readonly [accountBrand]: true };

/** A prosumer's (or any registry account's) balance in one currency: `acct-1/THB`. */
export function ownerAccount(owner: string, currency: Asset): MoneyAccountId {
  // Registry ids never hold these (registry/enrollment.ts ACCOUNT_ID); a system id must not pass as an owner's.
  if (owner === '' || owner.includes(':') || owner.includes('/')) throw new RangeError(`"${owner}" is not an account id`);
  return `${owner}/${currency}` as MoneyAccountId;
}
/** A system account: `system:escrow/THB`. Registry ids cannot contain ':', so these never collide. */
export const systemAccount = (kind: SystemKind, currency: Asset) => `system:${kind}/${currency}` as MoneyAccountId;

/**
 * Which accounts may hold a negative balance: issuance (money put into the platform from
 * outside), imbalance (the platform's balancing book against the grid) and conversion (each
 * currency's side of conversions between currencies). Owners, escrow and fees never go below zero.
 */
export const MAY_GO_NEGATIVE: Readonly<Record<AccountKind, boolean>> = {
  owner: false,
  escrow: false,
  fees: false,
  imbalance: true,
  issuance: true,
  conversion: true,
  treasury: false,
  incentives: false,
  staking: false,
};

export type TransferReason =
  | 'deposit'
  | 'withdrawal'
  | 'escrow_hold'
  | 'escrow_release'
  | 'trade_payment'
  | 'delivery_payment'
  | 'delivery_refund'
  | 'imbalance'
  | 'conversion'
  | 'conversion_fee'
  | 'genesis'
  | 'grant'
  | 'stake'
  | 'unstake'
  | 'rec_payment'
  | 'reward';

export type RefKind = 'order' | 'trade' | 'auction' | 'delivery' | 'conversion' | 'admin' | 'genesis' | 'stake' | 'rec' | 'reward';

export interface Posting {
  account: MoneyAccountId;
  currency: Asset;
  /** + into the account, − out of it. */
  amount: Minor;
}

export interface Transfer {
  reason: TransferReason;
  ref: { kind: RefKind; id: string };
  memo: string;
  postings: Posting[];
}

export class UnbalancedTransfer extends Error {
  override readonly name = 'UnbalancedTransfer';
}

/** Money would leave an account that may not go negative beyond what it holds. */
export class InsufficientFunds extends Error {
  override readonly name = 'InsufficientFunds';
  constructor(
    readonly account: MoneyAccountId,
    readonly balance: Minor,
    readonly needed: Minor,
  ) {
    super(`account ${account} holds ${balance} minor units, ${needed} needed`);
  }
}

/** Checks a transfer before it is stored: postings non-zero, one per account, zero sum per currency. */
export function assertBalanced(t: Transfer): void {
  if (t.postings.length < 2) throw new UnbalancedTransfer(`${t.reason}: a transfer needs at least two postings`);
  const sums = new Map<Asset, Minor>();
  const seen = new Set<string>();
  for (const p of t.postings) {
    if (p.amount === 0n) throw new UnbalancedTransfer(`${t.reason}: zero posting on ${p.account}`);
    if (seen.has(p.account)) throw new UnbalancedTransfer(`${t.reason}: two postings on ${p.account}`);
    if (!p.account.endsWith(`/${p.currency}`)) throw new UnbalancedTransfer(`${t.reason}: ${p.account} does not hold ${p.currency}`);
    seen.add(p.account);
    sums.set(p.currency, (sums.get(p.currency) ?? 0n) + p.amount);
  }
  for (const [currency, sum] of sums) {
    if (sum !== 0n) throw new UnbalancedTransfer(`${t.reason}: postings in ${currency} sum to ${sum}, not 0`);
  }
}

/** A transfer of `amount` from one account to another in one currency (amount > 0). */
export function move(
  reason: TransferReason,
  ref: Transfer['ref'],
  from: MoneyAccountId,
  to: MoneyAccountId,
  currency: Asset,
  amount: Minor,
  memo = '',
): Transfer {
  if (amount <= 0n) throw new UnbalancedTransfer(`${reason}: amount must be positive, got ${amount}`);
  return { reason, ref, memo, postings: [{ account: from, currency, amount: -amount }, { account: to, currency, amount }] };
}

/** The kind of an account from its id. */
export function kindOf(account: MoneyAccountId | string): AccountKind {
  const m = /^system:([a-z]+)\//.exec(account);
  return m ? (m[1] as SystemKind) : 'owner';
}
