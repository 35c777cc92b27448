import { splitIntoIntervals } from '../energy/intervals.ts';
import type { Ledger } from '../ledger/ledger.ts';
import { HOUR_MS, RecStore, type RecRecord } from '../store/rec-store.ts';
import { verifyMeter, type MeterAuditReport } from './verify.ts';

/**
 * `gtx audit rec ID`: a certificate checked from the ledger alone, down to the signed readings.
 * - the readings it names (firstSeq..lastSeq) are re-verified as `gtx audit verify` does:
 *   every envelope's signature, every reading against its signed original, the hash chain;
 * - the envelopes it lists are exactly those carrying those readings;
 * - the export energy those readings prove for its hour — counter differences of consecutive
 *   readings, split over the market's intervals as the ledger does, never across a gap —
 *   equals what is certified for that meter and hour, this certificate and any top-ups or
 *   split-off parts together.
 */
export interface RecAuditReport {
  rec: RecRecord;
  readings: MeterAuditReport;
  envelopesMatch: boolean;
  /** Export energy in the certificate's hour proven by its readings, Wh. */
  provenWh: number;
  /** All certificates of that meter and hour, their volumes summed, Wh. */
  certifiedWh: number;
  certificatesOfHour: Array<{ id: string; volumeWh: number; parent: string | null }>;
  ok: boolean;
}

export async function auditRec(ledger: Ledger, id: string, onProgress?: (done: number, total: number) => void): Promise<RecAuditReport | undefined> {
  const recs = new RecStore(ledger.db);
  const rec = await recs.get(id);
  if (!rec) return undefined;
  const rows = await ledger.db
    .selectFrom('readings as r')
    .innerJoin('envelopes as e', 'e.ref', 'r.envelope_ref')
    .select(['r.seq', 'r.ts_ms', 'r.import_wh', 'r.export_wh', 'e.id as envelope'])
    .where('r.meter', '=', rec.meter)
    .where('r.seq', '>=', rec.firstSeq)
    .where('r.seq', '<=', rec.lastSeq)
    .orderBy('r.seq')
    .execute();
  const readings = await verifyMeter(ledger, rec.meter, {
    fromMs: rows.length ? Number(rows[0]!.ts_ms) : rec.periodStartMs,
    toMs: rows.length ? Number(rows.at(-1)!.ts_ms) + 1 : rec.periodEndMs,
    ...(onProgress ? { onProgress } : {}),
  });
  const envelopes = [...new Set(rows.map((r) => r.envelope))];
  const envelopesMatch = envelopes.length === rec.envelopes.length && envelopes.every((e, i) => e === rec.envelopes[i]);
  const meter = await ledger.getMeter(rec.meter);
  const market = meter && (await ledger.getMarket(meter.market));
  let provenWh = 0;
  for (let i = 1; i < rows.length; i++) {
    const a = rows[i - 1]!;
    const b = rows[i]!;
    if (Number(b.seq) !== Number(a.seq) + 1) continue; // a gap: no exact energy across it
    const parts = splitIntoIntervals(
      { tsMs: Number(a.ts_ms), importWh: Number(a.import_wh), exportWh: Number(a.export_wh) },
      { tsMs: Number(b.ts_ms), importWh: Number(b.import_wh), exportWh: Number(b.export_wh) },
      (market?.intervalMinutes ?? 15) * 60_000,
      market?.timeZone ?? 'UTC',
    );
    for (const p of parts) if (p.startMs >= rec.periodStartMs && p.startMs < rec.periodStartMs + HOUR_MS) provenWh += p.exportWh;
  }
  const ofHour = await recs.list({ meter: rec.meter, hourStartMs: rec.periodStartMs });
  const certifiedWh = ofHour.reduce((a, r) => a + r.volumeWh, 0);
  return {
    rec,
    readings,
    envelopesMatch,
    provenWh,
    certifiedWh,
    certificatesOfHour: ofHour.map((r) => ({ id: r.id, volumeWh: r.volumeWh, parent: r.parent })),
    ok: readings.ok && rows.length > 0 && envelopesMatch && provenWh === certifiedWh,
  };
}
