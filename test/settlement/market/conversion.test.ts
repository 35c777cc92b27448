import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  RATE_SCALE,
  convert,
  feeFromConfig,
  ratesFromConfig,
  type Conversion,
  type CurrencyPair,
  type FeeFraction,
  type Rates,
} from '../../../settlement/market/conversion.ts';
import { CURRENCIES, type Currency } from '../../../settlement/market/types.ts';

const RATES = ratesFromConfig({ THB_USD: 0.028, USD_THB: 35.5, EUR_USD: 1.08, USD_EUR: 0.92, THB_EUR: 0.026, EUR_THB: 38.25 });
const FEE = feeFromConfig(0.001);

describe('rates from config', () => {
  it('reads fixed-point rates exactly', () => {
    expect(RATES.THB_USD).toBe(28_000_000n);
    expect(RATES.USD_THB).toBe(35_500_000_000n);
    expect(ratesFromConfig({ THB_USD: 0.123456789 }).THB_USD).toBe(123_456_789n);
    expect(ratesFromConfig({ THB_USD: 1e-9 }).THB_USD).toBe(1n);
    expect(ratesFromConfig({}).THB_USD).toBeUndefined();
  });

  it.each([
    [{ THB_USD: 0.1234567891 }, /more precision than 9 decimals/],
    [{ THB_USD: 0 }, /must be > 0/],
    [{ THB_USD: -1 }, /must be > 0/],
    [{ THB_USD: Number.NaN }, /finite/],
    [{ THB_JPY: 1 }, /unknown currency JPY/],
    [{ XXX_USD: 1 }, /unknown currency XXX/],
    [{ THB_THB: 1 }, /must differ/],
    [{ 'THB-USD': 1 }, /must look like THB_USD/],
    [{ thb_usd: 1 }, /must look like THB_USD/],
  ])('refuses %o', (table, msg) => {
    expect(() => ratesFromConfig(table)).toThrow(RangeError);
    expect(() => ratesFromConfig(table)).toThrow(msg);
  });
});

describe('fee from config', () => {
  it('parses the decimal exactly and reduces it', () => {
    expect(feeFromConfig(0.001)).toEqual({ num: 1n, den: 1000n });
    expect(feeFromConfig(0.0025)).toEqual({ num: 1n, den: 400n });
    expect(feeFromConfig(0.015)).toEqual({ num: 3n, den: 200n });
    expect(feeFromConfig(0)).toEqual({ num: 0n, den: 1n });
  });

  it('refuses negatives, 1 or more, and too many decimals', () => {
    expect(() => feeFromConfig(-0.001)).toThrow(RangeError);
    expect(() => feeFromConfig(1)).toThrow(RangeError);
    expect(() => feeFromConfig(1e-10)).toThrow(/more precision/);
    expect(() => feeFromConfig(Number.NaN)).toThrow(RangeError);
  });
});

describe('convert, worked examples', () => {
  it('THB 1000.00 to USD at 0.028 with a 0.1% fee', () => {
    // fee = 100 000 × 0.001 = 100 satang; 99 900 satang × 0.028 = 2797.2 cents → 2797.
    expect(convert(100_000n, 'THB', 'USD', RATES, FEE)).toEqual({ debit: 100_000n, fee: 100n, converted: 99_900n, credit: 2797n });
  });

  it('rounds the fee up and the credit down', () => {
    // fee = ceil(1234 × 0.001) = ceil(1.234) = 2; 1232 × 0.028 = 34.496 → 34.
    expect(convert(1234n, 'THB', 'USD', RATES, FEE)).toEqual({ debit: 1234n, fee: 2n, converted: 1232n, credit: 34n });
    // USD 10.00 to THB at 35.5: fee 1 cent, 999 × 35.5 = 35464.5 → 35464.
    expect(convert(1000n, 'USD', 'THB', RATES, FEE)).toEqual({ debit: 1000n, fee: 1n, converted: 999n, credit: 35_464n });
  });

  it('charges no fee with a zero fee fraction', () => {
    expect(convert(1000n, 'EUR', 'USD', RATES, feeFromConfig(0))).toEqual({ debit: 1000n, fee: 0n, converted: 1000n, credit: 1080n });
  });

  it('refuses non-positive amounts, same currency, missing pairs, bad fees and dust', () => {
    expect(() => convert(0n, 'THB', 'USD', RATES, FEE)).toThrow(/must be > 0/);
    expect(() => convert(-5n, 'THB', 'USD', RATES, FEE)).toThrow(/must be > 0/);
    expect(() => convert(100n, 'THB', 'THB', RATES, FEE)).toThrow(/to itself/);
    expect(() => convert(100n, 'THB', 'USD', ratesFromConfig({ USD_THB: 35 }), FEE)).toThrow(/no conversion rate for THB_USD/);
    expect(() => convert(100n, 'THB', 'USD', RATES, { num: 1n, den: 0n })).toThrow(/fee fraction/);
    expect(() => convert(100n, 'THB', 'USD', RATES, { num: 1n, den: 1n })).toThrow(/fee fraction/);
    expect(() => convert(100n, 'THB', 'USD', RATES, { num: -1n, den: 10n })).toThrow(/fee fraction/);
    // 1 satang: the fee takes it all. 30 satang × 0.028 = 0.84 cents: nothing to credit.
    expect(() => convert(1n, 'THB', 'USD', RATES, FEE)).toThrow(/too small/);
    expect(() => convert(30n, 'THB', 'USD', RATES, feeFromConfig(0))).toThrow(/too small/);
  });
});

describe('convert, properties', () => {
  const pair = fc
    .tuple(fc.constantFrom(...CURRENCIES), fc.constantFrom(...CURRENCIES))
    .filter(([a, b]) => a !== b) as fc.Arbitrary<[Currency, Currency]>;
  const rate = fc.bigInt({ min: 1n, max: 1000n * RATE_SCALE });
  const fee: fc.Arbitrary<FeeFraction> = fc
    .tuple(fc.bigInt({ min: 1n, max: 10n ** 9n }), fc.bigInt({ min: 0n, max: 10n ** 9n }))
    .map(([den, n]) => ({ num: n % den, den }));
  const amount = fc.bigInt({ min: 1n, max: 10n ** 15n });

  it('debit = fee + converted; fee >= exact fee; credit <= exact value; each loss < 1 minor unit', () => {
    fc.assert(
      fc.property(pair, rate, fee, amount, ([from, to], r, f, a) => {
        const rates: Rates = { [`${from}_${to}` as CurrencyPair]: r };
        let c: Conversion;
        try {
          c = convert(a, from, to, rates, f);
        } catch (e) {
          // Only dust is refused: the exact credit is below one minor unit.
          expect(String(e)).toMatch(/too small/);
          const feeUp = (a * f.num + f.den - 1n) / f.den;
          expect((a - feeUp) * r < RATE_SCALE).toBe(true);
          return;
        }
        expect(c.debit).toBe(a);
        expect(c.debit).toBe(c.fee + c.converted);
        expect(c.credit > 0n && c.fee >= 0n && c.converted >= 0n).toBe(true);
        // Fee: exact fee = a·num/den; fee ≥ exact and fee - exact < 1.
        const feeDiff = c.fee * f.den - a * f.num;
        expect(feeDiff >= 0n && feeDiff < f.den).toBe(true);
        // Credit: exact = converted·rate/RATE_SCALE (digits equal); credit ≤ exact and exact - credit < 1.
        const creditLoss = c.converted * r - c.credit * RATE_SCALE;
        expect(creditLoss >= 0n && creditLoss < RATE_SCALE).toBe(true);
        // Never creates money: the credit is at most the exact value of the whole amount.
        expect(c.credit * RATE_SCALE <= a * r).toBe(true);
      }),
      { numRuns: 1000 },
    );
  });

  it('a bigger amount never credits less (monotone)', () => {
    fc.assert(
      fc.property(amount, amount, (a1, a2) => {
        const [lo, hi] = a1 <= a2 ? [a1, a2] : [a2, a1];
        const credit = (a: bigint) => {
          try {
            return convert(a, 'THB', 'USD', RATES, FEE).credit;
          } catch {
            return 0n;
          }
        };
        expect(credit(hi) >= credit(lo)).toBe(true);
      }),
    );
  });
});
