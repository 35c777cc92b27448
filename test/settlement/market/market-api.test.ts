import type { FastifyInstance } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { defaultSettlementConfig } from '../../../settlement/config.ts';
import { MarketService } from '../../../settlement/market/market.ts';
import { ApiKeyStore } from '../../../settlement/registry/api-keys.ts';
import { engines, type OpenedLedger } from '../../support/ledgers.ts';
import { TEST_MARKET, enrollTestGateway } from '../../support/registry.ts';
import { testApi } from '../../support/api.ts';
import { GENESIS_PREV, generateGatewayKeyPair, meterId, readingHash } from '../../../protocol/index.ts';
import { EnvelopeFactory, verifiedEnvelope } from '../../support/envelopes.ts';

/**
 * The market's REST routes on the real fastify server over each engine: who may call each
 * (401 without a key, 403 with the wrong role or for another account), and what they answer.
 */

const cfg = defaultSettlementConfig();
const T0 = Date.parse('2026-11-30T03:05:00Z'); // 10:05 in Bangkok: open
const SELLER = 'owner-gw-api-sun';
const BUYER = 'owner-gw-api-home';

interface Call {
  method: 'GET' | 'POST' | 'DELETE';
  url: string;
  route: string;
  payload?: unknown;
}

const ORDER = { market: TEST_MARKET, side: 'buy', energyKwh: '1.5', limitPrice: '4.20' };
const CALLS: Record<'anyone' | 'prosumer' | 'admin' | 'cancel', Call[]> = {
  anyone: [
    { method: 'GET', url: `/api/v1/markets/${TEST_MARKET}/price?include_history=true&limit=5`, route: '/api/v1/markets/:market/price' },
    { method: 'GET', url: `/api/v1/markets/${TEST_MARKET}/auctions`, route: '/api/v1/markets/:market/auctions' },
    { method: 'GET', url: '/api/v1/orders', route: '/api/v1/orders' },
    { method: 'GET', url: '/api/v1/trades', route: '/api/v1/trades' },
    { method: 'GET', url: `/api/v1/balances?account=${BUYER}`, route: '/api/v1/balances' },
  ],
  prosumer: [
    { method: 'POST', url: '/api/v1/orders', route: '/api/v1/orders', payload: ORDER },
    { method: 'POST', url: '/api/v1/conversions', route: '/api/v1/conversions', payload: { from: 'THB', to: 'USD', amount: '10.00' } },
  ],
  admin: [
    { method: 'POST', url: '/api/v1/admin/deposits', route: '/api/v1/admin/deposits', payload: { account: BUYER, currency: 'THB', amount: '100.00' } },
    { method: 'POST', url: '/api/v1/admin/withdrawals', route: '/api/v1/admin/withdrawals', payload: { account: BUYER, currency: 'THB', amount: '1.00' } },
    { method: 'POST', url: '/api/v1/admin/auctions', route: '/api/v1/admin/auctions', payload: { market: TEST_MARKET, at: '2026-11-30T04:00:00Z' } },
  ],
  cancel: [{ method: 'DELETE', url: '/api/v1/orders/ord_nosuch', route: '/api/v1/orders/:id' }],
};

for (const engine of engines) {
  describe.skipIf(engine.skip)(`market API on ${engine.name}`, () => {
    let opened: OpenedLedger;
    let app: FastifyInstance;
    const keys = {} as Record<'admin' | 'utility' | 'buyer' | 'seller', string>;
    const routes: string[] = [];
    let now = T0;
    let market: MarketService;
    const call = (c: Call, key?: string) =>
      app.inject({ method: c.method, url: c.url, headers: key ? { authorization: `Bearer ${key}` } : {}, ...(c.payload === undefined ? {} : { payload: c.payload as object }) });

    beforeAll(async () => {
      opened = await engine.open();
      const { ledger } = opened;
      await enrollTestGateway(ledger, 'gw-api-sun', generateGatewayKeyPair().publicKeyPem, ['api-sun-1']);
      await enrollTestGateway(ledger, 'gw-api-home', generateGatewayKeyPair().publicKeyPem, [
        { id: 'api-home-1', model: 'eastron-sdm120', role: 'consumption', ratedPowerW: 20_000, energySource: null },
      ]);
      const store = new ApiKeyStore(ledger.db);
      keys.admin = (await store.create('admin')).key;
      keys.utility = (await store.create('utility')).key;
      keys.buyer = (await store.create('prosumer', 'home', BUYER)).key;
      keys.seller = (await store.create('prosumer', 'sun', SELLER)).key;
      market = new MarketService(ledger, { rules: (id) => (id === TEST_MARKET ? cfg.markets[0]!.rules : undefined), credits: cfg.credits, now: () => now });
      app = testApi(ledger, store, { market: { market, currencyOf: () => 'THB' } });
      app.addHook('onRoute', (r) => {
        const methods = [r.method].flat();
        if (r.config?.roles && !methods.includes('HEAD') && /orders|trades|balances|conversions|deposits|withdrawals|auctions|price/.test(r.url)) routes.push(`${methods.join(',')} ${r.url}`);
      });
      await app.ready();
    });
    afterAll(async () => {
      await app?.close();
      await opened?.cleanup();
    });

    it('the calls below cover every market route', () => {
      const covered = [...new Set(Object.values(CALLS).flat().map((c) => `${c.method} ${c.route}`))];
      expect([...routes].sort()).toEqual(covered.sort());
    });

    it('refuses every market route without a key (401)', async () => {
      for (const c of Object.values(CALLS).flat()) {
        const res = await call(c);
        expect([c.method, c.url, res.statusCode]).toEqual([c.method, c.url, 401]);
        expect(res.json()).toMatchObject({ code: 'unauthorized' });
      }
    });

    it('refuses the wrong role (403): admin routes to prosumers and utilities, orders to utilities and admins', async () => {
      for (const c of CALLS.admin) {
        for (const key of [keys.buyer, keys.utility]) expect([c.url, (await call(c, key)).statusCode]).toEqual([c.url, 403]);
      }
      for (const c of CALLS.prosumer) {
        for (const key of [keys.admin, keys.utility]) expect([c.url, (await call(c, key)).statusCode]).toEqual([c.url, 403]);
      }
      expect((await call(CALLS.cancel[0]!, keys.utility)).statusCode).toBe(403);
    });

    it('a prosumer sees only its own account: another account is 403, another one’s order 404', async () => {
      expect((await call({ method: 'GET', url: `/api/v1/balances?account=${SELLER}`, route: '' }, keys.buyer)).statusCode).toBe(403);
      expect((await call({ method: 'GET', url: `/api/v1/orders?account=${SELLER}`, route: '' }, keys.buyer)).statusCode).toBe(403);
      expect((await call({ method: 'GET', url: `/api/v1/trades?account=${SELLER}`, route: '' }, keys.buyer)).statusCode).toBe(403);
      expect((await call({ method: 'GET', url: `/api/v1/balances?account=${SELLER}`, route: '' }, keys.utility)).statusCode).toBe(200);
    });

    it('deposit, order with escrow, listing, cancelling, auction, price — as documented', async () => {
      const dep = await call(CALLS.admin[0]!, keys.admin);
      expect(dep.statusCode, dep.body).toBe(201);
      expect(dep.json()).toEqual({ account: BUYER, currency: 'THB', balance: '100.00' });

      const placed = await call(CALLS.prosumer[0]!, keys.buyer);
      expect(placed.statusCode, placed.body).toBe(201);
      const order = placed.json<{ id: string; escrow: string; energyKwh: string; deliveryStart: string; status: string }>();
      expect(order).toMatchObject({ energyKwh: '1.500', escrow: '6.30', deliveryStart: '2026-11-30T04:00:00.000Z', status: 'open', account: BUYER });
      const own = await call({ method: 'GET', url: '/api/v1/orders', route: '' }, keys.buyer);
      expect(own.json<Array<{ id: string }>>().map((o) => o.id)).toEqual([order.id]);
      expect((await call({ method: 'GET', url: '/api/v1/orders', route: '' }, keys.seller)).json()).toEqual([]);
      expect((await call({ method: 'GET', url: '/api/v1/balances', route: '' }, keys.buyer)).json()).toEqual([{ account: BUYER, currency: 'THB', balance: '93.70' }]);

      // The seller cannot cancel it (404: not an oracle for others' ids); the buyer can, once.
      const cancel = { method: 'DELETE' as const, url: `/api/v1/orders/${order.id}`, route: '' };
      expect((await call(cancel, keys.seller)).statusCode).toBe(404);
      expect((await call(cancel, keys.buyer)).json()).toMatchObject({ status: 'cancelled', escrow: '0.00' });
      expect((await call(cancel, keys.buyer)).statusCode).toBe(409);

      // Refusals say why, with a 422 and the code.
      const tooSmall = await call({ ...CALLS.prosumer[0]!, payload: { ...ORDER, energyKwh: '0.5' } }, keys.buyer);
      expect([tooSmall.statusCode, tooSmall.json().code]).toEqual([422, 'below_min_volume']);
      const noMeter = await call({ ...CALLS.prosumer[0]!, payload: { ...ORDER, side: 'Sell' } }, keys.buyer);
      expect([noMeter.statusCode, noMeter.json().code]).toEqual([422, 'no_supply_meter']);
      const badEnergy = await call({ ...CALLS.prosumer[0]!, payload: { ...ORDER, energyKwh: '1.2345' } }, keys.buyer);
      expect(badEnergy.statusCode).toBe(400);
      const unknownMarket = await call({ ...CALLS.prosumer[0]!, payload: { ...ORDER, market: 'atlantis' } }, keys.buyer);
      expect([unknownMarket.statusCode, unknownMarket.json().code]).toEqual([404, 'unknown_market']);

      const sell = await call({ ...CALLS.prosumer[0]!, payload: { market: TEST_MARKET, side: 'sell', energyKwh: '1', limitPrice: '3.80' } }, keys.seller);
      expect(sell.statusCode, sell.body).toBe(201);
      await call(CALLS.prosumer[0]!, keys.buyer);
      const auction = await call({ ...CALLS.admin[2]!, payload: { market: TEST_MARKET, at: '2026-11-30T03:30:00Z' } }, keys.admin);
      expect(auction.statusCode, auction.body).toBe(201);
      expect(auction.json()).toMatchObject({ clearingPrice: '4.00', volumeKwh: '1.000', trades: 1, orders: 2 });
      expect((await call({ ...CALLS.admin[2]!, payload: { market: TEST_MARKET, at: '2026-11-30T03:30:00Z' } }, keys.admin)).statusCode).toBe(409);
      for (const at of ['1970-01-01T00:00:00Z', '2026-11-30T03:40:00Z']) {
        const r = await call({ ...CALLS.admin[2]!, payload: { market: TEST_MARKET, at } }, keys.admin);
        expect([at, r.statusCode, r.json().code]).toEqual([at, 400, 'bad_time']);
      }
      const listed = await call(CALLS.anyone[1]!, keys.seller);
      expect(listed.json<Array<{ id: string }>>()[0]).toMatchObject({ clearingPrice: '4.00' });
      const trades = await call({ method: 'GET', url: '/api/v1/trades', route: '' }, keys.seller);
      expect(trades.json()).toEqual([expect.objectContaining({ seller: SELLER, buyer: BUYER, energyKwh: '1.000', price: '4.00', value: '4.00', delivery: null })]);

      // Money and currencies are checked at the door: 400 naming the field, never a 500.
      for (const payload of [
        { account: BUYER, currency: 'JPY', amount: '1.00' },
        { account: BUYER, currency: 'THB', amount: '1e5' },
        { account: BUYER, currency: 'THB', amount: '0.001' },
        { account: BUYER, currency: 'THB', amount: '99999999999999999999.00' },
      ]) {
        const r = await call({ ...CALLS.admin[0]!, payload }, keys.admin);
        expect([JSON.stringify(payload), r.statusCode, r.json().code]).toEqual([JSON.stringify(payload), 400, expect.stringMatching(/bad_request|bad_amount/)]);
      }
      const bigConversion = await call({ ...CALLS.prosumer[1]!, payload: { from: 'THB', to: 'USD', amount: '99999999999999999999.00' } }, keys.buyer);
      expect(bigConversion.statusCode).toBe(400);
      const conversion = await call(CALLS.prosumer[1]!, keys.buyer);
      expect(conversion.statusCode, conversion.body).toBe(201);
      expect(conversion.json()).toEqual({ from: 'THB', to: 'USD', debit: '10.00', fee: '0.01', credit: '0.27' });

      // Delivery: both meters report; the trade settles. Each side sees the energy the trade was
      // settled against, but not the other party's meters; a utility sees both.
      const ctx = { ratedPowerW: 100_000, market: TEST_MARKET, timeZone: 'Asia/Bangkok', intervalMs: 900_000 };
      const start = Date.parse('2026-11-30T04:00:00Z');
      for (const [gw, meter, imp, exp] of [['gw-api-sun', 'api-sun-1', 0, 1500], ['gw-api-home', 'api-home-1', 2000, 0]] as const) {
        const f = new EnvelopeFactory(gw);
        const r1 = { meter: meterId(meter), seq: 1, ts: new Date(start).toISOString(), importWh: 100, exportWh: 100, powerW: 0, prev: GENESIS_PREV };
        const r2 = { ...r1, seq: 2, ts: new Date(start + 1_800_000).toISOString(), importWh: 100 + imp, exportWh: 100 + exp, prev: readingHash(r1) };
        await opened.ledger.commitEnvelopes([verifiedEnvelope(f.sign([r1, r2]), ctx, start + 1_800_000)], { nowMs: start + 1_800_000 });
      }
      now = start + 1_800_000 + 1;
      expect(await market.settleNextDelivery(TEST_MARKET, 0)).toBe(1);
      type Basis = { seller: { account: string; meters?: unknown[] }; buyer: { account: string; meters?: unknown[] } };
      const seen = async (key: string) => (await call({ method: 'GET', url: '/api/v1/trades', route: '' }, key)).json<Array<{ delivery: { sellerMeteredKwh: string; buyerMeteredKwh: string; basis: Basis } }>>()[0]!.delivery;
      const bySeller = await seen(keys.seller);
      expect(bySeller).toMatchObject({ sellerMeteredKwh: '1.000', buyerMeteredKwh: '1.000' });
      expect(bySeller.basis.seller.meters).toEqual([{ meter: 'api-sun-1', importWh: 0, exportWh: 1500 }]);
      expect(bySeller.basis.buyer).toEqual({ account: BUYER });
      const byBuyer = await seen(keys.buyer);
      expect(byBuyer.basis.seller).toEqual({ account: SELLER });
      expect(byBuyer.basis.buyer.meters).toEqual([{ meter: 'api-home-1', importWh: 2000, exportWh: 0 }]);
      const byUtility = await seen(keys.utility);
      expect(byUtility.basis.buyer.meters?.length).toBe(1);
      expect(byUtility.basis.seller.meters?.length).toBe(1);

      const price = await call(CALLS.anyone[0]!, keys.buyer);
      expect(price.statusCode, price.body).toBe(200);
      expect(price.json()).toMatchObject({ current: { market: TEST_MARKET, price: '4.00', currency: 'THB' }, history: [] });
    });
  });
}
