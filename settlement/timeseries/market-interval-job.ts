import type { Logger } from 'pino';
import { intervalStart } from '../energy/intervals.ts';
import type { Ledger } from '../ledger/ledger.ts';
import { PeriodicJob } from '../jobs/periodic-job.ts';
import type { SinkMarketInterval } from './influx-sink.ts';

/**
 * Writes each market's metered supply and demand per closed energy interval to the time series
 * (measurement `market_interval`), from the ledger's interval energy (estimates across gaps
 * included, as pricing and delivery settlement see it).
 *
 * Every run rewrites the intervals that closed within `lookbackMs` (a rewrite replaces the
 * point), so readings that arrive late, and gap estimates booked after the grace, still reach
 * the dashboards; the first run after a start looks back a day, to fill what a stop missed.
 * The interval still running is not written: its numbers only grow.
 */
export function marketIntervalJob(d: {
  ledger: Ledger;
  sink: { marketInterval(m: SinkMarketInterval): void };
  markets: ReadonlyArray<{ id: string; timeZone: string; intervalMinutes: number }>;
  log: Logger;
  now: () => number;
  /** How far back each run rewrites (ms); at least two intervals are always covered. */
  lookbackMs: number;
  everyMs?: number;
}): PeriodicJob<{ intervals: number }> {
  let firstRun = true;
  return new PeriodicJob('influx-market-intervals', {
    ledger: d.ledger,
    log: d.log,
    now: d.now,
    everyMs: d.everyMs ?? 60_000,
    run: async () => {
      const now = d.now();
      const back = Math.max(d.lookbackMs, firstRun ? 86_400_000 : 0);
      let intervals = 0;
      for (const m of d.markets) {
        const ms = m.intervalMinutes * 60_000;
        const current = intervalStart(now, ms, m.timeZone);
        const from = current - Math.max(back, 2 * ms);
        for (const row of await d.ledger.marketIntervals(m.id, from, current)) {
          d.sink.marketInterval({ market: m.id, intervalStartMs: row.startMs, supplyWh: row.supplyWh, demandWh: row.demandWh });
          intervals++;
        }
      }
      firstRun = false;
      return { intervals };
    },
  });
}
