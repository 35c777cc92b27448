import type { Logger } from 'pino';
import type { Ledger } from '../ledger/ledger.ts';
import type { RecMinter } from '../recs/minting.ts';
import { PeriodicJob } from './periodic-job.ts';

/** Mints certificates for hours that have settled, every `everyMs` (default 5 min), under the advisory lock. */
export function recMintingJob(d: { ledger: Ledger; minter: RecMinter; log: Logger; now: () => number; everyMs?: number }): PeriodicJob<{ minted: number }> {
  return new PeriodicJob('rec-minting', {
    ledger: d.ledger,
    log: d.log,
    now: d.now,
    everyMs: d.everyMs ?? 300_000,
    run: async () => ({ minted: (await d.minter.mintDue()).minted.length }),
  });
}
