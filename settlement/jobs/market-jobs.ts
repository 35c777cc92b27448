import type { Logger } from 'pino';
import type { Ledger } from '../ledger/ledger.ts';
import type { MarketService } from '../market/market.ts';
import { intervalMs, type MarketRules } from '../market/rules.ts';
import { intervalStart } from '../energy/intervals.ts';
import { PeriodicJob } from './periodic-job.ts';

/**
 * The market's schedulers, each a PeriodicJob under the ledger's advisory lock (one worker runs
 * each at a time; the auction's unique (market, delivery) row makes a second run a no-op anyway).
 */
interface MarketJobDeps {
  ledger: Ledger;
  market: MarketService;
  markets: ReadonlyArray<{ id: string; timeZone: string; rules: MarketRules }>;
  log: Logger;
  now: () => number;
}

/** Per market, a new price signal every [dynamic_pricing] update_interval. */
export function pricingJobs(d: MarketJobDeps): Array<PeriodicJob<unknown>> {
  return d.markets.map(
    (m) =>
      new PeriodicJob(`pricing:${m.id}`, {
        ledger: d.ledger,
        log: d.log,
        now: d.now,
        everyMs: m.rules.pricing.updateIntervalMs,
        run: async () => {
          const s = await d.market.updatePrice(m.id);
          return { price: s.price.toString(), ratio: s.ratio };
        },
      }),
  );
}

/**
 * Runs `work` for each market; one market's failure is logged and does not keep the others from
 * their turn. The run still fails (after all markets) so the job records the error.
 */
async function eachMarket(d: MarketJobDeps, job: string, work: (m: MarketJobDeps['markets'][number]) => Promise<void>): Promise<void> {
  let failed: unknown;
  for (const m of d.markets) {
    try {
      await work(m);
    } catch (e) {
      d.log.error({ job, market: m.id, err: e }, `${job} failed for a market; it is tried again at the next run`);
      failed = e;
    }
  }
  if (failed) throw failed;
}

/** Most delivery intervals caught up per run, so a long outage cannot make one run unbounded. */
const CATCH_UP_PER_RUN = 96;

/**
 * Auctions: checked every `everyMs` (default 30 s). While a market is open, the auction of the
 * current interval boundary runs (once; later checks find it done). Open orders whose auction
 * was missed (the settlement was down, or the market closed before their delivery) are cleared
 * by a late auction, so no order keeps its escrow past its delivery.
 */
export function auctionJob(d: MarketJobDeps & { everyMs?: number }): PeriodicJob<{ auctions: number }> {
  return new PeriodicJob('auctions', {
    ledger: d.ledger,
    log: d.log,
    now: d.now,
    everyMs: d.everyMs ?? 30_000,
    run: async () => {
      const now = d.now();
      let auctions = 0;
      await eachMarket(d, 'auctions', async (m) => {
        // The rules now: a vote may have changed the auction interval since the start.
        const i = intervalMs(d.market.rulesOf(m.id) ?? m.rules);
        const boundary = intervalStart(now, i, m.timeZone);
        if ((await d.market.isOpen(m.id, now)) && (await d.market.runAuction(m.id, boundary))) auctions++;
        // Deliveries starting by the next interval whose orders are still open: auction now.
        for (const start of await d.market.store.dueDeliveries(m.id, boundary + i, CATCH_UP_PER_RUN)) {
          if (await d.market.runAuction(m.id, start - i)) auctions++;
        }
      });
      return { auctions };
    },
  });
}

/** Delivery settlement: every `everyMs`, per market, the trades of intervals that ended `graceMs` ago. */
export function deliveryJob(d: MarketJobDeps & { graceMs: number; everyMs?: number }): PeriodicJob<{ trades: number }> {
  return new PeriodicJob('delivery-settlement', {
    ledger: d.ledger,
    log: d.log,
    now: d.now,
    everyMs: d.everyMs ?? 60_000,
    run: async () => {
      let trades = 0;
      await eachMarket(d, 'delivery-settlement', async (m) => {
        for (let n = 0; n < CATCH_UP_PER_RUN; n++) {
          const settled = await d.market.settleNextDelivery(m.id, d.graceMs);
          if (settled === 0) break;
          trades += settled;
        }
      });
      return { trades };
    },
  });
}
