import { intervalStart, zoneOffsetMs } from '../energy/intervals.ts';
import type { PricingParams } from './pricing.ts';
import type { Currency, PricePerKwh } from './types.ts';

/**
 * A market's trading rules, resolved from `config/settlement.toml` ([dynamic_pricing],
 * [auction], [stable_credits], each overridable per [[markets]] entry). Parsed once at start:
 * prices are bigint minor units per kWh, fractions are parts per million, energy is Wh.
 */
export interface MarketRules {
  currency: Currency;
  pricing: PricingParams & { updateIntervalMs: number };
  auction: {
    /** Length of a delivery interval, and the time between auctions. */
    intervalMinutes: number;
    /** Market hours in the market's time zone, minutes after local midnight; open ≤ t < close. */
    openMinute: number;
    closeMinute: number;
    /** Smallest order, Wh. */
    minVolumeWh: number;
    /** How far a limit price may be from the indicative price, as a fraction in ppm (0.50 → 500 000). */
    maxPriceDeviationPpm: number;
  };
}

export const PPM = 1_000_000;

/** "06:00" → 360; refuses anything but HH:MM on a 24-hour clock ("24:00" allowed for close). */
export function parseClock(s: string): number | undefined {
  const m = /^([01]\d|2[0-4]):([0-5]\d)$/.exec(s);
  if (!m) return undefined;
  const minutes = Number(m[1]) * 60 + Number(m[2]);
  return minutes <= 1440 ? minutes : undefined;
}

/** Minutes after local midnight of instant `t` in `timeZone`. */
export function localMinute(t: number, timeZone: string): number {
  const local = t + zoneOffsetMs(timeZone, t);
  return Math.floor((((local % 86_400_000) + 86_400_000) % 86_400_000) / 60_000);
}

/** Whether orders are taken and auctions run at `t`. */
export function isOpen(rules: MarketRules, timeZone: string, t: number): boolean {
  const m = localMinute(t, timeZone);
  return m >= rules.auction.openMinute && m < rules.auction.closeMinute;
}

export const intervalMs = (rules: MarketRules) => rules.auction.intervalMinutes * 60_000;

/**
 * The auction that runs at the interval boundary T clears delivery interval [T + I, T + 2I):
 * one interval of gate closure between the last order and delivery. So an order for delivery
 * starting D is accepted until D − I, and the earliest delivery open to orders at `t` starts at
 * the second boundary after t.
 */
export function earliestDelivery(rules: MarketRules, timeZone: string, t: number): number {
  const i = intervalMs(rules);
  return intervalStart(t, i, timeZone) + 2 * i;
}

/** The delivery interval the auction at boundary `auctionAtMs` clears. */
export function deliveryOfAuction(rules: MarketRules, auctionAtMs: number): { startMs: number; endMs: number } {
  const i = intervalMs(rules);
  return { startMs: auctionAtMs + i, endMs: auctionAtMs + 2 * i };
}

/** Whether `startMs` is the start of a delivery interval in the market's zone. */
export function isDeliveryStart(rules: MarketRules, timeZone: string, startMs: number): boolean {
  return intervalStart(startMs, intervalMs(rules), timeZone) === startMs;
}

/** Limit price bounds around the indicative price `p`: p × (1 ± deviation), rounded inward. */
export function priceBand(rules: MarketRules, indicative: PricePerKwh): { low: PricePerKwh; high: PricePerKwh } {
  const dev = BigInt(rules.auction.maxPriceDeviationPpm);
  const ppm = BigInt(PPM);
  const low = (indicative * (ppm - dev) + ppm - 1n) / ppm;
  const high = (indicative * (ppm + dev)) / ppm;
  return { low: low < 0n ? 0n : low, high };
}
