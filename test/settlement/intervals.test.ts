import { describe, expect, it } from 'vitest';
import { apportion, intervalStart, splitIntoIntervals, zoneOffsetMs } from '../../settlement/energy/intervals.ts';

const Q = 15 * 60_000;
const t = (iso: string) => Date.parse(iso);

describe('interval energy', () => {
  it('knows zone offsets, including half-hour zones and DST', () => {
    expect(zoneOffsetMs('Asia/Bangkok', t('2026-11-25T00:00:00Z'))).toBe(7 * 3600_000);
    expect(zoneOffsetMs('Asia/Kolkata', t('2026-11-25T00:00:00Z'))).toBe(5.5 * 3600_000);
    expect(zoneOffsetMs('Europe/Berlin', t('2026-07-01T00:00:00Z'))).toBe(2 * 3600_000);
    expect(zoneOffsetMs('Europe/Berlin', t('2026-01-01T00:00:00Z'))).toBe(3600_000);
  });

  it('aligns intervals in the market zone', () => {
    expect(intervalStart(t('2026-11-25T10:07:13.500Z'), Q, 'Asia/Bangkok')).toBe(t('2026-11-25T10:00:00Z'));
    // Nepal is UTC+5:45: its quarter hours start at :00 local = :15 UTC.
    expect(intervalStart(t('2026-11-25T10:20:00Z'), Q, 'Asia/Kathmandu')).toBe(t('2026-11-25T10:15:00Z'));
    // Hourly intervals in India start at :30 UTC.
    expect(intervalStart(t('2026-11-25T10:20:00Z'), 3600_000, 'Asia/Kolkata')).toBe(t('2026-11-25T09:30:00Z'));
    expect(intervalStart(t('2026-11-25T10:15:00Z'), Q, 'Asia/Bangkok')).toBe(t('2026-11-25T10:15:00Z'));
  });

  it('apportions integers exactly', () => {
    expect(apportion(10, [1, 1, 1])).toEqual([4, 3, 3]);
    expect(apportion(0, [5, 5])).toEqual([0, 0]);
    expect(apportion(7, [0, 0])).toEqual([0, 7]);
    const big = apportion(9_000_000_000_000, [1, 2, 3, 4]);
    expect(big.reduce((a, b) => a + b, 0)).toBe(9_000_000_000_000);
  });

  it('keeps a span inside one interval whole', () => {
    const r = splitIntoIntervals(
      { tsMs: t('2026-11-25T10:01:00Z'), importWh: 100, exportWh: 5 },
      { tsMs: t('2026-11-25T10:06:00Z'), importWh: 160, exportWh: 5 },
      Q,
      'Asia/Bangkok',
    );
    expect(r).toEqual([{ startMs: t('2026-11-25T10:00:00Z'), importWh: 60, exportWh: 0 }]);
  });

  it('splits a straddling span by time', () => {
    // 10:10 → 10:40: 5 min in the 10:00 interval, 15 in 10:15, 10 in 10:30.
    const r = splitIntoIntervals(
      { tsMs: t('2026-11-25T10:10:00Z'), importWh: 0, exportWh: 1000 },
      { tsMs: t('2026-11-25T10:40:00Z'), importWh: 600, exportWh: 1300 },
      Q,
      'Asia/Bangkok',
    );
    expect(r).toEqual([
      { startMs: t('2026-11-25T10:00:00Z'), importWh: 100, exportWh: 50 },
      { startMs: t('2026-11-25T10:15:00Z'), importWh: 300, exportWh: 150 },
      { startMs: t('2026-11-25T10:30:00Z'), importWh: 200, exportWh: 100 },
    ]);
  });

  it('puts a span ending on a boundary in the interval that ends there', () => {
    const r = splitIntoIntervals(
      { tsMs: t('2026-11-25T10:05:00Z'), importWh: 0, exportWh: 0 },
      { tsMs: t('2026-11-25T10:15:00Z'), importWh: 10, exportWh: 0 },
      Q,
      'Asia/Bangkok',
    );
    expect(r).toEqual([{ startMs: t('2026-11-25T10:00:00Z'), importWh: 10, exportWh: 0 }]);
  });

  it('never loses or invents a watt-hour', () => {
    let seed = 42;
    const random = () => ((seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31);
    for (let i = 0; i < 200; i++) {
      const a = t('2026-11-25T00:00:00Z') + Math.floor(random() * 86_400_000);
      const b = a + 1 + Math.floor(random() * 4 * 3600_000);
      const di = Math.floor(random() * 100_000);
      const de = Math.floor(random() * 100_000);
      const r = splitIntoIntervals({ tsMs: a, importWh: 5, exportWh: 7 }, { tsMs: b, importWh: 5 + di, exportWh: 7 + de }, Q, 'Asia/Bangkok');
      expect(r.reduce((s, x) => s + x.importWh, 0)).toBe(di);
      expect(r.reduce((s, x) => s + x.exportWh, 0)).toBe(de);
      for (const x of r) expect(x.startMs % Q).toBe(0);
    }
  });

  it('refuses counters that go backwards', () => {
    expect(() =>
      splitIntoIntervals({ tsMs: 0, importWh: 10, exportWh: 0 }, { tsMs: 1000, importWh: 9, exportWh: 0 }, Q, 'UTC'),
    ).toThrow(/backwards/);
  });
});
