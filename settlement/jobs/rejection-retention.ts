import type { Logger } from 'pino';
import type { Ledger } from '../ledger/ledger.ts';
import type { LedgerWriter } from '../ledger/writer.ts';
import { PeriodicJob } from './periodic-job.ts';

const ROWS_PER_TASK = 5000;

/** Deletes rejection samples and counts older than [ingest] rejection_retention_days, in chunks. */
export function rejectionRetention(opts: {
  ledger: Ledger;
  writer: LedgerWriter;
  log: Logger;
  now: () => number;
  retentionMs: number;
  everyMs?: number;
}): PeriodicJob<{ samples: number; counts: number }> {
  return new PeriodicJob('rejection-retention', {
    ledger: opts.ledger,
    log: opts.log,
    now: opts.now,
    everyMs: opts.everyMs ?? 3600_000,
    run: async () => {
      const total = { samples: 0, counts: 0 };
      const beforeMs = opts.now() - opts.retentionMs;
      for (;;) {
        const r = await opts.writer.pruneRejections(beforeMs);
        total.samples += r.samples;
        total.counts += r.counts;
        if (r.samples < ROWS_PER_TASK && r.counts < ROWS_PER_TASK) break;
      }
      if (total.samples + total.counts > 0) opts.log.info({ job: 'rejection-retention', ...total }, 'old rejection samples and counts deleted');
      return total;
    },
  });
}
