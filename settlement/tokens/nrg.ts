import { move, ownerAccount, systemAccount, InsufficientFunds } from '../market/accounts.ts';
import { DomainError } from '../domain-error.ts';
import { NRG, type Minor } from '../market/types.ts';
import type { MoneyStore } from '../store/money-store.ts';

/**
 * The NRG token on the money journal (asset NRG, 18 decimals, bigint base units). The whole
 * supply is minted once, at genesis, from the issuance account to the treasury, and the
 * incentive pool is funded from the treasury in the same transaction; afterwards tokens only
 * move between accounts by balanced postings, so every account but issuance together always
 * holds exactly the total supply, and none goes negative.
 */
export interface TokenSupply {
  /** [governance] nrg_total_supply, base units. */
  totalSupply: Minor;
  /** Funded from the treasury at genesis for conservation rewards, base units. */
  incentivePool: Minor;
}

export const NRG_UNIT = 10n ** 18n;

export class NrgToken {
  constructor(
    private readonly money: MoneyStore,
    private readonly supply: TokenSupply,
    private readonly now: () => number,
    /** Whether a registry account exists (grants go to known accounts only). */
    private readonly accountExists: (id: string) => Promise<boolean> = async () => true,
  ) {}

  /**
   * Mints the supply and funds the pool, once. The issuance account is locked (PostgreSQL:
   * FOR UPDATE) before it is read, so two workers starting at once mint once. Returns whether
   * this call minted.
   */
  async genesis(): Promise<boolean> {
    const issuance = systemAccount('issuance', NRG);
    const treasury = systemAccount('treasury', NRG);
    const pool = systemAccount('incentives', NRG);
    return this.money.transaction(async (trx) => {
      if ((await this.money.lockedBalance(trx, issuance)) !== 0n) return false;
      const transfers = [move('genesis', { kind: 'genesis', id: NRG }, issuance, treasury, NRG, this.supply.totalSupply, 'NRG total supply')];
      if (this.supply.incentivePool > 0n) transfers.push(move('grant', { kind: 'genesis', id: NRG }, treasury, pool, NRG, this.supply.incentivePool, 'incentive pool'));
      await this.money.apply(trx, transfers, this.now());
      return true;
    });
  }

  balance(owner: string): Promise<Minor> {
    return this.money.balance(ownerAccount(owner, NRG));
  }

  /** Tokens from the treasury to an account (admin). */
  async grant(owner: string, amount: Minor, memo = ''): Promise<Minor> {
    if (amount <= 0n || amount > this.supply.totalSupply) throw new DomainError('bad_amount', 'the amount must be positive and at most the total supply', 400);
    if (!(await this.accountExists(owner))) throw new DomainError('unknown_account', `account ${owner} does not exist`, 404);
    try {
      await this.money.transaction((trx) => this.money.apply(trx, [move('grant', { kind: 'admin', id: owner }, systemAccount('treasury', NRG), ownerAccount(owner, NRG), NRG, amount, memo)], this.now()));
    } catch (e) {
      if (e instanceof InsufficientFunds) throw new DomainError('insufficient_tokens', `the treasury holds ${e.balance} base units, ${amount} asked`, 422);
      throw e;
    }
    return this.balance(owner);
  }

  /** Problems with the supply: every NRG account but issuance must sum to the total supply. */
  async checkSupply(): Promise<string[]> {
    const rows = (await this.money.balances()).filter((b) => b.currency === NRG);
    const issued = -(rows.find((b) => b.account === systemAccount('issuance', NRG))?.balance ?? 0n);
    const held = rows.filter((b) => b.account !== systemAccount('issuance', NRG)).reduce((a, b) => a + b.balance, 0n);
    const problems: string[] = [];
    if (issued !== this.supply.totalSupply) problems.push(`NRG issued ${issued}, total supply is ${this.supply.totalSupply}`);
    if (held !== issued) problems.push(`NRG held ${held}, issued ${issued}`);
    return problems;
  }
}
