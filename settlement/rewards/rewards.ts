import type { Logger } from 'pino';
import { zoneOffsetMs } from '../energy/intervals.ts';
import type { Ledger } from '../ledger/ledger.ts';
import { InsufficientFunds, move, ownerAccount, systemAccount } from '../market/accounts.ts';
import { NRG } from '../market/types.ts';
import type { Market } from '../registry/registry.ts';
import type { MoneyStore } from '../store/money-store.ts';
import { LOOKBACK_DAYS, previousDate, savingsOf, type HourUsage, type LocalDate } from './baseline.ts';

/**
 * Conservation rewards: once a local day is over (and its readings are in), every consumption
 * meter whose exact import stayed below its baseline (baseline.ts) is paid rate × kWh saved in
 * NRG from the incentive pool, to its owner. One payment per meter and day, claimed by its row
 * (reward_payments) in the same transaction as the transfer, so a second run or worker pays
 * nothing; each payment keeps its hours, baselines and actuals.
 */
export interface RewardRules {
  /** NRG base units per kWh saved ([rewards] rate, default 0.1 NRG). */
  ratePerKwh: bigint;
  /** Comparable days in a baseline ([rewards] baseline_days, default 10). */
  baselineDays: number;
}

const DAY_MS = 86_400_000;
const HOUR_MS = 3_600_000;

/** The local date of instant `t` in `timeZone`. */
export function localDate(t: number, timeZone: string): LocalDate {
  return new Date(t + zoneOffsetMs(timeZone, t)).toISOString().slice(0, 10);
}

/** UTC ms of local midnight starting `date` in `timeZone`. */
export function localMidnight(date: LocalDate, timeZone: string): number {
  const guess = Date.parse(`${date}T00:00:00Z`);
  return guess - zoneOffsetMs(timeZone, guess - zoneOffsetMs(timeZone, guess));
}

export class RewardPayer {
  constructor(
    private readonly ledger: Ledger,
    private readonly money: MoneyStore,
    private readonly opts: {
      rules: (market: string) => RewardRules;
      holidays: (market: string) => ReadonlySet<string>;
      now: () => number;
      /** A day is paid once it ended this long ago ([ingest] gap_grace_s + a minute). */
      settleMs: number;
      log?: Logger;
      /** Each payment made (metrics). */
      onPaid?: (market: string) => void;
    },
  ) {}

  /** Pays, per market, the last two local days that have settled (idempotent). */
  async payDue(markets: readonly Market[]): Promise<{ paid: number }> {
    let paid = 0;
    const now = this.opts.now();
    for (const m of markets) {
      const last = localDate(now - this.opts.settleMs, m.timeZone);
      for (const day of [previousDate(last, 2), previousDate(last, 1)]) paid += (await this.payDay(m, day)).paid;
    }
    return { paid };
  }

  async payDay(market: Market, day: LocalDate): Promise<{ paid: number }> {
    const rules = this.opts.rules(market.id);
    const holidays = this.opts.holidays(market.id);
    const dayStart = localMidnight(day, market.timeZone);
    const dayEnd = localMidnight(previousDate(day, -1), market.timeZone);
    if (dayEnd + this.opts.settleMs > this.opts.now()) return { paid: 0 };
    const fromMs = dayStart - (LOOKBACK_DAYS + 1) * DAY_MS;
    let paid = 0;
    for (const m of (await this.ledger.listMeters({ market: market.id })).filter((x) => x.role === 'consumption')) {
      const done = await this.ledger.db.selectFrom('reward_payments').select('day').where('meter', '=', m.id).where('day', '=', day).executeTakeFirst();
      if (done) continue;
      const rows = await this.ledger.db
        .selectFrom('interval_energy')
        .select(['start_ms', 'import_wh', 'est_import_wh'])
        .where('meter', '=', m.id)
        .where('start_ms', '>=', fromMs)
        .where('start_ms', '<', dayEnd)
        .execute();
      const usage = new Map<LocalDate, Map<number, HourUsage>>();
      for (const r of rows) {
        const t = Number(r.start_ms);
        const local = t + zoneOffsetMs(market.timeZone, t);
        const d = new Date(local).toISOString().slice(0, 10);
        const hour = Math.floor((local % DAY_MS) / HOUR_MS);
        const byHour = usage.get(d) ?? new Map<number, HourUsage>();
        usage.set(d, byHour);
        const h = byHour.get(hour) ?? { importWh: 0, estimated: false };
        byHour.set(hour, { importWh: h.importWh + Number(r.import_wh), estimated: h.estimated || Number(r.est_import_wh) > 0 });
      }
      const hours = savingsOf(day, usage, holidays, rules.baselineDays);
      if (hours.length === 0) continue; // no exact usage with a baseline: nothing to pay, nothing to mark
      const savedWh = hours.reduce((a, h) => a + h.savedWh, 0);
      const amount = (BigInt(savedWh) * rules.ratePerKwh) / 1000n;
      try {
        const claimed = await this.money.transaction(async (trx) => {
          const r = await trx
            .insertInto('reward_payments')
            .values({ meter: m.id, day, owner: m.owner, saved_wh: savedWh, amount: amount.toString(), details: JSON.stringify(hours), paid_at_ms: this.opts.now() })
            .onConflict((oc) => oc.doNothing())
            .executeTakeFirst();
          if (Number(r.numInsertedOrUpdatedRows ?? 0n) !== 1) return false;
          if (amount > 0n) {
            await this.money.apply(trx, [move('reward', { kind: 'reward', id: `${m.id}/${day}` }, systemAccount('incentives', NRG), ownerAccount(m.owner, NRG), NRG, amount, `${savedWh} Wh saved on ${day}`)], this.opts.now());
          }
          return true;
        });
        if (claimed && amount > 0n) {
          paid++;
          this.opts.onPaid?.(market.id);
        }
      } catch (e) {
        if (!(e instanceof InsufficientFunds)) throw e;
        this.opts.log?.error({ job: 'rewards', meter: m.id, day, amount: amount.toString() }, 'incentive pool cannot pay this reward; it is tried again at the next run');
      }
    }
    if (paid) this.opts.log?.info({ event: 'RewardsPaid', market: market.id, day, payments: paid }, 'conservation rewards paid');
    return { paid };
  }
}
