import { randomBytes } from 'node:crypto';
import type { Logger } from 'pino';
import { InsufficientFunds, move, ownerAccount, systemAccount } from '../market/accounts.ts';
import { DomainError } from '../domain-error.ts';
import { formatAmount } from '../market/money.ts';
import { NRG } from '../market/types.ts';
import type { MoneyStore } from '../store/money-store.ts';
import { StakeStore, type StakeRecord } from '../store/stake-store.ts';
import type { LedgerDb } from '../store/database.ts';
import { multiplierText, votingPower } from './staking.ts';

/**
 * Staking NRG for voting power ([governance] stake_min_amount). A stake moves the tokens from
 * the staker's account to the staking account in the same transaction as the stake row; an
 * unstake moves them back once the lock has ended. Voting power is the sum over active stakes.
 */
export interface GovernanceRules {
  /** [governance] stake_min_amount, NRG base units. */
  stakeMin: bigint;
  /** [governance] vote_threshold: voting power needed to propose, NRG base units. */
  voteThreshold: bigint;
  /** How long voting lasts and how long a passed proposal waits; 7 and 2 days unless a demo shortens them. */
  votingMs?: number;
  executionDelayMs?: number;
}

const DAY_MS = 86_400_000;

export class Staking {
  readonly stakes: StakeStore;

  constructor(
    db: LedgerDb,
    private readonly money: MoneyStore,
    private readonly rules: GovernanceRules,
    private readonly now: () => number,
    private readonly log?: Logger,
  ) {
    this.stakes = new StakeStore(db);
  }

  async stake(staker: string, amount: bigint, lockDays: number): Promise<StakeRecord> {
    if (amount < this.rules.stakeMin) {
      throw new DomainError('below_stake_min', `a stake must be at least ${formatAmount(this.rules.stakeMin, NRG)} NRG ([governance] stake_min_amount)`, 422);
    }
    let power: bigint;
    try {
      power = votingPower(amount, lockDays);
    } catch (e) {
      throw new DomainError('bad_lock', (e as Error).message, 400);
    }
    const at = this.now();
    const rec: StakeRecord = {
      id: `stk_${randomBytes(9).toString('base64url')}`,
      staker,
      amount,
      lockDays,
      votingPower: power,
      stakedAtMs: at,
      unlocksAtMs: at + lockDays * DAY_MS,
      unstakedAtMs: null,
    };
    try {
      await this.money.transaction(async (trx) => {
        await this.money.apply(trx, [move('stake', { kind: 'stake', id: rec.id }, ownerAccount(staker, NRG), systemAccount('staking', NRG), NRG, amount, `${lockDays} days`)], at);
        await this.stakes.insert(trx, rec);
      });
    } catch (e) {
      if (e instanceof InsufficientFunds) throw new DomainError('insufficient_tokens', `${staker} holds ${formatAmount(e.balance, NRG)} NRG, ${formatAmount(amount, NRG)} asked`, 422);
      throw e;
    }
    // The reference's log line, with the fields it names.
    this.log?.info(
      { event: 'TokensStaked', staker, amount: formatAmount(amount, NRG), duration_days: lockDays, multiplier: multiplierText(lockDays), voting_power: formatAmount(power, NRG) },
      'Tokens staked',
    );
    return rec;
  }

  /** Returns a stake's tokens once its lock has ended; `staker` null: any staker's (admin). */
  async unstake(staker: string | null, id: string): Promise<StakeRecord> {
    const s = await this.stakes.get(id);
    if (!s || (staker !== null && s.staker !== staker)) throw new DomainError('unknown_stake', `stake ${id} does not exist`, 404);
    const at = this.now();
    if (at < s.unlocksAtMs) throw new DomainError('stake_locked', `stake ${id} is locked until ${new Date(s.unlocksAtMs).toISOString()}`, 409);
    await this.money.transaction(async (trx) => {
      if (!(await this.stakes.markUnstaked(trx, id, at))) throw new DomainError('already_unstaked', `stake ${id} was unstaked already`, 409);
      await this.money.apply(trx, [move('unstake', { kind: 'stake', id }, systemAccount('staking', NRG), ownerAccount(s.staker, NRG), NRG, s.amount)], at);
    });
    this.log?.info({ event: 'TokensUnstaked', staker: s.staker, amount: formatAmount(s.amount, NRG), stake: id }, 'Tokens unstaked');
    return { ...s, unstakedAtMs: at };
  }

  votingPower(staker?: string): Promise<bigint> {
    return this.stakes.votingPower(staker);
  }
}
