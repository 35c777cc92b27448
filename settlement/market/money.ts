/**
 * Money and energy quantities at the market's edges: parsing what people and config files write,
 * formatting what the API shows, and the one multiplication the market does with them (price ×
 * energy). Pure: no I/O.
 *
 * Representation (see types.ts): money is bigint minor units, a price is bigint minor units per
 * kWh, energy is integer Wh. Nothing here goes through a float on the way to an amount: decimal
 * text is parsed digit by digit, and a number from a config file is read through its shortest
 * decimal form (`String(n)`), which is the text its author wrote, so 4.005 stays 4.005 and is
 * refused at two decimals instead of silently becoming 4.00 or 4.01.
 */
import type { Asset, Currency, Minor, PricePerKwh } from './types.ts';

/** Decimal digits of each asset's smallest unit: satang, cents, NRG base units. */
export const MINOR_DIGITS: Record<Asset, number> = { THB: 2, USD: 2, EUR: 2, NRG: 18 };

/** Energy is integer Wh: kWh with exactly three decimals. */
const WH_PER_KWH = 1000;
const ENERGY_DECIMALS = 3;
/** Largest energy accepted in one quantity: 1e9 kWh = 1e12 Wh, far inside the safe integers. */
const MAX_ENERGY_WH = 1e9 * WH_PER_KWH;

/** Plain decimal text: optional '-', digits, optionally '.' and at least one digit. */
const DECIMAL = /^(-?)(\d+)(?:\.(\d+))?$/;

/**
 * `s` × 10^decimals as a bigint, exactly. Refuses (RangeError) anything that is not plain decimal
 * text (whitespace, '+', exponents, '.5', '5.', empty) and more fractional digits than `decimals`,
 * trailing zeros included: "12.340" is not a two-decimal amount.
 */
function parseScaled(s: string, decimals: number, what: string): bigint {
  const m = DECIMAL.exec(s);
  if (!m) throw new RangeError(`${what} ${JSON.stringify(s)} is not a plain decimal number (digits, optional '-' and '.')`);
  const [, sign, int = '', frac = ''] = m;
  if (frac.length > decimals) {
    throw new RangeError(`${what} ${JSON.stringify(s)} has ${frac.length} decimals; at most ${decimals} allowed`);
  }
  const v = BigInt(int + frac.padEnd(decimals, '0'));
  return sign === '-' ? -v : v;
}

/** Shortest decimal form of a finite number, possibly in exponent form ("1e-7", "1.5e+21"). */
const NUMBER_TEXT = /^(-?)(\d+)(?:\.(\d+))?(?:e([+-]\d+))?$/;

/**
 * A config number × 10^decimals as a bigint, exactly, read from its shortest decimal form
 * (`String(n)`, which is what a TOML author typed for any value they would write). Refuses
 * non-finite numbers and numbers that need more than `decimals` fractional digits. Exponent forms
 * that `String` produces for very small or large numbers are read exactly too.
 */
export function scaledFromNumber(n: number, decimals: number, what: string): bigint {
  if (!Number.isFinite(n)) throw new RangeError(`${what} must be a finite number, got ${String(n)}`);
  const text = String(n);
  const m = NUMBER_TEXT.exec(text);
  if (!m) throw new RangeError(`${what} ${text} is not a decimal number`);
  const [, sign, int = '', frac = '', exp = '0'] = m;
  // value = coefficient × 10^-(scale), with scale possibly negative after the exponent.
  let coefficient = BigInt(int + frac);
  let scale = frac.length - Number(exp);
  while (scale > 0 && coefficient !== 0n && coefficient % 10n === 0n) {
    coefficient /= 10n;
    scale--;
  }
  if (coefficient === 0n) scale = 0;
  if (scale > decimals) {
    throw new RangeError(`${what} ${text} has more precision than ${decimals} decimals`);
  }
  const v = coefficient * 10n ** BigInt(decimals - scale);
  return sign === '-' ? -v : v;
}

function digitsOf(currency: Asset): number {
  const d = MINOR_DIGITS[currency];
  if (d === undefined) throw new RangeError(`unknown currency ${String(currency)}`);
  return d;
}

/** Text with exactly `decimals` fractional digits of `v` / 10^decimals. */
function formatScaled(v: bigint, decimals: number): string {
  const neg = v < 0n;
  const abs = neg ? -v : v;
  const unit = 10n ** BigInt(decimals);
  const int = (abs / unit).toString();
  const body = decimals === 0 ? int : `${int}.${(abs % unit).toString().padStart(decimals, '0')}`;
  return neg ? `-${body}` : body;
}

/**
 * Decimal text to minor units: "12.34" → 1234n, "-0.5" → -50n, "100" → 10000n (THB, USD, EUR).
 * Throws RangeError on more decimals than the currency's minor unit, exponents, '+', whitespace,
 * empty or any other text.
 */
export function parseAmount(s: string, currency: Asset): Minor {
  return parseScaled(s, digitsOf(currency), `${currency} amount`);
}

/** Minor units to decimal text with exactly the currency's decimals: 1234n → "12.34", -5n → "-0.05". */
export function formatAmount(m: Minor, currency: Asset): string {
  return formatScaled(m, digitsOf(currency));
}

/**
 * kWh (text or a config number) to integer Wh: "1.5" → 1500, 2.125 → 2125. At most three
 * decimals; a number is read through `String(n)`, so one that is not exactly what it looks like at
 * three decimals (0.0005, 1e-7) is refused. Energy must be positive (zero is refused) and at most
 * 1e9 kWh. Throws RangeError.
 */
export function parseEnergyKwh(s: string | number): number {
  const wh =
    typeof s === 'number'
      ? scaledFromNumber(s, ENERGY_DECIMALS, 'energy (kWh)')
      : parseScaled(s, ENERGY_DECIMALS, 'energy (kWh)');
  if (wh <= 0n) throw new RangeError(`energy must be positive, got ${String(s)} kWh`);
  if (wh > BigInt(MAX_ENERGY_WH)) throw new RangeError(`energy ${String(s)} kWh exceeds the maximum of 1e9 kWh`);
  return Number(wh);
}

/** Integer Wh to kWh text with three decimals: 1500 → "1.500". */
export function formatEnergyKwh(wh: number): string {
  if (!Number.isSafeInteger(wh)) throw new RangeError(`energy must be an integer number of Wh, got ${wh}`);
  return formatScaled(BigInt(wh), ENERGY_DECIMALS);
}

/**
 * A price per kWh from a config number (major units, e.g. 4.0 THB/kWh) to minor units per kWh:
 * 4.0 → 400n, 4.25 → 425n. Refuses more precision than the minor unit (4.005), negatives and
 * non-finite numbers (RangeError). Zero is allowed.
 */
export function priceFromConfig(thbPerKwh: number, currency: Currency): PricePerKwh {
  const p = scaledFromNumber(thbPerKwh, digitsOf(currency), `price (${currency}/kWh)`);
  if (p < 0n) throw new RangeError(`price (${currency}/kWh) must not be negative, got ${thbPerKwh}`);
  return p;
}

/** A price per kWh as major-unit text: 400n → "4.00". */
export function formatPrice(p: PricePerKwh, currency: Currency): string {
  return formatScaled(p, digitsOf(currency));
}

/**
 * How a division that does not come out even is rounded:
 * - 'up': toward +infinity (ceiling),
 * - 'down': toward -infinity (floor),
 * - 'half-up': to the nearest integer, an exact half toward +infinity (floor(x + 1/2)).
 * For non-negative values these are the usual round-up, truncate and commercial half-up.
 */
export type Rounding = 'up' | 'down' | 'half-up';

/** n / d rounded as `rounding` says; d must be positive. */
export function divRound(n: bigint, d: bigint, rounding: Rounding): bigint {
  if (d <= 0n) throw new RangeError('divisor must be positive');
  const q = n / d; // truncates toward zero
  const r = n % d; // sign of n
  const floor = r < 0n ? q - 1n : q;
  if (r === 0n) return q;
  switch (rounding) {
    case 'down':
      return floor;
    case 'up':
      return floor + 1n;
    case 'half-up': {
      // Remainder of the floor division, in [0, d): compare 2·rem with d; a tie goes up.
      const rem = n - floor * d;
      return 2n * rem >= d ? floor + 1n : floor;
    }
  }
}

/**
 * The value of `energyWh` at `priceMinorPerKwh`: price × Wh / 1000, in bigint, rounded once as
 * `rounding` says (see Rounding; 'up' is toward +infinity and 'down' toward -infinity also for
 * negative results).
 *
 * Why the caller chooses: an escrow (the buyer's funds reserved for an order) is rounded 'up', so
 * the reservation always covers the payment computed later from the same price and energy;
 * payments are rounded 'half-up', the nearest minor unit, which is never more than the escrow
 * (half-up ≤ ceiling) and is off from the exact value by at most half a minor unit.
 */
export function valueOf(priceMinorPerKwh: PricePerKwh, energyWh: number, rounding: Rounding): Minor {
  if (!Number.isSafeInteger(energyWh)) throw new RangeError(`energy must be an integer number of Wh, got ${energyWh}`);
  return divRound(priceMinorPerKwh * BigInt(energyWh), BigInt(WH_PER_KWH), rounding);
}
