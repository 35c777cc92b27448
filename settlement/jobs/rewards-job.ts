import type { Logger } from 'pino';
import type { Ledger } from '../ledger/ledger.ts';
import type { RewardPayer } from '../rewards/rewards.ts';
import { PeriodicJob } from './periodic-job.ts';

/** Pays conservation rewards for settled local days, every `everyMs` (default hourly), under the advisory lock. */
export function rewardsJob(d: { ledger: Ledger; payer: RewardPayer; log: Logger; now: () => number; everyMs?: number }): PeriodicJob<{ paid: number }> {
  return new PeriodicJob('rewards', { ledger: d.ledger, log: d.log, now: d.now, everyMs: d.everyMs ?? 3_600_000, run: async () => d.payer.payDue(await d.ledger.listMarkets()) });
}
