import type { Ledger } from '../ledger/ledger.ts';
import { MeterStore } from '../store/meter-store.ts';
import { verifyMeter, type MeterAuditReport } from './verify.ts';

/**
 * `gtx audit verify` for one meter over a time range, with bounded work, for the API's verify
 * action: at most `maxReadings` readings (the newest of the range) are loaded and checked, with
 * their envelopes and the nearest stored reading on each side (the chain rules compare each
 * reading with its neighbours). verifyMeter itself runs unchanged over a view of the ledger that
 * holds only that window of the meter, so the checks are exactly the CLI's.
 */
export interface WindowedAudit {
  report: MeterAuditReport;
  /** The range checked: `fromMs` is later than asked when the range held more than maxReadings. */
  fromMs: number;
  toMs: number;
  /** Every reading of the asked range was checked. */
  complete: boolean;
}

export async function verifyMeterWindow(ledger: Ledger, meter: string, range: { fromMs: number; toMs: number; maxReadings: number }): Promise<WindowedAudit> {
  const store = new MeterStore(ledger.db);
  const window = await store.seqWindow(meter, range.fromMs, range.toMs);
  const inRange = window ? await store.readings(meter, window.fromSeq, window.toSeq, range.maxReadings + 1) : [];
  const complete = inRange.length <= range.maxReadings;
  const checked = inRange.slice(0, range.maxReadings); // newest first
  const oldest = checked.at(-1);
  const newest = checked[0];
  const fromMs = complete || !oldest ? range.fromMs : Date.parse(oldest.ts);
  if (!oldest || !newest) {
    return { report: await verifyMeter(viewOf(ledger, meter, [], []), meter, { fromMs, toMs: range.toMs }), fromMs, toMs: range.toMs, complete };
  }
  // One stored neighbour on each side, for the chain rules at the window's edges.
  const { below } = await store.neighbourSeqs(meter, oldest.seq);
  const { atOrAbove: above } = await store.neighbourSeqs(meter, newest.seq + 1);
  const fromSeq = below ?? oldest.seq;
  const toSeq = above ?? newest.seq;
  const rows = (await store.readings(meter, fromSeq, toSeq + 1, range.maxReadings + 2)).reverse();
  const envelopes = await store.envelopes(meter, fromSeq, toSeq);
  const report = await verifyMeter(viewOf(ledger, meter, rows, envelopes), meter, { fromMs, toMs: range.toMs });
  return { report, fromMs, toMs: range.toMs, complete };
}

/** The ledger, answering `readings` and `envelopesWithMeter` of `meter` with the window only. */
function viewOf(ledger: Ledger, meter: string, rows: Awaited<ReturnType<Ledger['readings']>>, envelopes: Awaited<ReturnType<Ledger['envelopesWithMeter']>>): Ledger {
  return new Proxy(ledger, {
    get(target, prop) {
      if (prop === 'readings') return async (m: string) => (m === meter ? rows : target.readings(m));
      if (prop === 'envelopesWithMeter') return async (m: string) => (m === meter ? envelopes : target.envelopesWithMeter(m));
      const value: unknown = Reflect.get(target, prop, target);
      // Methods run on the ledger itself (its private fields are not on the proxy).
      return typeof value === 'function' ? (value as (...args: unknown[]) => unknown).bind(target) : value;
    },
  });
}
