import { sql } from 'kysely';
import type { EnvelopeId, MeterRole } from '../../protocol/index.ts';
import type { StoredEnvelope, StoredReading } from '../ledger/ledger.ts';
import { READING_COLUMNS, toStoredReading, type ReadingRow } from '../ledger/rows.ts';
import type { LedgerDb } from './database.ts';

/**
 * Meters as the API and the pages show them — owner, gateway, last verified reading — and a
 * meter's readings and rejections, written once for both engines. Every query is bounded: lists
 * by a limit, readings by seq (primary key) ranges found with index seeks, rejections by the
 * number of samples looked at.
 */

export interface LastReading {
  seq: number;
  tsMs: number;
  importWh: number;
  exportWh: number;
  powerW: number;
  receivedAtMs: number;
}

export interface MeterOverview {
  meter: string;
  gateway: string;
  owner: string;
  market: string;
  role: MeterRole;
  model: string;
  /** Stored readings of the meter (counted per meter on the page). */
  readings: number;
  lastReading: LastReading | null;
}

export interface MeterRejection {
  id: number;
  receivedAtMs: number;
  gateway: string | null;
  envelopeId: string | null;
  reason: string;
  detail: string;
}

/** Rejection samples looked at per request, newest first: samples are rate-limited per gateway and reason. */
export const REJECTIONS_SCANNED = 500;
const REJECTION_PAGE = 100;


export class MeterStore {
  constructor(private readonly db: LedgerDb) {}

  /**
   * Registered meters in id order after `after`, at most `limit`, each with its newest stored
   * reading (found by the primary key: the highest seq). `accounts` null: every owner's.
   */
  async list(opts: { accounts: readonly string[] | null; after?: string; limit: number; gateways?: readonly string[] }): Promise<MeterOverview[]> {
    if (opts.accounts?.length === 0 || opts.gateways?.length === 0) return [];
    let q = this.db
      .selectFrom('meters as m')
      .leftJoin('readings as r', (j) =>
        j.onRef('r.meter', '=', 'm.id').on((eb) => eb('r.seq', '=', eb.selectFrom('readings as h').select((h) => h.fn.max('h.seq').as('top')).whereRef('h.meter', '=', 'm.id'))),
      )
      .select([
        'm.id',
        'm.gateway',
        'm.owner',
        'm.market',
        'm.role',
        'm.model',
        'r.seq',
        'r.ts_ms',
        'r.import_wh',
        'r.export_wh',
        'r.power_w',
        'r.received_at_ms',
        (eb) => eb.selectFrom('readings as c').select(sql<number>`count(*)`.as('n')).whereRef('c.meter', '=', 'm.id').as('readings'),
      ])
      .orderBy('m.id')
      .limit(opts.limit);
    if (opts.accounts) q = q.where('m.owner', 'in', [...opts.accounts]);
    if (opts.gateways) q = q.where('m.gateway', 'in', [...opts.gateways]);
    if (opts.after !== undefined) q = q.where('m.id', '>', opts.after);
    const rows = await q.execute();
    return rows.map((r) => ({
      meter: r.id,
      gateway: r.gateway,
      owner: r.owner,
      market: r.market,
      role: r.role as MeterRole,
      model: r.model,
      readings: Number(r.readings ?? 0),
      lastReading:
        r.seq === null || r.ts_ms === null || r.import_wh === null || r.export_wh === null || r.power_w === null || r.received_at_ms === null
          ? null
          : {
              seq: Number(r.seq),
              tsMs: Number(r.ts_ms),
              importWh: Number(r.import_wh),
              exportWh: Number(r.export_wh),
              powerW: Number(r.power_w),
              receivedAtMs: Number(r.received_at_ms),
            },
    }));
  }

  /**
   * The seqs of the meter's readings with fromMs ≤ ts < toMs, as [fromSeq, toSeq): stored
   * readings move forward in time with their seq (the commit refuses a time regression, also
   * across gaps), so each bound is found by a binary search over seq with index seeks, about
   * 2·log2(seqs) point queries instead of a scan. Undefined when the meter has no readings.
   */
  async seqWindow(meter: string, fromMs: number, toMs: number): Promise<{ fromSeq: number; toSeq: number } | undefined> {
    const ends = await this.db
      .selectFrom('readings')
      .select([sql<number>`min(seq)`.as('lo'), sql<number>`max(seq)`.as('hi')])
      .where('meter', '=', meter)
      .executeTakeFirst();
    if (!ends || ends.lo === null || ends.hi === null) return undefined;
    const lo = Number(ends.lo);
    const hi = Number(ends.hi);
    return { fromSeq: await this.firstSeqAtOrAfter(meter, fromMs, lo, hi), toSeq: await this.firstSeqAtOrAfter(meter, toMs, lo, hi) };
  }

  /** The smallest x in [lo, hi + 1] such that every stored reading with seq ≥ x has ts ≥ atMs. */
  private async firstSeqAtOrAfter(meter: string, atMs: number, lo: number, hi: number): Promise<number> {
    const tsFrom = async (seq: number): Promise<number | undefined> => {
      const r = await this.db.selectFrom('readings').select('ts_ms').where('meter', '=', meter).where('seq', '>=', seq).orderBy('seq').limit(1).executeTakeFirst();
      return r === undefined ? undefined : Number(r.ts_ms);
    };
    const reached = async (seq: number): Promise<boolean> => {
      const ts = await tsFrom(seq);
      return ts === undefined || ts >= atMs;
    };
    // The common cases in one query each: a range reaching past the newest reading, or starting before the first.
    if (!(await reached(hi))) return hi + 1;
    if (await reached(lo)) return lo;
    let a = lo + 1;
    let b = hi;
    while (a < b) {
      const mid = a + Math.floor((b - a) / 2);
      if (await reached(mid)) b = mid;
      else a = mid + 1;
    }
    return a;
  }

  /** Stored readings with fromSeq ≤ seq < toSeq, newest first, at most `limit`. */
  async readings(meter: string, fromSeq: number, toSeq: number, limit: number): Promise<StoredReading[]> {
    const rows = await this.db
      .selectFrom('readings as r')
      .innerJoin('envelopes as e', 'e.ref', 'r.envelope_ref')
      .select([...READING_COLUMNS])
      .where('r.meter', '=', meter)
      .where('r.seq', '>=', fromSeq)
      .where('r.seq', '<', toSeq)
      .orderBy('r.seq', 'desc')
      .limit(limit)
      .execute();
    return rows.map((r) => toStoredReading(r as ReadingRow));
  }

  /** The nearest stored seq below `seq` and at or above it (neighbours for the chain rules). */
  async neighbourSeqs(meter: string, seq: number): Promise<{ below: number | undefined; atOrAbove: number | undefined }> {
    const below = await this.db.selectFrom('readings').select('seq').where('meter', '=', meter).where('seq', '<', seq).orderBy('seq', 'desc').limit(1).executeTakeFirst();
    const above = await this.db.selectFrom('readings').select('seq').where('meter', '=', meter).where('seq', '>=', seq).orderBy('seq').limit(1).executeTakeFirst();
    return { below: below && Number(below.seq), atOrAbove: above && Number(above.seq) };
  }

  /** The envelopes holding the meter's readings with fromSeq ≤ seq ≤ toSeq, as Ledger.envelopesWithMeter orders them. */
  async envelopes(meter: string, fromSeq: number, toSeq: number): Promise<StoredEnvelope[]> {
    const rows = await this.db
      .selectFrom('envelopes as e')
      .select(['e.id', 'e.gateway', 'e.signed', 'e.sig', 'e.received_at_ms', 'e.reading_count'])
      .where('e.ref', 'in', (eb) => eb.selectFrom('readings').select('envelope_ref').where('meter', '=', meter).where('seq', '>=', fromSeq).where('seq', '<=', toSeq))
      .orderBy('e.received_at_ms')
      .orderBy('e.id')
      .execute();
    return rows.map((r) => ({
      id: r.id as EnvelopeId,
      gateway: r.gateway as StoredEnvelope['gateway'],
      signed: r.signed,
      sig: r.sig,
      receivedAtMs: Number(r.received_at_ms),
      readingCount: Number(r.reading_count),
    }));
  }

  /**
   * Rejection samples concerning the meter, newest first: refusals of the gateways that held it
   * whose payload names it (`"meter":"<id>"` in the kept bytes, or a reading of it when they
   * parse). At most REJECTIONS_SCANNED samples are looked at; a payload cut short before the
   * meter's id (rejection_sample_bytes) is not found.
   */
  async rejections(meter: string, gateways: readonly string[], limit: number): Promise<MeterRejection[]> {
    if (gateways.length === 0) return [];
    const needle = Buffer.from(`"meter":${JSON.stringify(meter)}`);
    const found: MeterRejection[] = [];
    let before: number | undefined;
    for (let scanned = 0; scanned < REJECTIONS_SCANNED && found.length < limit; ) {
      const page = Math.min(REJECTION_PAGE, REJECTIONS_SCANNED - scanned);
      let q = this.db
        .selectFrom('rejections')
        .select(['id', 'received_at_ms', 'gateway', 'envelope_id', 'reason', 'detail', 'payload'])
        .where('gateway', 'in', [...gateways])
        .orderBy('id', 'desc')
        .limit(page);
      if (before !== undefined) q = q.where('id', '<', before);
      const rows = await q.execute();
      for (const r of rows) {
        if (found.length < limit && (r.payload.includes(needle) || namesMeter(r.payload, meter))) {
          found.push({ id: Number(r.id), receivedAtMs: Number(r.received_at_ms), gateway: r.gateway, envelopeId: r.envelope_id, reason: r.reason, detail: r.detail });
        }
      }
      scanned += rows.length;
      if (rows.length < page) break;
      before = Number(rows.at(-1)!.id);
    }
    return found;
  }
}

/** Whether a payload that parses as JSON holds a reading of `meter` (whatever its whitespace). */
function namesMeter(payload: Buffer, meter: string): boolean {
  let value: unknown;
  try {
    value = JSON.parse(payload.toString('utf8'));
  } catch {
    return false;
  }
  const readings = (value as { readings?: unknown } | null)?.readings;
  return Array.isArray(readings) && readings.some((r) => (r as { meter?: unknown } | null)?.meter === meter);
}
