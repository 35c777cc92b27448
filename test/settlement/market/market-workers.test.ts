import { createRequire } from 'node:module';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { generateGatewayKeyPair } from '../../../protocol/index.ts';
import { defaultSettlementConfig } from '../../../settlement/config.ts';
import { ownerAccount, systemAccount } from '../../../settlement/market/accounts.ts';
import { MarketService } from '../../../settlement/market/market.ts';
import { engines, type OpenedLedger } from '../../support/ledgers.ts';
import { TEST_MARKET, enrollTestGateway } from '../../support/registry.ts';

/**
 * Concurrent market calls racing for the same money: on PostgreSQL from two settlement workers
 * (two pools on one database); on SQLite, which one settlement process owns, from one process
 * (calls interleaving on its connection). The money ledger never overdraws, every credit is
 * accounted for, and an auction runs once.
 */
const require = createRequire(import.meta.url);
const cfg = defaultSettlementConfig();
const rules = cfg.markets[0]!.rules;
const T0 = Date.parse('2026-11-30T03:05:00Z'); // 10:05 in Bangkok
const BUYER = 'owner-gw-race-home';
const SELLER = 'owner-gw-race-sun';

for (const engine of engines) {
  describe.skipIf(engine.skip)(`racing market calls on ${engine.name}`, () => {
    let opened: OpenedLedger;
    let a: MarketService;
    let b: MarketService;
    let now = T0;
    beforeEach(async () => {
      now = T0;
      opened = await engine.open();
      await enrollTestGateway(opened.ledger, 'gw-race-sun', generateGatewayKeyPair().publicKeyPem, ['race-sun-1']);
      await enrollTestGateway(opened.ledger, 'gw-race-home', generateGatewayKeyPair().publicKeyPem, [
        { id: 'race-home-1', model: 'eastron-sdm120', role: 'consumption', ratedPowerW: 20_000, energySource: null },
      ]);
      const deps = { rules: () => rules, credits: cfg.credits, now: () => now };
      a = new MarketService(opened.ledger, deps);
      b = engine.name === 'postgres' ? new MarketService(await opened.reopen(), deps) : new MarketService(opened.ledger, deps);
    });
    afterEach(() => opened.cleanup());

    it('twenty buy orders at once against credits for five: exactly five are accepted, nothing overdrawn', async () => {
      await a.deposit(BUYER, 'THB', 5n * 420n); // five orders of 1 kWh at 4.20
      const results = await Promise.all(Array.from({ length: 20 }, (_, i) => (i % 2 ? a : b).placeOrder(BUYER, TEST_MARKET, { side: 'buy', energyWh: 1000, limit: 420n })));
      expect(results.filter((r) => r.ok).length).toBe(5);
      expect(results.filter((r) => !r.ok).map((r) => (r.ok ? '' : r.refusal.code))).toEqual(Array(15).fill('insufficient_credits'));
      expect(await a.money.balance(ownerAccount(BUYER, 'THB'))).toBe(0n);
      expect(await a.money.balance(systemAccount('escrow', 'THB'))).toBe(2100n);
      expect(await b.money.check()).toEqual([]);
      // Each accepted order got its own time priority.
      const priorities = (await a.store.orders({ account: BUYER })).map((o) => o.priority);
      expect(new Set(priorities).size).toBe(5);
    });

    it('twenty sell orders at once get twenty distinct time priorities', async () => {
      const results = await Promise.all(Array.from({ length: 20 }, (_, i) => (i % 2 ? a : b).placeOrder(SELLER, TEST_MARKET, { side: 'sell', energyWh: 1000 })));
      expect(results.every((r) => r.ok)).toBe(true);
      const priorities = (await a.store.orders({ account: SELLER })).map((o) => o.priority).sort((x, y) => x - y);
      expect(priorities).toEqual(Array.from({ length: 20 }, (_, i) => i + 1));
    });

    it('the same auction started on both workers runs once', async () => {
      await a.deposit(BUYER, 'THB', 10_000n);
      expect((await a.placeOrder(SELLER, TEST_MARKET, { side: 'sell', energyWh: 2000, limit: 380n })).ok).toBe(true);
      expect((await b.placeOrder(BUYER, TEST_MARKET, { side: 'buy', energyWh: 2000, limit: 420n })).ok).toBe(true);
      now = Date.parse('2026-11-30T03:30:00Z');
      const runs = await Promise.all([a.runAuction(TEST_MARKET), b.runAuction(TEST_MARKET)]);
      expect(runs.filter((r) => r !== undefined).length).toBe(1);
      expect((await a.trades({})).length).toBe(1);
      expect(await a.money.check()).toEqual([]);
    });
  });
}

describe('market writes on SQLite while another connection writes (the commit thread)', () => {
  it('an order that reads before it writes still goes in after the other writer commits', async () => {
    const { tempDir } = await import('../../support/tmp.ts');
    const { openLedger } = await import('../../../settlement/ledger/open.ts');
    const { Worker } = await import('node:worker_threads');
    const { join } = await import('node:path');
    const dir = tempDir('gtx-market-lock-');
    const sqlitePath = join(dir.path, 'ledger.sqlite');
    const ledger = await openLedger({ sqlitePath });
    try {
      await enrollTestGateway(ledger, 'gw-lock-sun', generateGatewayKeyPair().publicKeyPem, ['lock-sun-1']);
      const market = new MarketService(ledger, { rules: () => rules, credits: cfg.credits, now: () => T0 });
      // Another thread takes the write lock, signals, writes, holds it a little, commits.
      const worker = new Worker(
        `const { parentPort, workerData } = require('node:worker_threads');
         const Database = require(workerData.module);
         const db = new Database(workerData.path);
         db.pragma('busy_timeout = 5000');
         db.exec('BEGIN IMMEDIATE');
         parentPort.postMessage('locked');
         db.prepare("INSERT INTO rejection_counts (gateway, reason, hour_ms, count) VALUES ('x', 'bad_json', 0, 1)").run();
         const until = Date.now() + 300; while (Date.now() < until);
         db.exec('COMMIT');
         db.close();
         parentPort.postMessage('committed');`,
        { eval: true, workerData: { path: sqlitePath, module: require.resolve('better-sqlite3') } },
      );
      const messages: string[] = [];
      worker.on('message', (m: string) => messages.push(m));
      await new Promise<void>((resolve) => worker.once('message', () => resolve()));
      // A sell order holds no escrow: its transaction would read (the next priority) before writing.
      const r = await market.placeOrder(SELLER.replace('race', 'lock'), TEST_MARKET, { side: 'sell', energyWh: 1000 });
      expect(r.ok ? 'accepted' : r.refusal.code).toBe('accepted');
      await worker.terminate();
    } finally {
      await ledger.close();
      dir.remove();
    }
  });
});
