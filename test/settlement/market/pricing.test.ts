import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  assertPricingParams,
  indicativePrice,
  priceSignal,
  type PricingParams,
} from '../../../settlement/market/pricing.ts';

/** Defaults: p_balance 4.0 THB, p_con 2.0, k 1.0, min_ratio 0.01. */
const DEFAULTS: PricingParams = { pBalance: 400n, pCon: 200n, k: 1, minRatio: 0.01 };

const energy = fc.integer({ min: 0, max: 1e12 });
const params: fc.Arbitrary<PricingParams> = fc.record({
  pBalance: fc.bigInt({ min: 0n, max: 100_000n }),
  pCon: fc.bigInt({ min: 0n, max: 100_000n }),
  k: fc.double({ min: 0.001, max: 100, noNaN: true }),
  minRatio: fc.double({ min: 1e-6, max: 0.999, noNaN: true }),
});

describe('indicative price, worked examples (defaults)', () => {
  it('is p_balance at balance', () => {
    expect(indicativePrice(1000, 1000, DEFAULTS)).toEqual({ price: 400n, ratio: 1 });
    expect(indicativePrice(7_000_000, 7_000_000, DEFAULTS)).toEqual({ price: 400n, ratio: 1 });
  });

  it('rises when supply is short', () => {
    const { price, ratio } = indicativePrice(500, 1000, DEFAULTS);
    expect(ratio).toBe(0.5);
    expect(price).toBeGreaterThan(400n);
    // 400 + 200·(2/π)·atan(ln 2) = 477.2
    expect(price).toBe(477n);
  });

  it('falls when supply is in surplus', () => {
    const { price, ratio } = indicativePrice(2000, 1000, DEFAULTS);
    expect(ratio).toBe(2);
    expect(price).toBeLessThan(400n);
    expect(price).toBe(323n);
  });

  it('is p_balance with no demand', () => {
    expect(indicativePrice(5000, 0, DEFAULTS)).toEqual({ price: 400n, ratio: 100 });
    expect(indicativePrice(0, 0, DEFAULTS)).toEqual({ price: 400n, ratio: 1 });
  });

  it('is bounded at extreme ratios by the min_ratio clamp, within 200..600', () => {
    // 400 ± 200·(2/π)·atan(ln 100) = 400 ± 172.7
    expect(indicativePrice(0, 1000, DEFAULTS)).toEqual({ price: 573n, ratio: 0.01 });
    expect(indicativePrice(1, 1e12, DEFAULTS)).toEqual({ price: 573n, ratio: 0.01 });
    expect(indicativePrice(10, 1000, DEFAULTS)).toEqual({ price: 573n, ratio: 0.01 });
    expect(indicativePrice(1e12, 1, DEFAULTS)).toEqual({ price: 227n, ratio: 100 });
    for (const [s, d] of [[0, 1], [1, 1e12], [1e12, 1], [1e12, 0]] as const) {
      const { price } = indicativePrice(s, d, DEFAULTS);
      expect(price >= 200n && price <= 600n).toBe(true);
    }
  });

  it('never goes below zero', () => {
    const p = { pBalance: 100n, pCon: 500n, k: 50, minRatio: 1e-6 };
    expect(indicativePrice(1e12, 1, p).price).toBe(0n);
    expect(indicativePrice(1, 1e12, p).price).toBe(600n);
  });

  it('is flat with p_con 0', () => {
    const p = { ...DEFAULTS, pCon: 0n };
    expect(indicativePrice(0, 1000, p).price).toBe(400n);
    expect(indicativePrice(1000, 1, p).price).toBe(400n);
  });
});

describe('indicative price, properties', () => {
  it('is non-increasing in supply for fixed demand', () => {
    fc.assert(
      fc.property(params, energy, energy, energy, (p, demand, s1, s2) => {
        const [lo, hi] = s1 <= s2 ? [s1, s2] : [s2, s1];
        expect(indicativePrice(hi, demand, p).price <= indicativePrice(lo, demand, p).price).toBe(true);
      }),
      { numRuns: 500 },
    );
  });

  it('is non-increasing in supply for the defaults, step by step', () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 1e9 }), fc.integer({ min: 0, max: 1e9 }), (demand, supply) => {
        expect(indicativePrice(supply + 1, demand, DEFAULTS).price <= indicativePrice(supply, demand, DEFAULTS).price).toBe(
          true,
        );
      }),
      { numRuns: 500 },
    );
  });

  it('stays within [p_balance - p_con, p_balance + p_con] and >= 0, with a clamped ratio', () => {
    fc.assert(
      fc.property(params, energy, energy, (p, supply, demand) => {
        const { price, ratio } = indicativePrice(supply, demand, p);
        const lo = p.pBalance - p.pCon > 0n ? p.pBalance - p.pCon : 0n;
        expect(price >= lo && price <= p.pBalance + p.pCon).toBe(true);
        expect(ratio >= p.minRatio && ratio <= 1 / p.minRatio).toBe(true);
      }),
      { numRuns: 500 },
    );
  });

  it('moves the right way: scarcity >= p_balance >= surplus', () => {
    fc.assert(
      fc.property(params, fc.integer({ min: 1, max: 1e12 }), energy, (p, demand, supply) => {
        const { price } = indicativePrice(supply, demand, p);
        if (supply < demand) expect(price >= p.pBalance).toBe(true);
        if (supply > demand) expect(price <= p.pBalance).toBe(true);
        if (supply === demand) expect(price).toBe(p.pBalance);
      }),
      { numRuns: 500 },
    );
  });
});

describe('pricing params', () => {
  it('accepts the defaults', () => {
    expect(() => assertPricingParams(DEFAULTS)).not.toThrow();
  });

  it.each([
    [{ k: 0 }, '[dynamic_pricing] k must be > 0'],
    [{ k: -1 }, '[dynamic_pricing] k must be > 0'],
    [{ k: Number.NaN }, '[dynamic_pricing] k must be > 0'],
    [{ k: Number.POSITIVE_INFINITY }, '[dynamic_pricing] k must be > 0'],
    [{ pCon: -1n }, '[dynamic_pricing] p_con must be >= 0'],
    [{ pBalance: -1n }, '[dynamic_pricing] p_balance must be >= 0'],
    [{ minRatio: 0 }, '[dynamic_pricing] min_ratio must be > 0 and < 1'],
    [{ minRatio: 1 }, '[dynamic_pricing] min_ratio must be > 0 and < 1'],
    [{ minRatio: 1.5 }, '[dynamic_pricing] min_ratio must be > 0 and < 1'],
    [{ minRatio: Number.NaN }, '[dynamic_pricing] min_ratio must be > 0 and < 1'],
  ] as const)('refuses %o', (patch, msg) => {
    const p = { ...DEFAULTS, ...patch };
    expect(() => assertPricingParams(p)).toThrow(RangeError);
    expect(() => assertPricingParams(p)).toThrow(msg);
    expect(() => indicativePrice(1, 1, p)).toThrow(msg);
  });

  it('refuses non-integer or negative energy', () => {
    expect(() => indicativePrice(-1, 10, DEFAULTS)).toThrow(/supply/);
    expect(() => indicativePrice(1, 1.5, DEFAULTS)).toThrow(/demand/);
    expect(() => indicativePrice(Number.NaN, 1, DEFAULTS)).toThrow(RangeError);
  });
});

describe('price signal', () => {
  it('carries the price, its inputs and its validity', () => {
    const t = Date.parse('2026-11-25T10:07:00Z');
    const start = Date.parse('2026-11-25T10:00:00Z');
    expect(priceSignal('bkk-1', 500, 1000, DEFAULTS, t, 60_000, start)).toEqual({
      market: 'bkk-1',
      price: 477n,
      ratio: 0.5,
      supplyWh: 500,
      demandWh: 1000,
      computedAtMs: t,
      validUntilMs: t + 60_000,
      intervalStartMs: start,
    });
    expect(priceSignal('bkk-1', 0, 0, DEFAULTS, t, 1000, null).intervalStartMs).toBeNull();
  });

  it('refuses a non-positive update interval or bad times', () => {
    expect(() => priceSignal('m', 1, 1, DEFAULTS, 0, 0, null)).toThrow(/update interval/);
    expect(() => priceSignal('m', 1, 1, DEFAULTS, 0.5, 10, null)).toThrow(/computedAtMs/);
    expect(() => priceSignal('m', 1, 1, DEFAULTS, 0, 10, Number.NaN)).toThrow(/intervalStartMs/);
  });
});
