import { splitIntoIntervals } from '../energy/intervals.ts';
import type { Ledger } from '../ledger/ledger.ts';
import { HOUR_MS, RecStore, type RecRecord } from '../store/rec-store.ts';
import { verifyMeter, type MeterAuditReport } from './verify.ts';

/**
 * `gtx audit rec ID`: a certificate checked from the ledger alone, down to the signed readings.
 *
 * Energy is checked over the certificate's **window**: its production period, widened to every
 * certificate of the same meter whose period overlaps it, and again until none more overlap (a
 * late top-up or an accumulated certificate can share hours with others; split-off parts share
 * their parent's period). Then:
 * - the readings the window's certificates name are re-verified as `gtx audit verify` does:
 *   every envelope's signature, every reading against its signed original, the hash chain;
 * - this certificate's envelope list is exactly the envelopes carrying its readings (those that
 *   had arrived when it was issued);
 * - the export energy those readings prove per hour — counter differences of consecutive
 *   readings, split over the market's intervals as the ledger does, never across a gap — is at
 *   least what is recorded as certified for each hour, and the certificates' volumes add up
 *   exactly to what is recorded: no Wh is certified that the readings do not prove, nor twice.
 * Proven energy not yet certified (`pendingWh`: below `[recs] min_volume_wh`, or a late reading
 * the next minting run takes) is reported, not a failure.
 */
export interface RecAuditReport {
  rec: RecRecord;
  readings: MeterAuditReport;
  envelopesMatch: boolean;
  window: { fromMs: number; toMs: number };
  /** Export energy in the window proven by the readings, Wh. */
  provenWh: number;
  /** The window's certificates, their volumes summed, Wh. */
  certifiedWh: number;
  /** What the ledger records as certified for the window's hours (rec_coverage), Wh. */
  recordedWh: number;
  /** Proven but not (yet) certified, Wh. */
  pendingWh: number;
  /** Hours recorded as certified beyond what their readings prove. */
  overCertified: Array<{ hourStartMs: number; provenWh: number; recordedWh: number }>;
  certificates: Array<{ id: string; volumeWh: number; periodStartMs: number; periodEndMs: number; parent: string | null }>;
  ok: boolean;
}

/** Widening stops here: a window this wide is reported as it is (it cannot be checked whole). */
const MAX_CERTIFICATES = 10_000;

export async function auditRec(ledger: Ledger, id: string, onProgress?: (done: number, total: number) => void): Promise<RecAuditReport | undefined> {
  const recs = new RecStore(ledger.db);
  const rec = await recs.get(id);
  if (!rec) return undefined;
  let fromMs = rec.periodStartMs;
  let toMs = rec.periodEndMs;
  let certs: RecRecord[] = [rec];
  for (;;) {
    certs = await recs.overlapping(rec.meter, fromMs, toMs, MAX_CERTIFICATES);
    const f = Math.min(fromMs, ...certs.map((c) => c.periodStartMs));
    const t = Math.max(toMs, ...certs.map((c) => c.periodEndMs));
    if ((f === fromMs && t === toMs) || certs.length >= MAX_CERTIFICATES) break;
    fromMs = f;
    toMs = t;
  }
  const firstSeq = Math.min(...certs.map((c) => c.firstSeq));
  const lastSeq = Math.max(...certs.map((c) => c.lastSeq));
  const rows = await ledger.db
    .selectFrom('readings as r')
    .innerJoin('envelopes as e', 'e.ref', 'r.envelope_ref')
    .select(['r.seq', 'r.ts_ms', 'r.import_wh', 'r.export_wh', 'e.id as envelope', 'e.received_at_ms'])
    .where('r.meter', '=', rec.meter)
    .where('r.seq', '>=', firstSeq)
    .where('r.seq', '<=', lastSeq)
    .orderBy('r.seq')
    .execute();
  const readings = await verifyMeter(ledger, rec.meter, {
    fromMs: rows.length ? Number(rows[0]!.ts_ms) : fromMs,
    toMs: rows.length ? Number(rows.at(-1)!.ts_ms) + 1 : toMs,
    ...(onProgress ? { onProgress } : {}),
  });
  // Its envelopes: every one carrying its readings that was there when it was issued (a late
  // reading filling a gap inside its range arrives in an envelope it cannot name), none other.
  const own = rows.filter((r) => Number(r.seq) >= rec.firstSeq && Number(r.seq) <= rec.lastSeq);
  const carrying = new Set(own.map((r) => r.envelope));
  const before = new Set(own.filter((r) => Number(r.received_at_ms) < rec.issuedAtMs).map((r) => r.envelope));
  const listed = new Set(rec.envelopes);
  const envelopesMatch = listed.size === rec.envelopes.length && rec.envelopes.every((e) => carrying.has(e)) && [...before].every((e) => listed.has(e));

  const meter = await ledger.getMeter(rec.meter);
  const market = meter && (await ledger.getMarket(meter.market));
  const provenByHour = new Map<number, number>();
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
    for (const p of parts) {
      if (p.startMs < fromMs || p.startMs >= toMs) continue;
      const hour = Math.floor(p.startMs / HOUR_MS) * HOUR_MS;
      provenByHour.set(hour, (provenByHour.get(hour) ?? 0) + p.exportWh);
    }
  }
  const recorded = await recs.coverage(rec.meter, fromMs, toMs);
  const overCertified: RecAuditReport['overCertified'] = [];
  let provenWh = 0;
  let recordedWh = 0;
  let pendingWh = 0;
  for (let h = fromMs; h < toMs; h += HOUR_MS) {
    const p = provenByHour.get(h) ?? 0;
    const c = recorded.get(h) ?? 0;
    provenWh += p;
    recordedWh += c;
    if (c > p) overCertified.push({ hourStartMs: h, provenWh: p, recordedWh: c });
    else pendingWh += p - c;
  }
  const certifiedWh = certs.reduce((a, r) => a + r.volumeWh, 0);
  return {
    rec,
    readings,
    envelopesMatch,
    window: { fromMs, toMs },
    provenWh,
    certifiedWh,
    recordedWh,
    pendingWh,
    overCertified,
    certificates: certs.map((r) => ({ id: r.id, volumeWh: r.volumeWh, periodStartMs: r.periodStartMs, periodEndMs: r.periodEndMs, parent: r.parent })),
    ok: readings.ok && rows.length > 0 && envelopesMatch && certifiedWh === recordedWh && overCertified.length === 0 && certs.length < MAX_CERTIFICATES,
  };
}
