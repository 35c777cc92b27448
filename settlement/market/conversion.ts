/**
 * Currency conversion: what a user pays in one currency, what they receive in another, and the
 * platform's fee. Pure arithmetic on bigint minor units; no I/O.
 *
 * Rates are fixed-point bigints with 9 decimals (RATE_SCALE): THB→USD 0.028 is 28_000_000n. Each
 * direction is its own entry, because a platform's buy and sell rates differ and because inverting
 * a fixed-point rate would need a rounding of its own; a pair with no entry is a conversion that is
 * not offered.
 *
 * Rounding is always in the platform's favour, by less than one minor unit per step, and never
 * creates money:
 * - fee = ceil(amount × num / den) in the `from` currency: at least the exact fee, less than one
 *   minor unit above it;
 * - credit = floor((amount - fee) × rate / RATE_SCALE × 10^(digits(to) - digits(from))) in the `to`
 *   currency: at most the exact value, less than one minor unit below it.
 *
 * Ledger postings (posted by the ledger, not here): the conversion crosses currency books through
 * a system conversion account per currency, so each currency's postings still sum to zero:
 *   `from` book: user  -debit,  fee account +fee,  conversion account(from) +converted
 *   `to` book:   conversion account(to) -credit,  user +credit
 * where debit = fee + converted. The conversion accounts carry the platform's position in each
 * currency (what it took in one book against what it paid out in the other); nothing posts across
 * books, so no book's total ever changes.
 */
import { CURRENCIES, type Currency, type Minor } from './types.ts';
import { MINOR_DIGITS, divRound, scaledFromNumber } from './money.ts';

export const RATE_DECIMALS = 9;
export const RATE_SCALE = 10n ** 9n;

/** An ordered pair of distinct currencies, as written in config: "THB_USD". */
export type CurrencyPair = {
  [F in Currency]: { [T in Currency]: T extends F ? never : `${F}_${T}` }[Currency];
}[Currency];

/**
 * Conversion rates by ordered pair: units of the `to` currency per unit of the `from` currency
 * (major units), × RATE_SCALE. THB_USD 0.028 → 28_000_000n. A missing pair is not offered.
 */
export interface Rates extends Readonly<Partial<Record<CurrencyPair, bigint>>> {}

/** A fee as an exact fraction of the amount: 0.001 → { num: 1n, den: 1000n }. */
export interface FeeFraction {
  num: bigint;
  den: bigint;
}

export interface Conversion {
  /** What the user pays, in `from`: the whole amount (= fee + converted). */
  debit: Minor;
  /** What the user receives, in `to`. */
  credit: Minor;
  /** The platform's fee, in `from`. */
  fee: Minor;
  /** The part of the debit that is converted (amount - fee), in `from`. */
  converted: Minor;
}

function isCurrency(s: string): s is Currency {
  return (CURRENCIES as readonly string[]).includes(s);
}

export function pairOf(from: Currency, to: Currency): CurrencyPair {
  if (from === to) throw new RangeError(`cannot convert ${from} to itself`);
  return `${from}_${to}` as CurrencyPair;
}

/**
 * Rates from a config table such as `{ THB_USD: 0.028, USD_THB: 35.5 }`. Refuses keys that are not
 * two distinct known currencies joined by '_', non-positive rates and rates with more than 9
 * decimals (RangeError). Values are read exactly from their decimal form.
 */
export function ratesFromConfig(table: Record<string, number>): Rates {
  const rates: Partial<Record<CurrencyPair, bigint>> = {};
  for (const [key, value] of Object.entries(table)) {
    const m = /^([A-Z]{3})_([A-Z]{3})$/.exec(key);
    const from = m?.[1];
    const to = m?.[2];
    if (from === undefined || to === undefined) {
      throw new RangeError(`conversion rate key ${JSON.stringify(key)} must look like THB_USD`);
    }
    if (!isCurrency(from)) throw new RangeError(`conversion rate ${key}: unknown currency ${from}`);
    if (!isCurrency(to)) throw new RangeError(`conversion rate ${key}: unknown currency ${to}`);
    if (from === to) throw new RangeError(`conversion rate ${key}: the currencies must differ`);
    if (typeof value !== 'number') throw new RangeError(`conversion rate ${key} must be a number`);
    const rate = scaledFromNumber(value, RATE_DECIMALS, `conversion rate ${key}`);
    if (rate <= 0n) throw new RangeError(`conversion rate ${key} must be > 0, got ${value}`);
    rates[pairOf(from, to)] = rate;
  }
  return rates;
}

function gcd(a: bigint, b: bigint): bigint {
  while (b !== 0n) [a, b] = [b, a % b];
  return a;
}

/**
 * A fee fraction from a config number, exactly from its decimal form and reduced:
 * 0.001 → { num: 1n, den: 1000n }, 0.0025 → { num: 1n, den: 400n }, 0 → { num: 0n, den: 1n }.
 * Refuses negatives, 1 or more, non-finite numbers and more than 9 decimals (RangeError).
 */
export function feeFromConfig(fraction: number): FeeFraction {
  const scaled = scaledFromNumber(fraction, RATE_DECIMALS, 'conversion fee');
  if (scaled < 0n || scaled >= RATE_SCALE) throw new RangeError(`conversion fee must be >= 0 and < 1, got ${fraction}`);
  if (scaled === 0n) return { num: 0n, den: 1n };
  const g = gcd(scaled, RATE_SCALE);
  return { num: scaled / g, den: RATE_SCALE / g };
}

function assertFee(f: FeeFraction): void {
  if (f.den <= 0n || f.num < 0n || f.num >= f.den) {
    throw new RangeError(`fee fraction must be >= 0 and < 1 with a positive denominator, got ${f.num}/${f.den}`);
  }
}

/**
 * Converts `amount` (minor units of `from`) to `to`: the user pays debit = amount; the fee,
 * ceil(amount × num / den), stays in `from`; the rest is converted at the pair's rate and rounded
 * down. Refuses amount <= 0, from === to, a pair with no rate, and an amount so small that nothing
 * would be credited (RangeError).
 */
export function convert(
  amount: Minor,
  from: Currency,
  to: Currency,
  rates: Rates,
  feeFraction: FeeFraction,
): Conversion {
  if (amount <= 0n) throw new RangeError(`conversion amount must be > 0, got ${amount}`);
  const pair = pairOf(from, to);
  const rate = rates[pair];
  if (rate === undefined) throw new RangeError(`no conversion rate for ${pair}`);
  if (rate <= 0n) throw new RangeError(`conversion rate ${pair} must be > 0`);
  assertFee(feeFraction);

  const fee = divRound(amount * feeFraction.num, feeFraction.den, 'up');
  const converted = amount - fee;
  // credit = converted × rate / RATE_SCALE × 10^(digits(to) - digits(from)), one floor at the end.
  const shift = MINOR_DIGITS[to] - MINOR_DIGITS[from];
  const num = converted * rate * (shift > 0 ? 10n ** BigInt(shift) : 1n);
  const den = RATE_SCALE * (shift < 0 ? 10n ** BigInt(-shift) : 1n);
  const credit = divRound(num, den, 'down');
  if (credit <= 0n) throw new RangeError(`amount ${amount} ${from} is too small to convert to ${to}: it would credit nothing`);
  return { debit: amount, credit, fee, converted };
}
