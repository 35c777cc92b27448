/**
 * The market benchmarks of `npm run bench` (docs/benchmarks.md, "Market"):
 * - clearing 10k, 100k and 1M orders against sorting the same orders' prices as a Float64Array,
 *   in the same process (test/bench/clearing.ts). Target: 1M orders in under 1 s and within 3×
 *   of that sort;
 * - orders accepted per second through the REST API with their escrow postings, on each engine,
 *   against GET /health round trips on the same server (test/bench/orders.ts).
 */
import { benchClearing, renderTable } from './clearing.ts';
import { benchOrders, type OrderFigures } from './orders.ts';
import type { RunContext } from './report.ts';

export async function runMarketBench(opts: {
  engines: Array<'sqlite' | 'postgres'>;
  seconds: number;
  postgresUrl?: string;
  quick: boolean;
  ctx: RunContext;
}): Promise<{ text: string; ok: boolean; valid: boolean }> {
  const log = (s: string) => process.stderr.write(`[bench] ${s}\n`);
  log('clearing: 10k, 100k, 1M orders against a Float64Array sort of their prices…');
  const clearing = await benchClearing({ sizes: opts.quick ? [10_000, 100_000] : [10_000, 100_000, 1_000_000], log });
  const million = clearing.find((c) => c.orders === 1_000_000);
  const ok = million ? million.clearMs < 1000 && million.ratio <= 3 : true;
  const orders: OrderFigures[] = [];
  const skipped: string[] = [];
  for (const engine of opts.engines) {
    if (engine === 'postgres' && !opts.postgresUrl) {
      skipped.push('PostgreSQL: not reachable');
      continue;
    }
    orders.push(await benchOrders(engine, { seconds: opts.seconds, postgresUrl: opts.postgresUrl, log }));
  }
  const valid = orders.every((o) => o.problems.length === 0);
  const c = opts.ctx;
  const lines = [
    `Command: \`${c.command}\` (resolved: \`${c.resolvedCommand}\`)`,
    `Machine: ${c.machine}. Revision: ${c.revision}.`,
    '',
    '**Clearing** (best of 3 after warm-up, a full GC before each timed run; random books of alternating bids and asks, limits 2.00–6.00, 0.1–10 kWh):',
    '',
    renderTable(clearing),
    '',
    million
      ? `Target: 1M orders cleared in under 1 s and within 3× of the sort: ${million.clearMs.toFixed(0)} ms, ${million.ratio.toFixed(2)}× — **${ok ? 'PASS' : 'MISS'}**.`
      : 'Target: not measured in a quick run (1M orders).',
    '',
    '**Orders through the API** (buy orders, each holding its escrow in the same transaction; 16 requests in flight from 300 prosumer keys; baseline `GET /health` on the same server):',
    '',
    '| engine | orders accepted | orders/s | p99 ms | GET /health/s | ratio | money ledger after |',
    '| --- | ---: | ---: | ---: | ---: | ---: | --- |',
    ...orders.map(
      (o) =>
        `| ${o.engine} | ${o.orders.toLocaleString('en-US')} | ${Math.round(o.ordersPerSecond).toLocaleString('en-US')} | ${o.p99Ms.toFixed(1)} | ${Math.round(o.healthPerSecond).toLocaleString('en-US')} | ${o.ratio.toFixed(3)} | ${o.problems.length ? o.problems.join('; ') : 'sound (every currency sums to 0)'} |`,
    ),
    ...skipped.map((s) => `| ${s} | | | | | | |`),
  ];
  return { text: lines.join('\n'), ok, valid };
}
