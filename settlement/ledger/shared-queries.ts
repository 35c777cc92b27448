import type { LedgerDb } from '../store/database.ts';
import { gaps, intervalEnergy, marketIntervals } from './energy-queries.ts';
import type { GapRow, IntervalRow, MarketIntervalRow, StoredRejection } from './ledger.ts';
import { rejectionSamples } from './rejection-store.ts';

/**
 * The Ledger queries written once for both engines (through the query builder): each engine
 * extends this and supplies `db` over its own connection(s).
 */
export abstract class SharedLedgerQueries {
  abstract readonly db: LedgerDb;

  rejections(limit = 100): Promise<StoredRejection[]> {
    return rejectionSamples(this.db, limit);
  }

  intervalEnergy(meter: string, fromMs: number, toMs: number): Promise<IntervalRow[]> {
    return intervalEnergy(this.db, meter, fromMs, toMs);
  }

  marketIntervals(market: string, fromMs: number, toMs: number): Promise<MarketIntervalRow[]> {
    return marketIntervals(this.db, market, fromMs, toMs);
  }

  gaps(meter: string): Promise<GapRow[]> {
    return gaps(this.db, meter);
  }
}
