import type { Logger } from 'pino';
import type { Voting } from '../governance/voting.ts';
import type { Ledger } from '../ledger/ledger.ts';
import { PeriodicJob } from './periodic-job.ts';

/** Decides proposals whose voting ended and executes passed ones after their delay, under the advisory lock. */
export function governanceJob(d: { ledger: Ledger; voting: Voting; log: Logger; now: () => number; everyMs?: number }): PeriodicJob<{ decided: number; executed: number }> {
  return new PeriodicJob('governance', { ledger: d.ledger, log: d.log, now: d.now, everyMs: d.everyMs ?? 60_000, run: () => d.voting.runDue() });
}
