/**
 * Clearing benchmark: clearAuction on random books against the cost of sorting the same
 * books' prices as a Float64Array, measured in the same process so the ratio is comparable
 * across machines. The target is clearing within 3x of that sort.
 *
 *   node --import tsx test/bench/clearing.ts [size ...]     (default 10000 100000 1000000)
 *
 * Prints a markdown table. Not part of `npm run bench`.
 */
import { pathToFileURL } from 'node:url';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { clearAuction, type BookOrder } from '../../settlement/market/clearing.ts';
import { orderId } from '../../settlement/market/types.ts';
import { seededRandom } from '../support/random.ts';

export interface ClearingFigures {
  orders: number;
  /** Best of 3 clearAuction runs, after a warm-up, each after a full GC. */
  clearMs: number;
  /** Best of 3 `Float64Array.from(prices).sort()` runs on the same book. */
  sortMs: number;
  /** clearMs / sortMs. */
  ratio: number;
}

const DEFAULT_SIZES = [10_000, 100_000, 1_000_000];
const RUNS = 3;


/** Half bids, half asks (alternating), limits 200–600 minor/kWh, 100–10000 Wh, seq = index. */
export function randomBook(size: number, seed = 1): { orders: BookOrder[]; prices: number[] } {
  const next = seededRandom(seed);
  const int = (lo: number, hi: number) => lo + Math.floor(next() * (hi - lo + 1));
  const orders: BookOrder[] = [];
  const prices: number[] = [];
  for (let i = 0; i < size; i++) {
    const price = int(200, 600);
    prices.push(price);
    orders.push({ id: orderId(`o${i}`), side: i % 2 === 0 ? 'buy' : 'sell', energyWh: int(100, 10_000), limit: BigInt(price), seq: i });
  }
  return { orders, prices };
}

/**
 * A full collection before each timed run, so one run does not pay for the previous run's
 * garbage. Uses the global gc() of --expose-gc, or obtains one when the flag was not given.
 */
function collector(): () => void {
  const exposed = (globalThis as { gc?: () => void }).gc;
  if (exposed) return exposed;
  setFlagsFromString('--expose-gc');
  return runInNewContext('gc') as () => void;
}

/** Runs `work` once with a full GC before it; returns the wall time in ms. */
function timed(gc: () => void, work: () => unknown): number {
  gc();
  const start = performance.now();
  work();
  return performance.now() - start;
}

/**
 * Best of RUNS for each of two pieces of work. Warm-up first: at least 3 calls each and 100 ms,
 * so small books are timed in optimised code too (and the ids' string hashes are cached, as
 * they would be in a long-lived process). The timed runs alternate, so neither side is measured
 * in a heap the other one left behind more often than the other.
 */
function bestOfEach(a: () => unknown, b: () => unknown): [number, number] {
  const gc = collector();
  const warmUntil = performance.now() + 100;
  for (let k = 0; k < 3 || performance.now() < warmUntil; k++) {
    a();
    b();
  }
  let [bestA, bestB] = [Infinity, Infinity];
  for (let r = 0; r < RUNS; r++) {
    bestA = Math.min(bestA, timed(gc, a));
    bestB = Math.min(bestB, timed(gc, b));
  }
  return [bestA, bestB];
}

export async function benchClearing(opts: { sizes?: number[]; log?: (s: string) => void } = {}): Promise<ClearingFigures[]> {
  const log = opts.log ?? (() => {});
  const figures: ClearingFigures[] = [];
  for (const size of opts.sizes ?? DEFAULT_SIZES) {
    const { orders, prices } = randomBook(size);
    const [clearMs, sortMs] = bestOfEach(
      () => clearAuction(orders),
      () => Float64Array.from(prices).sort(),
    );
    const row = { orders: size, clearMs, sortMs, ratio: clearMs / sortMs };
    log(`${size} orders: clear ${clearMs.toFixed(1)} ms, Float64Array sort ${sortMs.toFixed(1)} ms, ratio ${row.ratio.toFixed(2)}`);
    figures.push(row);
    // Yield between sizes so a caller's logging and timers get a turn.
    await new Promise((resolve) => setImmediate(resolve));
  }
  return figures;
}

export function renderTable(figures: readonly ClearingFigures[]): string {
  const lines = ['| orders | clearAuction ms | Float64Array sort ms | ratio |', '| ---: | ---: | ---: | ---: |'];
  for (const f of figures) lines.push(`| ${f.orders.toLocaleString('en-US')} | ${f.clearMs.toFixed(1)} | ${f.sortMs.toFixed(1)} | ${f.ratio.toFixed(2)} |`);
  return lines.join('\n');
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const sizes = process.argv.slice(2).map(Number);
  if (sizes.some((s) => !Number.isSafeInteger(s) || s < 2)) {
    process.stderr.write('usage: node --import tsx test/bench/clearing.ts [size ...]\n');
    process.exit(2);
  }
  benchClearing({ sizes: sizes.length ? sizes : DEFAULT_SIZES, log: (s) => process.stderr.write(`${s}\n`) }).then(
    (figures) => process.stdout.write(`${renderTable(figures)}\n`),
    (e: unknown) => {
      process.stderr.write(`clearing bench failed: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`);
      process.exit(1);
    },
  );
}
