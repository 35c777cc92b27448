/**
 * Dynamic pricing: the indicative price a market publishes from its current supply and demand.
 * Pure: no I/O, no clock (the caller passes the time).
 *
 *   R     = supply / demand, clamped to [minRatio, 1 / minRatio]
 *   price = pBalance + pCon · (2/π) · atan(k · ln(1/R))
 *
 * At balance (R = 1) ln(1/R) = 0 and the price is pBalance. Scarcity (R < 1: less supply than
 * demand) makes ln(1/R) positive and raises the price; surplus (R > 1) makes it negative and lowers
 * the price. (2/π)·atan(·) lies in (-1, 1), so the price stays within pBalance ± pCon; k sets how
 * steeply it reacts around balance, and the clamp on R (minRatio) caps how far it goes at extreme
 * imbalance.
 *
 * Why ln(1/R) and not ln(R): the reference implementation computes atan(k · ln(R)), which with
 * R = supply/demand raises the price when there is a surplus and lowers it when energy is scarce,
 * the opposite of the signal a market needs (scarce energy should cost more, to draw out supply
 * and defer demand). ln(1/R) = -ln(R) fixes the direction and keeps everything else.
 *
 * Floats: atan and ln need them, so the formula is evaluated in float, only inside this function,
 * and its output is rounded once to a whole minor unit (half away from zero) and returned as a
 * bigint price like every other price in the market; nothing downstream sees a float price. The
 * result is also clamped to [pBalance - pCon, pBalance + pCon] and to >= 0, which float error
 * and rounding cannot then escape.
 */
import type { PricePerKwh } from './types.ts';

export interface PricingParams {
  /** Price at balance (R = 1), minor units per kWh; config `p_balance`. */
  pBalance: PricePerKwh;
  /** Largest move away from pBalance, minor units per kWh; config `p_con`. */
  pCon: PricePerKwh;
  /** Steepness around balance; config `k`. */
  k: number;
  /** Clamp of the supply/demand ratio to [minRatio, 1/minRatio]; config `min_ratio`. */
  minRatio: number;
}

/** Throws RangeError naming the config key: `[dynamic_pricing] k must be > 0`. */
export function assertPricingParams(p: PricingParams): void {
  const fail = (msg: string): never => {
    throw new RangeError(`[dynamic_pricing] ${msg}`);
  };
  if (typeof p.pBalance !== 'bigint' || p.pBalance < 0n) fail('p_balance must be >= 0');
  if (typeof p.pCon !== 'bigint' || p.pCon < 0n) fail('p_con must be >= 0');
  if (!Number.isFinite(p.k) || !(p.k > 0)) fail('k must be > 0');
  if (!Number.isFinite(p.minRatio) || !(p.minRatio > 0 && p.minRatio < 1)) fail('min_ratio must be > 0 and < 1');
}

function assertEnergy(wh: number, what: string): void {
  if (!Number.isSafeInteger(wh) || wh < 0) throw new RangeError(`${what} must be a non-negative integer number of Wh, got ${wh}`);
}

/**
 * The indicative price for `supplyWh` offered against `demandWh` wanted, and the ratio R used.
 *
 * No demand: there is no buyer for a price to address, so the price is the neutral pBalance. The
 * ratio is then reported as 1/minRatio (the clamped surplus) when there is supply, and 1 when
 * there is neither supply nor demand (nothing to compare: treated as balance). No supply with
 * demand is R = 0, clamped to minRatio: the highest price.
 */
export function indicativePrice(
  supplyWh: number,
  demandWh: number,
  p: PricingParams,
): { price: PricePerKwh; ratio: number } {
  assertPricingParams(p);
  assertEnergy(supplyWh, 'supply');
  assertEnergy(demandWh, 'demand');
  if (demandWh === 0) return { price: p.pBalance, ratio: supplyWh > 0 ? 1 / p.minRatio : 1 };

  const ratio = Math.min(Math.max(supplyWh / demandWh, p.minRatio), 1 / p.minRatio);
  const scarcity = -Math.log(ratio); // = ln(1/R): > 0 when supply is short
  const exact = Number(p.pBalance) + Number(p.pCon) * (2 / Math.PI) * Math.atan(p.k * scarcity);
  // Half away from zero; the value is clamped to >= 0 below anyway.
  const rounded = BigInt(Math.sign(exact) * Math.round(Math.abs(exact)));

  const lo = p.pBalance - p.pCon > 0n ? p.pBalance - p.pCon : 0n;
  const hi = p.pBalance + p.pCon;
  const price = rounded < lo ? lo : rounded > hi ? hi : rounded;
  return { price, ratio };
}

/** A published price: what it is, what it was computed from, and how long it holds. */
export interface PriceSignal {
  market: string;
  price: PricePerKwh;
  ratio: number;
  supplyWh: number;
  demandWh: number;
  computedAtMs: number;
  /** computedAtMs + the update interval: the next signal is due by then. */
  validUntilMs: number;
  /** The delivery interval the supply and demand belong to; null = the market as a whole. */
  intervalStartMs: number | null;
}

export function priceSignal(
  market: string,
  supplyWh: number,
  demandWh: number,
  params: PricingParams,
  computedAtMs: number,
  updateIntervalMs: number,
  intervalStartMs: number | null,
): PriceSignal {
  if (!Number.isSafeInteger(computedAtMs)) throw new RangeError(`computedAtMs must be an integer, got ${computedAtMs}`);
  if (!Number.isSafeInteger(updateIntervalMs) || updateIntervalMs <= 0) {
    throw new RangeError(`update interval must be a positive integer number of ms, got ${updateIntervalMs}`);
  }
  if (intervalStartMs !== null && !Number.isSafeInteger(intervalStartMs)) {
    throw new RangeError(`intervalStartMs must be an integer or null, got ${intervalStartMs}`);
  }
  const { price, ratio } = indicativePrice(supplyWh, demandWh, params);
  return {
    market,
    price,
    ratio,
    supplyWh,
    demandWh,
    computedAtMs,
    validUntilMs: computedAtMs + updateIntervalMs,
    intervalStartMs,
  };
}
