import { sql } from 'kysely';
import type { LedgerDb } from '../store/database.ts';
import type { GapRow, IntervalRow, MarketIntervalRow } from './ledger.ts';

// The read side of verified energy, written once for both engines (store/database.ts).

/** Verified energy of a meter per interval with start in [fromMs, toMs); totals include estimates. */
export async function intervalEnergy(db: LedgerDb, meter: string, fromMs: number, toMs: number): Promise<IntervalRow[]> {
  const rows = await db
    .selectFrom('interval_energy')
    .select(['start_ms', 'import_wh', 'export_wh', 'est_import_wh', 'est_export_wh'])
    .where('meter', '=', meter)
    .where('start_ms', '>=', fromMs)
    .where('start_ms', '<', toMs)
    .orderBy('start_ms')
    .execute();
  return rows.map((r) => ({
    startMs: r.start_ms,
    importWh: r.import_wh + r.est_import_wh,
    exportWh: r.export_wh + r.est_export_wh,
    estImportWh: r.est_import_wh,
    estExportWh: r.est_export_wh,
  }));
}

/** Supply (export) and demand (import) of a market per interval with start in [fromMs, toMs). */
export async function marketIntervals(db: LedgerDb, market: string, fromMs: number, toMs: number): Promise<MarketIntervalRow[]> {
  // CAST: PostgreSQL sums bigints as numeric; back to bigint (read as a safe-integer number, or an error).
  const rows = await db
    .selectFrom('interval_energy')
    .select([
      'start_ms',
      sql<number>`CAST(sum(export_wh + est_export_wh) AS BIGINT)`.as('supply'),
      sql<number>`CAST(sum(import_wh + est_import_wh) AS BIGINT)`.as('demand'),
      sql<number>`CAST(sum(est_export_wh) AS BIGINT)`.as('est_supply'),
      sql<number>`CAST(sum(est_import_wh) AS BIGINT)`.as('est_demand'),
      sql<number>`count(DISTINCT meter)`.as('meters'),
    ])
    .where('market', '=', market)
    .where('start_ms', '>=', fromMs)
    .where('start_ms', '<', toMs)
    .groupBy('start_ms')
    .orderBy('start_ms')
    .execute();
  return rows.map((r) => ({
    startMs: r.start_ms,
    supplyWh: Number(r.supply),
    demandWh: Number(r.demand),
    estSupplyWh: Number(r.est_supply),
    estDemandWh: Number(r.est_demand),
    meters: Number(r.meters),
  }));
}

/** Open gaps of a meter (kept by the commit, ledger/plan.ts), as runs of missing seqs. */
export async function gaps(db: LedgerDb, meter: string): Promise<GapRow[]> {
  const rows = await db
    .selectFrom('meter_gaps')
    .select(['from_seq', 'to_seq', 'opened_at_ms', 'estimated_at_ms'])
    .where('meter', '=', meter)
    .orderBy('from_seq')
    .execute();
  return rows.map((r) => ({ fromSeq: r.from_seq + 1, toSeq: r.to_seq - 1, openedAtMs: r.opened_at_ms, estimated: r.estimated_at_ms !== null }));
}
