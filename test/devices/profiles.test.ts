import { describe, expect, it } from 'vitest';
import { createSimClock } from '../../devices/clock.ts';
import { createProfile, householdProfile, localHour, prosumerProfile, pvProfile } from '../../devices/profiles.ts';

// 2025-06-15 in Bangkok (UTC+7, no DST).
const bangkok = (hour: number, minute = 0) => Date.UTC(2025, 5, 15, hour - 7, minute);
const MINUTE = 60_000;
const day = (start: number) => Array.from({ length: 24 * 60 }, (_, i) => start + i * MINUTE);

describe('localHour', () => {
  it('evaluates the hour in the given zone', () => {
    expect(localHour(bangkok(0))).toBe(0);
    expect(localHour(bangkok(12, 30))).toBe(12.5);
    expect(localHour(Date.UTC(2025, 0, 15, 12, 0), 'Europe/Berlin')).toBe(13);
    expect(localHour(Date.UTC(2025, 6, 15, 12, 0), 'Europe/Berlin')).toBe(14);
  });
  it('refuses an unknown zone', () => {
    expect(() => localHour(0, 'Mars/Olympus')).toThrow(RangeError);
  });
});

describe('pv profile', () => {
  const pv = pvProfile({ seed: 7, ratedW: 4000 });
  it('is zero at local midnight and negative at local noon', () => {
    expect(pv(bangkok(0))).toBe(0);
    expect(pv(bangkok(12))).toBeLessThan(-1000);
    expect(pv(bangkok(12))).toBeGreaterThanOrEqual(-4000);
  });
  it('generates only between about 06:00 and 18:30, never imports', () => {
    for (const t of day(bangkok(0))) {
      const w = pv(t);
      expect(w).toBeLessThanOrEqual(0);
      const h = localHour(t);
      if (h <= 6 || h >= 18.5) expect(w).toBe(0);
    }
    const peak = Math.min(...day(bangkok(0)).map(pv));
    expect(peak).toBeLessThan(-3000);
  });
  it('scales with ratedW and follows the time zone', () => {
    const big = pvProfile({ seed: 7, ratedW: 8000 });
    expect(big(bangkok(12))).toBeCloseTo(2 * pv(bangkok(12)), 6);
    // Bangkok noon is 01:00 in New York: night there.
    expect(pvProfile({ timeZone: 'America/New_York' })(bangkok(12))).toBe(0);
  });
});

describe('household profile', () => {
  const load = householdProfile({ seed: 3 });
  const at = (h: number) => load(bangkok(h));
  it('imports all day: ~250 W at night, peaks in the morning and evening up to ~2.5 kW', () => {
    const values = day(bangkok(0)).map(load);
    expect(Math.min(...values)).toBeGreaterThan(0);
    expect(Math.max(...values)).toBeLessThan(3000);
    expect(at(3)).toBeGreaterThan(150);
    expect(at(3)).toBeLessThan(400);
    expect(at(7)).toBeGreaterThan(1000);
    expect(at(19.5)).toBeGreaterThan(1800);
    expect(at(19.5)).toBeGreaterThan(at(15));
  });
  it('is deterministic for a seed and differs between seeds', () => {
    const again = householdProfile({ seed: 3 });
    const other = householdProfile({ seed: 4 });
    const times = day(bangkok(0));
    expect(times.map(again)).toEqual(times.map(load));
    expect(times.map(other)).not.toEqual(times.map(load));
  });
});

describe('prosumer profile', () => {
  it('exports around noon and imports in the evening', () => {
    const net = prosumerProfile({ seed: 5, ratedW: 6000 });
    expect(net(bangkok(12))).toBeLessThan(0);
    expect(net(bangkok(20))).toBeGreaterThan(0);
    expect(net(bangkok(0))).toBe(householdProfile({ seed: 5 })(bangkok(0)));
  });
  it('is what createProfile builds by name', () => {
    const t = bangkok(13, 17);
    expect(createProfile('prosumer', { seed: 9 })(t)).toBe(prosumerProfile({ seed: 9 })(t));
    expect(createProfile('pv', { seed: 9 })(t)).toBe(pvProfile({ seed: 9 })(t));
  });
});

describe('createSimClock', () => {
  it('runs speed× real time from start', async () => {
    const clock = createSimClock({ speed: 3600, start: 1_000_000 });
    expect(clock.now()).toBeGreaterThanOrEqual(1_000_000);
    const before = clock.now();
    const realStart = performance.now();
    await new Promise((r) => setTimeout(r, 50));
    const real = performance.now() - realStart;
    const simulated = clock.now() - before;
    expect(simulated / real).toBeGreaterThan(3000);
    expect(simulated / real).toBeLessThan(4000);
  });
  it('defaults to now at real speed and refuses a bad speed', () => {
    const clock = createSimClock({ speed: 1 });
    expect(Math.abs(clock.now() - Date.now())).toBeLessThan(50);
    expect(() => createSimClock({ speed: 0 })).toThrow(/positive/);
  });
});
