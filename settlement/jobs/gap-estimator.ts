import type { Logger } from 'pino';
import type { Ledger } from '../ledger/ledger.ts';
import type { LedgerWriter } from '../ledger/writer.ts';
import { PeriodicJob } from './periodic-job.ts';

/** Gaps estimated per writer task: bounds how long one task holds the writer. */
const GAPS_PER_TASK = 50;

/**
 * Books the energy across gaps that stayed open past [ingest] gap_grace_s as estimated interval
 * energy (ledger/gap-estimates.ts), on the ledger writer, a bounded number per task.
 */
export function gapEstimator(opts: {
  ledger: Ledger;
  writer: LedgerWriter;
  log: Logger;
  now: () => number;
  graceMs: number;
  maxSpanMs: number;
  everyMs?: number;
}): PeriodicJob<{ estimated: number; unestimable: number }> {
  return new PeriodicJob('gap-estimates', {
    ledger: opts.ledger,
    log: opts.log,
    now: opts.now,
    everyMs: opts.everyMs ?? 60_000,
    run: async () => {
      const total = { estimated: 0, unestimable: 0 };
      for (;;) {
        const r = await opts.writer.estimateGaps({ nowMs: opts.now(), graceMs: opts.graceMs, maxSpanMs: opts.maxSpanMs, limit: GAPS_PER_TASK });
        total.estimated += r.estimated;
        total.unestimable += r.unestimable;
        if (r.estimated + r.unestimable < GAPS_PER_TASK) break;
      }
      if (total.estimated + total.unestimable > 0) {
        opts.log.info({ job: 'gap-estimates', ...total }, 'energy across open gaps booked as estimated');
      }
      return total;
    },
  });
}
