import type { HourSaving } from '../rewards/baseline.ts';
import type { LedgerDb } from './database.ts';

/** Conservation reward payments (migration 009), each with the hours it paid for. */
export interface RewardPayment {
  meter: string;
  /** Local date in the market's time zone. */
  day: string;
  owner: string;
  savedWh: number;
  /** NRG base units. */
  amount: bigint;
  hours: HourSaving[];
  paidAtMs: number;
}

export class RewardStore {
  constructor(private readonly db: LedgerDb) {}

  async list(filter: { owner?: string; meter?: string; from?: string; to?: string; limit?: number }): Promise<RewardPayment[]> {
    let q = this.db.selectFrom('reward_payments').selectAll().orderBy('day', 'desc').orderBy('meter');
    if (filter.owner !== undefined) q = q.where('owner', '=', filter.owner);
    if (filter.meter !== undefined) q = q.where('meter', '=', filter.meter);
    if (filter.from !== undefined) q = q.where('day', '>=', filter.from);
    if (filter.to !== undefined) q = q.where('day', '<=', filter.to);
    const rows = await q.limit(filter.limit ?? 100).execute();
    return rows.map((r) => ({
      meter: r.meter,
      day: r.day,
      owner: r.owner,
      savedWh: Number(r.saved_wh),
      amount: BigInt(r.amount),
      hours: JSON.parse(r.details) as HourSaving[],
      paidAtMs: Number(r.paid_at_ms),
    }));
  }
}
