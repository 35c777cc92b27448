import { randomBytes } from 'node:crypto';
import type { Logger } from 'pino';
import type { Ledger } from '../ledger/ledger.ts';
import { lockMeter } from '../ledger/pg-locks.ts';
import type { MoneyStore, Trx } from '../store/money-store.ts';
import { HOUR_MS, RecStore, type RecRecord } from '../store/rec-store.ts';

/**
 * Minting Renewable Energy Certificates from verified generation, never by hand: per generation
 * or bidirectional meter and UTC hour, the exact export energy (interval energy from counter
 * differences, less what is estimated across gaps) not yet certified becomes one certificate.
 * What each meter-hour has had certified is kept (rec_coverage), so the same Wh is never
 * certified twice: a run that comes again, a second worker, or a late reading that turns
 * estimated energy into exact energy certifies only the difference, as a new certificate.
 *
 * Each certificate names the readings its energy rests on: the meter's last reading at or before
 * the hour's start through its first reading at or after the hour's end (the counter
 * differences that span the hour), and their envelopes, so `gtx audit` can re-verify them.
 */
export interface MintResult {
  minted: RecRecord[];
}

/** Hours per meter and run at most: bounds one run's work. */
const HOURS_PER_RUN = 500;

export class RecMinter {
  readonly recs: RecStore;

  constructor(
    private readonly ledger: Ledger,
    private readonly money: MoneyStore,
    private readonly opts: {
      now: () => number;
      /** An hour is minted once this long after it ends: readings late within the gap grace are in. */
      settleMs: number;
      /** How far back late readings can still add exact energy ([ingest] max_backfill_days). */
      lookbackMs: number;
      log?: Logger;
    },
  ) {
    this.recs = new RecStore(ledger.db);
  }

  /** Mints what is due for every generation and bidirectional meter, or for hours in [fromMs, toMs). */
  async mintDue(window?: { fromMs: number; toMs: number }): Promise<MintResult> {
    const now = this.opts.now();
    const endedBy = Math.floor((now - this.opts.settleMs) / HOUR_MS) * HOUR_MS;
    const toMs = Math.min(window?.toMs ?? endedBy, endedBy);
    // Never further back than a late reading can reach: bounds what one run (or an admin's
    // trigger with a wide window) reads, and older hours cannot change any more.
    const fromMs = Math.max(window?.fromMs ?? 0, endedBy - this.opts.lookbackMs);
    const minted: RecRecord[] = [];
    const meters = (await this.ledger.listMeters()).filter((m) => m.role !== 'consumption');
    for (const m of meters) {
      const hours = (await this.recs.uncertifiedHours(m.id, fromMs, toMs)).slice(0, HOURS_PER_RUN);
      for (const h of hours) {
        const rec = await this.mintHour(m, h.hourStartMs, now);
        if (rec) minted.push(rec);
      }
    }
    if (minted.length) {
      this.opts.log?.info({ event: 'RecsMinted', certificates: minted.length, wh: minted.reduce((a, r) => a + r.volumeWh, 0) }, 'certificates minted from verified generation');
    }
    return { minted };
  }

  private async mintHour(m: Awaited<ReturnType<Ledger['listMeters']>>[number], hourStartMs: number, now: number): Promise<RecRecord | undefined> {
    return this.money.transaction(async (trx) => {
      // PostgreSQL: the meter's lock, which its commits take too, so the energy read here is not
      // changing underneath; SQLite: the coverage write takes the one write lock first.
      if (this.ledger.engine === 'postgres') await lockMeter(m.id).execute(trx);
      await this.recs.touchCoverage(trx, m.id, hourStartMs);
      const { exactWh, certifiedWh } = await this.recs.hourState(trx, m.id, hourStartMs);
      const volumeWh = exactWh - certifiedWh;
      if (volumeWh <= 0) return undefined;
      const span = await this.readingsSpanning(trx, m.id, hourStartMs, hourStartMs + HOUR_MS);
      if (!span) return undefined;
      const rec: RecRecord = {
        id: `rec_${randomBytes(9).toString('base64url')}`,
        meter: m.id,
        generatorOwner: m.owner,
        owner: m.owner,
        energySource: m.energySource ?? 'Other',
        market: m.market,
        periodStartMs: hourStartMs,
        periodEndMs: hourStartMs + HOUR_MS,
        volumeWh,
        issuedAtMs: now,
        status: 'active',
        firstSeq: span.firstSeq,
        lastSeq: span.lastSeq,
        envelopes: await this.recs.envelopesOf(trx, m.id, span.firstSeq, span.lastSeq),
        listing: null,
        parent: null,
        retirement: null,
      };
      await this.recs.insert(trx, rec);
      await this.recs.setCoverage(trx, m.id, hourStartMs, exactWh);
      return rec;
    });
  }

  /**
   * The last stored reading at or before `fromMs` and the first at or after `toMs` (or the
   * meter's first and last when none lies beyond): found by binary search over seq, since a
   * meter's readings are in time order by seq and seq is the key.
   */
  private async readingsSpanning(trx: Trx, meter: string, fromMs: number, toMs: number): Promise<{ firstSeq: number; lastSeq: number } | undefined> {
    const range = await this.recs.seqRange(trx, meter);
    if (!range) return undefined;
    // Largest seq whose nearest stored reading at or below is at or before fromMs.
    let lo = range.min;
    let hi = range.max;
    let first = range.min;
    while (lo <= hi) {
      const mid = Math.floor((lo + hi) / 2);
      const r = (await this.recs.readingNear(trx, meter, mid, false))!;
      if (r.tsMs <= fromMs) {
        first = r.seq;
        lo = mid + 1;
      } else hi = mid - 1;
    }
    // Smallest seq whose nearest stored reading at or above is at or after toMs.
    lo = range.min;
    hi = range.max;
    let last = range.max;
    while (lo <= hi) {
      const mid = Math.floor((lo + hi) / 2);
      const r = (await this.recs.readingNear(trx, meter, mid, true))!;
      if (r.tsMs >= toMs) {
        last = r.seq;
        hi = mid - 1;
      } else lo = mid + 1;
    }
    return { firstSeq: first, lastSeq: last };
  }
}
