import type { LedgerDb } from './database.ts';
import type { Trx } from './money-store.ts';

/** Stakes (migration 007), written once for both engines; amounts are bigint NRG base units. */
export interface StakeRecord {
  id: string;
  staker: string;
  amount: bigint;
  lockDays: number;
  votingPower: bigint;
  stakedAtMs: number;
  unlocksAtMs: number;
  unstakedAtMs: number | null;
}

const toStake = (r: import('./database.ts').StakesTable): StakeRecord => ({
  id: r.id,
  staker: r.staker,
  amount: BigInt(r.amount),
  lockDays: Number(r.lock_days),
  votingPower: BigInt(r.voting_power),
  stakedAtMs: Number(r.staked_at_ms),
  unlocksAtMs: Number(r.unlocks_at_ms),
  unstakedAtMs: r.unstaked_at_ms === null ? null : Number(r.unstaked_at_ms),
});

export class StakeStore {
  constructor(private readonly db: LedgerDb) {}

  async insert(trx: Trx, s: StakeRecord): Promise<void> {
    await trx
      .insertInto('stakes')
      .values({
        id: s.id,
        staker: s.staker,
        amount: s.amount.toString(),
        lock_days: s.lockDays,
        voting_power: s.votingPower.toString(),
        staked_at_ms: s.stakedAtMs,
        unlocks_at_ms: s.unlocksAtMs,
        unstaked_at_ms: null,
      })
      .execute();
  }

  /** Marks a stake unstaked; false when it was already (a second request, another worker). */
  async markUnstaked(trx: Trx, id: string, atMs: number): Promise<boolean> {
    const r = await trx.updateTable('stakes').set({ unstaked_at_ms: atMs }).where('id', '=', id).where('unstaked_at_ms', 'is', null).executeTakeFirst();
    return Number(r.numUpdatedRows) === 1;
  }

  async get(id: string): Promise<StakeRecord | undefined> {
    const r = await this.db.selectFrom('stakes').selectAll().where('id', '=', id).executeTakeFirst();
    return r && toStake(r);
  }

  /** A staker's stakes, newest first (active ones only with `active`). */
  async of(staker: string, active = false): Promise<StakeRecord[]> {
    let q = this.db.selectFrom('stakes').selectAll().where('staker', '=', staker).orderBy('staked_at_ms', 'desc').orderBy('id');
    if (active) q = q.where('unstaked_at_ms', 'is', null);
    return (await q.execute()).map(toStake);
  }

  /** Voting power of every active stake, or of one staker's: summed here, exactly, in bigint. */
  async votingPower(staker?: string): Promise<bigint> {
    let q = this.db.selectFrom('stakes').select('voting_power').where('unstaked_at_ms', 'is', null);
    if (staker !== undefined) q = q.where('staker', '=', staker);
    return (await q.execute()).reduce((a, r) => a + BigInt(r.voting_power), 0n);
  }
}
