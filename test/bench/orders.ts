/**
 * Orders accepted per second through the REST API, with their escrow postings, on one engine:
 * the real fastify server on a loopback port, prosumer keys, buy orders that each hold escrow
 * (a money transfer in the order's transaction). The baseline, run in the same process against
 * the same server, is `GET /health` (an HTTP round trip that touches no ledger), so the ratio
 * says what the order path costs beyond HTTP on this machine.
 */
import { join } from 'node:path';
import { buildApi, listenApi } from '../../settlement/api/server.ts';
import { defaultSettlementConfig } from '../../settlement/config.ts';
import { openLedger } from '../../settlement/ledger/open.ts';
import { MarketService } from '../../settlement/market/market.ts';
import { createMetrics } from '../../settlement/metrics.ts';
import { ApiKeyStore } from '../../settlement/registry/api-keys.ts';
import { Enrollment } from '../../settlement/registry/enrollment.ts';
import type { MarketId } from '../../settlement/registry/registry.ts';
import { freshPostgresSchema } from '../support/services.ts';
import { testLog } from '../support/stack.ts';
import { tempDir } from '../support/tmp.ts';
import { summarise } from './stats.ts';

export interface OrderFigures {
  engine: 'sqlite' | 'postgres';
  orders: number;
  ordersPerSecond: number;
  p99Ms: number;
  healthPerSecond: number;
  ratio: number;
  /** The money ledger re-derived afterwards: problems found (none expected). */
  problems: string[];
}

// Each account may hold 100 open orders (market/orders.ts): enough accounts for a run of tens of thousands.
const ACCOUNTS = 300;
const IN_FLIGHT = 16;

/** Runs `fn` with IN_FLIGHT calls in flight for `seconds`; latencies in ms. */
async function drive(seconds: number, fn: (n: number) => Promise<void>): Promise<{ done: number; latencies: number[]; elapsedMs: number }> {
  const until = performance.now() + seconds * 1000;
  const latencies: number[] = [];
  let n = 0;
  const start = performance.now();
  await Promise.all(
    Array.from({ length: IN_FLIGHT }, async () => {
      while (performance.now() < until) {
        const t = performance.now();
        await fn(n++);
        latencies.push(performance.now() - t);
      }
    }),
  );
  return { done: latencies.length, latencies, elapsedMs: performance.now() - start };
}

export async function benchOrders(engine: 'sqlite' | 'postgres', opts: { seconds: number; postgresUrl?: string; log?: (s: string) => void }): Promise<OrderFigures> {
  const log = opts.log ?? (() => undefined);
  const dir = tempDir('gtx-bench-orders-');
  const schema = engine === 'postgres' ? await freshPostgresSchema(opts.postgresUrl!) : undefined;
  const ledger = await openLedger(schema ? { sqlitePath: '/nonexistent', databaseUrl: schema.url } : { sqlitePath: join(dir.path, 'ledger.sqlite') });
  const cfg = defaultSettlementConfig();
  const m = cfg.markets[0]!;
  // Open around the clock, so the benchmark runs at any hour.
  const rules = { ...m.rules, auction: { ...m.rules.auction, openMinute: 0, closeMinute: 1440 } };
  await ledger.putMarket({ id: m.id as MarketId, name: m.name, timeZone: m.timeZone, intervalMinutes: m.intervalMinutes });
  const market = new MarketService(ledger, { rules: (id) => (id === m.id ? rules : undefined), credits: cfg.credits, now: Date.now });
  const keys = new ApiKeyStore(ledger.db);
  const enrollment = new Enrollment(ledger, { now: Date.now, mqttUrl: () => 'mqtt://unused' });
  const accounts: Array<{ id: string; key: string }> = [];
  for (let i = 0; i < ACCOUNTS; i++) {
    const id = `bench-${i}`;
    await enrollment.issueCode({ market: m.id, owner: id, ttlMs: 60_000 }); // creates the account
    await market.deposit(id, 'THB', 10n ** 12n);
    accounts.push({ id, key: (await keys.create('prosumer', 'bench', id)).key });
  }
  const app = buildApi({ ledger, metrics: createMetrics(), log: testLog('bench'), enrollment, apiKeys: keys, adminKey: null, codeTtlMs: 60_000, onRevoke: () => undefined, market: { market, currencyOf: () => 'THB' } });
  const base = await listenApi(app, '127.0.0.1', 0);
  try {
    log(`${engine}: GET /health round trips…`);
    const health = await drive(Math.max(1, opts.seconds / 2), async () => {
      const r = await fetch(`${base}/health`);
      await r.arrayBuffer();
    });
    log(`${engine}: POST /api/v1/orders (buy, escrow held), ${IN_FLIGHT} in flight…`);
    let refused = 0;
    const orders = await drive(opts.seconds, async (n) => {
      const a = accounts[n % ACCOUNTS]!;
      const r = await fetch(`${base}/api/v1/orders`, {
        method: 'POST',
        headers: { authorization: `Bearer ${a.key}`, 'content-type': 'application/json' },
        body: JSON.stringify({ market: m.id, side: 'buy', energyKwh: '1.5', limitPrice: '4.20' }),
      });
      await r.arrayBuffer();
      if (r.status !== 201) refused++;
    });
    const ordersPerSecond = (orders.done - refused) / (orders.elapsedMs / 1000);
    const healthPerSecond = health.done / (health.elapsedMs / 1000);
    const problems = await market.money.check();
    if (refused) problems.push(`${refused} orders refused`);
    return {
      engine,
      orders: orders.done - refused,
      ordersPerSecond,
      p99Ms: summarise(orders.latencies).p99,
      healthPerSecond,
      ratio: ordersPerSecond / healthPerSecond,
      problems,
    };
  } finally {
    await app.close();
    await ledger.close();
    await schema?.drop();
    dir.remove();
  }
}
