import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  MINOR_DIGITS,
  divRound,
  formatAmount,
  formatEnergyKwh,
  formatPrice,
  parseAmount,
  parseEnergyKwh,
  priceFromConfig,
  scaledFromNumber,
  valueOf,
} from '../../../settlement/market/money.ts';
import { CURRENCIES } from '../../../settlement/market/types.ts';

describe('amounts', () => {
  it('has two minor digits for every currency, and 18 for NRG', () => {
    expect(MINOR_DIGITS).toEqual({ THB: 2, USD: 2, EUR: 2, NRG: 18 });
  });

  it('keeps NRG amounts past 64 bits exact', () => {
    expect(parseAmount('1000000000', 'NRG')).toBe(10n ** 27n);
    expect(formatAmount(10n ** 27n + 1n, 'NRG')).toBe('1000000000.000000000000000001');
    expect(() => parseAmount('0.0000000000000000001', 'NRG')).toThrow(/19 decimals; at most 18/);
  });

  it('parses decimal text to minor units', () => {
    expect(parseAmount('12.34', 'THB')).toBe(1234n);
    expect(parseAmount('-0.5', 'USD')).toBe(-50n);
    expect(parseAmount('100', 'EUR')).toBe(10000n);
    expect(parseAmount('0', 'THB')).toBe(0n);
    expect(parseAmount('-0.00', 'THB')).toBe(0n);
    expect(parseAmount('0.01', 'THB')).toBe(1n);
    expect(parseAmount('123456789012345678901234.56', 'THB')).toBe(12345678901234567890123456n);
  });

  it.each([
    ['12.345', /3 decimals; at most 2/],
    ['12.340', /3 decimals/],
    ['', /not a plain decimal/],
    ['+1', /not a plain decimal/],
    [' 1', /not a plain decimal/],
    ['1 ', /not a plain decimal/],
    ['1e3', /not a plain decimal/],
    ['1E3', /not a plain decimal/],
    ['0x10', /not a plain decimal/],
    ['.5', /not a plain decimal/],
    ['5.', /not a plain decimal/],
    ['1,5', /not a plain decimal/],
    ['--1', /not a plain decimal/],
    ['NaN', /not a plain decimal/],
    ['Infinity', /not a plain decimal/],
    ['١٢', /not a plain decimal/],
  ])('refuses %j', (s, msg) => {
    expect(() => parseAmount(s, 'THB')).toThrow(RangeError);
    expect(() => parseAmount(s, 'THB')).toThrow(msg);
  });

  it('formats with exactly the currency decimals', () => {
    expect(formatAmount(1234n, 'THB')).toBe('12.34');
    expect(formatAmount(-5n, 'USD')).toBe('-0.05');
    expect(formatAmount(0n, 'EUR')).toBe('0.00');
    expect(formatAmount(100n, 'THB')).toBe('1.00');
    expect(formatAmount(-100n, 'THB')).toBe('-1.00');
    expect(formatAmount(7n, 'THB')).toBe('0.07');
  });

  it('round-trips minor units through text (property)', () => {
    fc.assert(
      fc.property(fc.bigInt({ min: -(10n ** 30n), max: 10n ** 30n }), fc.constantFrom(...CURRENCIES), (m, c) => {
        const s = formatAmount(m, c);
        expect(s).toMatch(/^-?\d+\.\d{2}$/);
        expect(parseAmount(s, c)).toBe(m);
      }),
    );
  });

  it('round-trips canonical decimal text (property)', () => {
    const canonical = fc
      .tuple(fc.boolean(), fc.bigInt({ min: 0n, max: 10n ** 20n }), fc.integer({ min: 0, max: 99 }))
      .filter(([neg, i, f]) => !(neg && i === 0n && f === 0))
      .map(([neg, i, f]) => `${neg ? '-' : ''}${i}.${String(f).padStart(2, '0')}`);
    fc.assert(
      fc.property(canonical, (s) => {
        expect(formatAmount(parseAmount(s, 'THB'), 'THB')).toBe(s);
      }),
    );
  });
});

describe('energy', () => {
  it('parses kWh to integer Wh', () => {
    expect(parseEnergyKwh('1.5')).toBe(1500);
    expect(parseEnergyKwh(2.125)).toBe(2125);
    expect(parseEnergyKwh('0.001')).toBe(1);
    expect(parseEnergyKwh(0.001)).toBe(1);
    expect(parseEnergyKwh(10)).toBe(10_000);
    expect(parseEnergyKwh('1000000000')).toBe(1e12);
    expect(parseEnergyKwh(1e9)).toBe(1e12);
  });

  it.each([
    ['0', /energy must be positive/],
    [0, /energy must be positive/],
    ['0.000', /energy must be positive/],
    ['-1', /energy must be positive/],
    [-1.5, /energy must be positive/],
    [Number.NaN, /finite/],
    [Number.POSITIVE_INFINITY, /finite/],
    ['1.0005', /at most 3/],
    [0.0005, /more precision/],
    [1e-7, /more precision/],
    [0.1 + 0.2, /more precision/],
    ['1000000000.001', /maximum/],
    [1e10, /maximum/],
    [1e21, /maximum/],
    ['1e3', /not a plain decimal/],
    ['', /not a plain decimal/],
    [' 1', /not a plain decimal/],
    ['+1', /not a plain decimal/],
  ])('refuses %j', (s, msg) => {
    expect(() => parseEnergyKwh(s)).toThrow(RangeError);
    expect(() => parseEnergyKwh(s)).toThrow(msg);
  });

  it('formats Wh as kWh with three decimals', () => {
    expect(formatEnergyKwh(1500)).toBe('1.500');
    expect(formatEnergyKwh(1)).toBe('0.001');
    expect(formatEnergyKwh(0)).toBe('0.000');
    expect(formatEnergyKwh(-2125)).toBe('-2.125');
    expect(() => formatEnergyKwh(1.5)).toThrow(RangeError);
  });

  it('round-trips Wh through kWh text and numbers (property)', () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 1e12 }), (wh) => {
        const s = formatEnergyKwh(wh);
        expect(parseEnergyKwh(s)).toBe(wh);
        expect(parseEnergyKwh(Number(s))).toBe(wh);
      }),
    );
  });
});

describe('prices from config', () => {
  it('reads config floats exactly', () => {
    expect(priceFromConfig(4.0, 'THB')).toBe(400n);
    expect(priceFromConfig(4.25, 'THB')).toBe(425n);
    expect(priceFromConfig(0.1, 'USD')).toBe(10n);
    expect(priceFromConfig(0, 'EUR')).toBe(0n);
    expect(priceFromConfig(1e21, 'THB')).toBe(10n ** 23n);
    expect(formatPrice(400n, 'THB')).toBe('4.00');
    expect(formatPrice(5n, 'THB')).toBe('0.05');
  });

  it('refuses more precision than minor units, negatives and non-numbers', () => {
    expect(() => priceFromConfig(4.005, 'THB')).toThrow(/more precision than 2 decimals/);
    expect(() => priceFromConfig(0.1 + 0.2, 'THB')).toThrow(RangeError);
    expect(() => priceFromConfig(1e-7, 'THB')).toThrow(RangeError);
    expect(() => priceFromConfig(-1, 'THB')).toThrow(/must not be negative/);
    expect(() => priceFromConfig(Number.NaN, 'THB')).toThrow(/finite/);
  });

  it('reads exponent forms exactly', () => {
    expect(scaledFromNumber(1.5e-7, 9, 'x')).toBe(150n);
    expect(scaledFromNumber(-2.5e21, 0, 'x')).toBe(-2_500_000_000_000_000_000_000n);
    expect(() => scaledFromNumber(1.5e-7, 7, 'x')).toThrow(RangeError);
  });
});

describe('value of energy at a price', () => {
  it('multiplies price by Wh / 1000 with the rounding asked for', () => {
    // 4.00 THB/kWh × 1.5 kWh = 6.00 THB, exact.
    expect(valueOf(400n, 1500, 'up')).toBe(600n);
    expect(valueOf(400n, 1500, 'down')).toBe(600n);
    expect(valueOf(400n, 1500, 'half-up')).toBe(600n);
    // 4.77 × 0.001 kWh = 0.477 satang.
    expect(valueOf(477n, 1, 'up')).toBe(1n);
    expect(valueOf(477n, 1, 'down')).toBe(0n);
    expect(valueOf(477n, 1, 'half-up')).toBe(0n);
    // 5 × 0.1 kWh = 0.5: a tie goes up.
    expect(valueOf(5n, 100, 'half-up')).toBe(1n);
    expect(valueOf(5n, 99, 'half-up')).toBe(0n);
    expect(valueOf(0n, 12345, 'up')).toBe(0n);
    expect(() => valueOf(400n, 1.5, 'up')).toThrow(RangeError);
  });

  it('rounds negative results toward +infinity (up) and -infinity (down)', () => {
    // -0.477
    expect(valueOf(-477n, 1, 'up')).toBe(0n);
    expect(valueOf(-477n, 1, 'down')).toBe(-1n);
    expect(valueOf(-477n, 1, 'half-up')).toBe(0n);
    // -0.5: a tie goes toward +infinity. -0.6 → -1.
    expect(valueOf(5n, -100, 'half-up')).toBe(0n);
    expect(valueOf(6n, -100, 'half-up')).toBe(-1n);
    expect(valueOf(400n, -1500, 'down')).toBe(-600n);
  });

  it('brackets the exact value; escrow (up) covers the payment (half-up) (property)', () => {
    fc.assert(
      fc.property(fc.bigInt({ min: 0n, max: 10n ** 12n }), fc.integer({ min: 0, max: 1e12 }), (p, wh) => {
        const exact1000 = p * BigInt(wh); // exact value × 1000
        const up = valueOf(p, wh, 'up');
        const down = valueOf(p, wh, 'down');
        const half = valueOf(p, wh, 'half-up');
        expect(down * 1000n <= exact1000 && exact1000 < (down + 1n) * 1000n).toBe(true);
        expect(up * 1000n >= exact1000 && exact1000 > (up - 1n) * 1000n).toBe(true);
        expect(down <= half && half <= up).toBe(true);
        const err = half * 1000n - exact1000;
        expect(-500n < err && err <= 500n).toBe(true);
      }),
    );
  });

  it('divRound agrees with floor/ceil for any sign (property)', () => {
    fc.assert(
      fc.property(fc.bigInt({ min: -(10n ** 20n), max: 10n ** 20n }), fc.bigInt({ min: 1n, max: 10n ** 10n }), (n, d) => {
        const f = divRound(n, d, 'down');
        const c = divRound(n, d, 'up');
        const h = divRound(n, d, 'half-up');
        expect(f * d <= n && n < (f + 1n) * d).toBe(true);
        expect(c * d >= n && n > (c - 1n) * d).toBe(true);
        // half-up = floor(n/d + 1/2) = floor((2n + d) / 2d)
        expect(h).toBe(divRound(2n * n + d, 2n * d, 'down'));
      }),
    );
    expect(() => divRound(1n, 0n, 'up')).toThrow(RangeError);
  });
});
