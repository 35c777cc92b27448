import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { GENESIS_PREV, meterId, readingHash, type Reading } from '../../../protocol/index.ts';
import { ownerAccount, systemAccount } from '../../../settlement/market/accounts.ts';
import { NRG } from '../../../settlement/market/types.ts';
import { baseline, dayKind, savingsOf, type HourUsage } from '../../../settlement/rewards/baseline.ts';
import { RewardPayer, localMidnight } from '../../../settlement/rewards/rewards.ts';
import type { Market, MarketId } from '../../../settlement/registry/registry.ts';
import { MoneyStore } from '../../../settlement/store/money-store.ts';
import { ApiKeyStore } from '../../../settlement/registry/api-keys.ts';
import { testApi } from '../../support/api.ts';
import { NRG_UNIT, NrgToken } from '../../../settlement/tokens/nrg.ts';
import { EnvelopeFactory, verifiedEnvelope } from '../../support/envelopes.ts';
import { engines, type OpenedLedger } from '../../support/ledgers.ts';
import { TEST_MARKET, enrollTestGateway } from '../../support/registry.ts';

describe('conservation baseline', () => {
  const flat = (dates: string[], wh: number, estimated = false) =>
    new Map(dates.map((d) => [d, new Map<number, HourUsage>(Array.from({ length: 24 }, (_, h) => [h, { importWh: wh, estimated }]))]));
  const days = (from: string, n: number) => Array.from({ length: n }, (_, i) => new Date(Date.parse(`${from}T00:00:00Z`) + i * 86_400_000).toISOString().slice(0, 10));

  it('compares weekdays with weekdays and weekends and holidays with each other', () => {
    expect([dayKind('2026-11-25', new Set()), dayKind('2026-11-28', new Set()), dayKind('2026-11-25', new Set(['2026-11-25']))]).toEqual(['weekday', 'offday', 'offday']);
  });

  it('averages the same hour of the last 10 comparable days, skipping estimated ones, or gives none', () => {
    const usage = flat(days('2026-11-01', 30), 500);
    usage.get('2026-11-24')!.set(10, { importWh: 5000, estimated: true }); // excluded: estimated
    usage.get('2026-11-23')!.set(10, { importWh: 1600, estimated: false });
    expect(baseline('2026-11-25', 10, usage, new Set(), 10)).toBe(610); // (9 × 500 + 1600) / 10
    expect(baseline('2026-11-05', 10, usage, new Set(), 10)).toBeNull(); // not enough history
    usage.set('2026-11-25', new Map([[10, { importWh: 300, estimated: false }], [11, { importWh: 900, estimated: false }], [12, { importWh: 100, estimated: true }]]));
    expect(savingsOf('2026-11-25', usage, new Set(), 10)).toEqual([
      { hour: 10, baselineWh: 610, actualWh: 300, savedWh: 310 },
      { hour: 11, baselineWh: 500, actualWh: 900, savedWh: 0 },
    ]);
  });
});

const TZ = 'Asia/Bangkok';
const DAY = '2026-11-25'; // a Wednesday
const H = 3_600_000;

for (const engine of engines) {
  describe.skipIf(engine.skip)(`conservation rewards on ${engine.name}`, () => {
    let opened: OpenedLedger;
    let money: MoneyStore;
    let market: Market;
    let now = 0;
    beforeEach(async () => {
      opened = await engine.open();
      const gw = new EnvelopeFactory('gw-saver');
      await enrollTestGateway(opened.ledger, 'gw-saver', gw.publicKeyPem, [{ id: 'saver-1', model: 'eastron-sdm120', role: 'consumption', ratedPowerW: 20_000, energySource: null }]);
      market = (await opened.ledger.getMarket(TEST_MARKET))!;
      money = new MoneyStore(opened.ledger.db, opened.ledger.engine);
      await new NrgToken(money, { totalSupply: 1_000_000n * NRG_UNIT, incentivePool: 1000n * NRG_UNIT }, () => 0).genesis();
      // Hourly readings from 14 local days before DAY to its end: 500 Wh an hour, 300 on DAY.
      const start = localMidnight('2026-11-11', TZ);
      const end = localMidnight('2026-11-26', TZ);
      const dayStart = localMidnight(DAY, TZ);
      const rs: Reading[] = [];
      let importWh = 1000;
      for (let t = start, seq = 1; t <= end; t += H, seq++) {
        if (seq > 1) importWh += t <= dayStart ? 500 : 300;
        rs.push({ meter: meterId('saver-1'), seq, ts: new Date(t).toISOString(), importWh, exportWh: 0, powerW: 500, prev: seq === 1 ? GENESIS_PREV : readingHash(rs[seq - 2]!) });
      }
      const ctx = { ratedPowerW: 20_000, market: TEST_MARKET, timeZone: TZ, intervalMs: 900_000 };
      for (let i = 0; i < rs.length; i += 200) {
        const [o] = await opened.ledger.commitEnvelopes([verifiedEnvelope(gw.sign(rs.slice(i, i + 200)), ctx, end)], { nowMs: end });
        expect(o!.status).toBe('accepted');
      }
      now = end + 1;
    });
    afterEach(() => opened.cleanup());

    const payer = (holidays: string[] = []) =>
      new RewardPayer(opened.ledger, money, { rules: () => ({ ratePerKwh: NRG_UNIT / 10n, baselineDays: 10 }), holidays: () => new Set(holidays), now: () => now, settleMs: 0 });

    it('pays 0.1 NRG per kWh below the baseline from the pool, once, with its hours', async () => {
      expect(await payer().payDay(market, DAY)).toEqual({ paid: 1 });
      expect(await payer().payDay(market, DAY)).toEqual({ paid: 0 });
      // 24 hours × 200 Wh saved = 4.8 kWh → 0.48 NRG.
      expect(await money.balance(ownerAccount('owner-gw-saver', NRG))).toBe((48n * NRG_UNIT) / 100n);
      expect(await money.balance(systemAccount('incentives', NRG))).toBe(1000n * NRG_UNIT - (48n * NRG_UNIT) / 100n);
      const row = await opened.ledger.db.selectFrom('reward_payments').selectAll().executeTakeFirstOrThrow();
      expect(Number(row.saved_wh)).toBe(4800);
      expect((JSON.parse(row.details) as unknown[]).length).toBe(24);
      expect(await money.check()).toEqual([]);
    });

    it('GET /api/v1/rewards: a prosumer sees its own payments with their hours, utilities all, nobody without a key', async () => {
      await payer().payDay(market, DAY);
      const keys = new ApiKeyStore(opened.ledger.db);
      const app = testApi(opened.ledger, keys);
      try {
        const own = (await keys.create('prosumer', 'saver', 'owner-gw-saver')).key;
        const utility = (await keys.create('utility', 'auditor')).key;
        const get = (url: string, key?: string) => app.inject({ method: 'GET', url, headers: key ? { authorization: `Bearer ${key}` } : {} });
        const mine = await get('/api/v1/rewards', own);
        expect(mine.statusCode).toBe(200);
        const [payment] = mine.json() as Array<{ meter: string; day: string; amount: string; savedWh: number; hours: Array<{ hour: number; baselineWh: number; actualWh: number; savedWh: number }> }>;
        expect(payment).toMatchObject({ meter: 'saver-1', day: DAY, amount: '0.480000000000000000', savedWh: 4800 });
        expect(payment!.hours[0]).toEqual({ hour: 0, baselineWh: 500, actualWh: 300, savedWh: 200 });
        expect((await get('/api/v1/rewards?owner=someone-else', own)).statusCode).toBe(403);
        expect(((await get(`/api/v1/rewards?meter=saver-1&from=${DAY}&to=${DAY}`, utility)).json() as unknown[]).length).toBe(1);
        expect(((await get('/api/v1/rewards?from=2026-11-26', utility)).json() as unknown[]).length).toBe(0);
        expect((await get('/api/v1/rewards?from=25.11.2026', utility)).statusCode).toBe(400);
        expect((await get('/api/v1/rewards')).statusCode).toBe(401);
      } finally {
        await app.close();
      }
    });

    it('pays nothing without enough comparable history (a holiday compares with the 4 weekend days only) or before the day has settled', async () => {
      expect(await payer([DAY]).payDay(market, DAY)).toEqual({ paid: 0 });
      now = localMidnight('2026-11-26', TZ) - 1;
      expect(await payer().payDay(market, DAY)).toEqual({ paid: 0 });
      expect(await money.balance(ownerAccount('owner-gw-saver', NRG))).toBe(0n);
    });
  });
}
