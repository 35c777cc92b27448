import { sql } from 'kysely';
import type { ChainReading } from '../chain/rules.ts';
import type { LedgerDb } from '../store/database.ts';
import { lockMeter } from './pg-locks.ts';
import { estimateGap, type EnergyDelta } from './plan.ts';

/**
 * Energy across gaps that stay open. A reading lost for good (refused, or never sent) must not
 * lose its energy: the counters are cumulative, so the energy between the readings either side
 * of a gap is known, only not when within the span it was used. Once a gap is older than the
 * grace period, that energy is booked as estimated interval energy, split by time across the
 * span (ledger/plan.ts, estimateGap); a late fill replaces it with the exact split at commit.
 * Written once for both engines; on PostgreSQL each gap is estimated under its meter's lock, as
 * commits of that meter are.
 */
export interface EstimateOptions {
  nowMs: number;
  /** A gap is estimated once it has been open this long ([ingest] gap_grace_s). */
  graceMs: number;
  /** Longest span estimated ([ingest] max_backfill_days); longer gaps are marked, not booked. */
  maxSpanMs: number;
  /** Gaps per run: bounds one run's work. */
  limit: number;
}

export async function estimateDueGaps(db: LedgerDb, engine: 'sqlite' | 'postgres', opts: EstimateOptions): Promise<{ estimated: number; unestimable: number }> {
  const due = await db
    .selectFrom('meter_gaps')
    .select(['meter', 'from_seq'])
    .where('estimated_at_ms', 'is', null)
    .where('opened_at_ms', '<=', opts.nowMs - opts.graceMs)
    .orderBy('opened_at_ms')
    .limit(opts.limit)
    .execute();
  let estimated = 0;
  let unestimable = 0;
  for (const { meter, from_seq } of due) {
    await db.transaction().execute(async (trx) => {
      if (engine === 'postgres') await lockMeter(meter).execute(trx);
      const gap = await trx.selectFrom('meter_gaps').selectAll().where('meter', '=', meter).where('from_seq', '=', from_seq).executeTakeFirst();
      if (!gap || gap.estimated_at_ms !== null) return; // filled or estimated meanwhile
      const ends = await trx
        .selectFrom('readings')
        .select(['seq', 'hash', 'prev', 'ts_ms', 'import_wh', 'export_wh'])
        .where('meter', '=', meter)
        .where('seq', 'in', [gap.from_seq, gap.to_seq])
        .execute();
      const reading = (seq: number): ChainReading | undefined => {
        const r = ends.find((e) => Number(e.seq) === seq);
        return r && { seq, hash: r.hash, prev: r.prev, tsMs: r.ts_ms, importWh: r.import_wh, exportWh: r.export_wh };
      };
      const a = reading(gap.from_seq);
      const b = reading(gap.to_seq);
      const ctx = await trx
        .selectFrom('meters')
        .innerJoin('markets', 'markets.id', 'meters.market')
        .select(['meters.market', 'markets.interval_minutes', 'markets.time_zone'])
        .where('meters.id', '=', meter)
        .executeTakeFirst();
      const estimable =
        a && b && ctx && b.tsMs > a.tsMs && b.tsMs - a.tsMs <= opts.maxSpanMs && b.importWh >= a.importWh && b.exportWh >= a.exportWh;
      if (!estimable) {
        // Marked so it is not looked at again; nothing booked, so a fill has nothing to remove.
        await trx.updateTable('meter_gaps').set({ estimated_at_ms: opts.nowMs }).where('meter', '=', meter).where('from_seq', '=', from_seq).execute();
        unestimable++;
        return;
      }
      const split = { market: ctx.market, intervalMs: ctx.interval_minutes * 60_000, timeZone: ctx.time_zone };
      await addEstimates(trx, estimateGap(meter, a, b, { ...split, ratedPowerW: 0 }));
      await trx
        .updateTable('meter_gaps')
        .set({ estimated_at_ms: opts.nowMs, est_market: split.market, est_interval_ms: split.intervalMs, est_time_zone: split.timeZone })
        .where('meter', '=', meter)
        .where('from_seq', '=', from_seq)
        .execute();
      estimated++;
    });
  }
  return { estimated, unestimable };
}

async function addEstimates(trx: LedgerDb, deltas: EnergyDelta[]): Promise<void> {
  // Bounded by the statement's parameter limit (SQLite: 32766).
  for (let i = 0; i < deltas.length; i += 1000) {
    await trx
      .insertInto('interval_energy')
      .values(
        deltas.slice(i, i + 1000).map((d) => ({
          meter: d.meter,
          start_ms: d.startMs,
          market: d.market,
          import_wh: 0,
          export_wh: 0,
          est_import_wh: d.estImportWh,
          est_export_wh: d.estExportWh,
        })),
      )
      .onConflict((oc) =>
        oc.columns(['meter', 'start_ms']).doUpdateSet({
          est_import_wh: sql`interval_energy.est_import_wh + excluded.est_import_wh`,
          est_export_wh: sql`interval_energy.est_export_wh + excluded.est_export_wh`,
          market: sql`excluded.market`,
        }),
      )
      .execute();
  }
}
