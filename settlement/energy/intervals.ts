/**
 * Verified energy per interval from cumulative counters. Two consecutive readings of a meter
 * bound an energy delta; it is spread over the intervals the span touches in proportion to
 * time, in integer Wh that add up exactly to the delta (largest-remainder rounding).
 * Intervals are aligned in the market's time zone.
 */
export interface CounterSample {
  tsMs: number;
  importWh: number;
  exportWh: number;
}

export interface IntervalEnergy {
  /** UTC ms of the interval's start (aligned in the market's zone). */
  startMs: number;
  importWh: number;
  exportWh: number;
}

export const DEFAULT_INTERVAL_MS = 15 * 60_000;

const offsetCache = new Map<string, Intl.DateTimeFormat>();

// Offsets change only at transitions, which fall on quarter hours in every zone: one
// Intl lookup per zone and quarter hour instead of one per call (ingest calls this a lot).
const QUARTER_MS = 15 * 60_000;
const offsetMemo = new Map<string, Map<number, number>>();

/** The zone's UTC offset in ms at instant `t` (e.g. +7 h for Asia/Bangkok). */
export function zoneOffsetMs(timeZone: string, t: number): number {
  let zone = offsetMemo.get(timeZone);
  if (!zone) offsetMemo.set(timeZone, (zone = new Map()));
  const quarter = Math.floor(t / QUARTER_MS);
  let off = zone.get(quarter);
  if (off === undefined) {
    if (zone.size > 100_000) zone.clear();
    off = lookupOffset(timeZone, quarter * QUARTER_MS);
    zone.set(quarter, off);
  }
  return off;
}

function lookupOffset(timeZone: string, t: number): number {
  let fmt = offsetCache.get(timeZone);
  if (!fmt) {
    fmt = new Intl.DateTimeFormat('en-US', {
      timeZone,
      hourCycle: 'h23',
      year: 'numeric',
      month: 'numeric',
      day: 'numeric',
      hour: 'numeric',
      minute: 'numeric',
      second: 'numeric',
    });
    offsetCache.set(timeZone, fmt);
  }
  const p: Record<string, number> = {};
  for (const part of fmt.formatToParts(new Date(t))) if (part.type !== 'literal') p[part.type] = Number(part.value);
  const asUtc = Date.UTC(p.year!, p.month! - 1, p.day!, p.hour!, p.minute!, p.second!);
  return asUtc - Math.floor(t / 1000) * 1000;
}

/** Start of the interval holding `t`, aligned to multiples of `intervalMs` in local time. */
export function intervalStart(t: number, intervalMs: number, timeZone: string): number {
  const off = zoneOffsetMs(timeZone, t);
  const local = t + off;
  return local - (((local % intervalMs) + intervalMs) % intervalMs) - off;
}

/** Splits `total` into integer parts proportional to `weights`, summing exactly to `total`. */
export function apportion(total: number, weights: number[]): number[] {
  if (weights.length === 1) return [total];
  const sum = weights.reduce((a, b) => a + b, 0);
  if (sum <= 0) return weights.map((_, i) => (i === weights.length - 1 ? total : 0));
  const T = BigInt(total);
  const S = BigInt(sum);
  const parts = weights.map((w) => (T * BigInt(w)) / S);
  const rems = weights.map((w, i) => ({ i, r: (T * BigInt(w)) % S }));
  let left = T - parts.reduce((a, b) => a + b, 0n);
  rems.sort((a, b) => (a.r === b.r ? a.i - b.i : a.r > b.r ? -1 : 1));
  for (const { i } of rems) {
    if (left <= 0n) break;
    parts[i]! += 1n;
    left -= 1n;
  }
  return parts.map(Number);
}

/**
 * The energy between two readings of one meter, per interval. `b` must be later than `a`
 * and its counters must not be lower (the caller rejects a counter that goes backwards).
 * A zero-length span puts all of its energy in the interval of `b`.
 */
export function splitIntoIntervals(a: CounterSample, b: CounterSample, intervalMs: number, timeZone: string): IntervalEnergy[] {
  const dImport = b.importWh - a.importWh;
  const dExport = b.exportWh - a.exportWh;
  if (dImport < 0 || dExport < 0) throw new RangeError('counters went backwards');
  if (b.tsMs <= a.tsMs) return [{ startMs: intervalStart(b.tsMs, intervalMs, timeZone), importWh: dImport, exportWh: dExport }];
  // A reading exactly on a boundary belongs to the interval that ends there.
  let s = intervalStart(a.tsMs, intervalMs, timeZone);
  // The usual case, readings seconds apart: the whole span lies in one interval.
  if (b.tsMs <= s + intervalMs && intervalStart(b.tsMs - 1, intervalMs, timeZone) === s) {
    return [{ startMs: s, importWh: dImport, exportWh: dExport }];
  }
  const starts: number[] = [];
  const weights: number[] = [];
  while (s < b.tsMs) {
    const next = intervalStart(s + intervalMs + 1, intervalMs, timeZone);
    const end = next > s ? next : s + intervalMs;
    const overlap = Math.min(end, b.tsMs) - Math.max(s, a.tsMs);
    if (overlap > 0) {
      starts.push(s);
      weights.push(overlap);
    }
    s = end;
  }
  const imp = apportion(dImport, weights);
  const exp = apportion(dExport, weights);
  return starts.map((startMs, i) => ({ startMs, importWh: imp[i]!, exportWh: exp[i]! }));
}
