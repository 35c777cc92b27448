import { randomBytes } from 'node:crypto';
import type { Logger } from 'pino';
import type { Ledger } from '../ledger/ledger.ts';
import { lockMeter } from '../ledger/pg-locks.ts';
import type { MoneyStore, Trx } from '../store/money-store.ts';
import { HOUR_MS, RecStore, type RecRecord } from '../store/rec-store.ts';
import { DEFAULT_REC_RULES, groupHours, type RecRules } from './rules.ts';

/**
 * Minting Renewable Energy Certificates from verified generation, never by hand: per generation
 * or bidirectional meter and UTC hour, the exact export energy (interval energy from counter
 * differences, less what is estimated across gaps) not yet certified becomes one certificate.
 * What each meter-hour has had certified is kept (rec_coverage), so the same Wh is never
 * certified twice: a run that comes again, a second worker, or a late reading that turns
 * estimated energy into exact energy certifies only the difference, as a new certificate.
 *
 * With `[recs] min_volume_wh` above 1, uncertified hours accumulate into one certificate until
 * their energy reaches the minimum, or until the period would pass `max_period_hours`, when
 * what there is is certified anyway (so a small generator still gets a certificate, and no
 * verified Wh waits past the backfill window). The period is then from the first such hour's
 * start to the last one's end.
 *
 * Each certificate names the readings its energy rests on: the meter's last reading at or before
 * the period's start through its first reading at or after the period's end (the counter
 * differences that span it), and their envelopes, so `gtx audit` can re-verify them.
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
      rules?: RecRules;
      log?: Logger;
      /** Each certificate as it is minted (metrics). */
      onMinted?: (rec: RecRecord) => void;
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
    const rules = this.opts.rules ?? DEFAULT_REC_RULES;
    for (const m of meters) {
      const all = await this.recs.uncertifiedHours(m.id, fromMs, toMs);
      const hours = all.slice(0, HOURS_PER_RUN);
      // Hours past the last one read this run may still join its last group: it waits.
      const seenTo = all.length > HOURS_PER_RUN ? hours.at(-1)!.hourStartMs + HOUR_MS : toMs;
      const groups = groupHours(hours.map((h) => ({ hourStartMs: h.hourStartMs, wh: h.exactWh - h.certifiedWh })), rules, seenTo);
      for (const g of groups) {
        const rec = await this.mintHours(m, g, rules, seenTo, now);
        if (rec) {
          minted.push(rec);
          this.opts.onMinted?.(rec);
        }
      }
    }
    if (minted.length) {
      this.opts.log?.info({ event: 'RecsMinted', certificates: minted.length, wh: minted.reduce((a, r) => a + r.volumeWh, 0) }, 'certificates minted from verified generation');
    }
    return { minted };
  }

  /** One certificate for the Wh of `hourStarts` not yet certified, re-read under the lock. */
  private async mintHours(m: Awaited<ReturnType<Ledger['listMeters']>>[number], hourStarts: number[], rules: RecRules, seenTo: number, now: number): Promise<RecRecord | undefined> {
    return this.money.transaction(async (trx) => {
      // PostgreSQL: the meter's lock, which its commits take too, so the energy read here is not
      // changing underneath; SQLite: the coverage write takes the one write lock first.
      if (this.ledger.engine === 'postgres') await lockMeter(m.id).execute(trx);
      const exact = new Map<number, number>();
      let volumeWh = 0;
      for (const h of hourStarts) {
        await this.recs.touchCoverage(trx, m.id, h);
        const { exactWh, certifiedWh } = await this.recs.hourState(trx, m.id, h);
        exact.set(h, exactWh);
        volumeWh += Math.max(0, exactWh - certifiedWh);
      }
      const periodStartMs = hourStarts[0]!;
      const periodEndMs = hourStarts.at(-1)! + HOUR_MS;
      // Another worker got here first, or the minimum is no longer met and the period can still grow.
      if (volumeWh <= 0 || (volumeWh < rules.minVolumeWh && seenTo < periodStartMs + rules.maxPeriodMs)) return undefined;
      const span = await this.readingsSpanning(trx, m.id, periodStartMs, periodEndMs);
      if (!span) return undefined;
      const rec: RecRecord = {
        id: `rec_${randomBytes(9).toString('base64url')}`,
        meter: m.id,
        generatorOwner: m.owner,
        owner: m.owner,
        energySource: m.energySource ?? 'Other',
        market: m.market,
        periodStartMs,
        periodEndMs,
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
      for (const [h, wh] of exact) await this.recs.setCoverage(trx, m.id, h, wh);
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
