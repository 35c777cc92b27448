import type { LatencySummary } from './messages.ts';

/** Nearest-rank percentile of an ascending array. */
function rank(sorted: Float64Array, q: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1))]!;
}

export function summarise(values: number[]): LatencySummary {
  const sorted = Float64Array.from(values).sort();
  return {
    count: sorted.length,
    p50: rank(sorted, 0.5),
    p95: rank(sorted, 0.95),
    p99: rank(sorted, 0.99),
    max: sorted.length ? sorted[sorted.length - 1]! : NaN,
  };
}

export function median(values: number[]): number {
  return rank(Float64Array.from(values).sort(), 0.5);
}

/** A prom-client histogram as read back: cumulative counts per upper bound. */
export interface Buckets {
  bounds: number[];
  cumulative: number[];
  count: number;
  sum: number;
}

/**
 * The quantile of a Prometheus histogram as the upper bound of the bucket it falls in
 * ("≤ 25 ms"), which is all a histogram can say; Infinity past the last bound.
 */
export function bucketQuantile(h: Buckets, q: number): number {
  if (h.count === 0) return NaN;
  const want = q * h.count;
  for (let i = 0; i < h.bounds.length; i++) if (h.cumulative[i]! >= want) return h.bounds[i]!;
  return Infinity;
}
