import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { GENESIS_PREV, meterId, readingHash, type Reading } from '../../../protocol/index.ts';
import { defaultSettlementConfig } from '../../../settlement/config.ts';
import { ownerAccount, systemAccount } from '../../../settlement/market/accounts.ts';
import { MarketService, type MarketEvents } from '../../../settlement/market/market.ts';
import type { PriceSignal } from '../../../settlement/market/pricing.ts';
import type { AuctionRecord } from '../../../settlement/store/market-store.ts';
import { EnvelopeFactory, verifiedEnvelope } from '../../support/envelopes.ts';
import { engines, type OpenedLedger } from '../../support/ledgers.ts';
import { TEST_MARKET, enrollTestGateway } from '../../support/registry.ts';

/**
 * The market end to end on each engine, with a clock the test sets: credits, orders and their
 * refusals, an auction, and delivery settled against readings committed through the ledger.
 */

const cfg = defaultSettlementConfig();
const rules = cfg.markets[0]!.rules;
const MARKET = TEST_MARKET;
const SELLER = 'owner-gw-sun';
const BUYER = 'owner-gw-home';
// 10:05 in Bangkok: the market is open; the earliest delivery open to orders starts 11:00 local.
const T0 = Date.parse('2026-11-30T03:05:00Z');
const DELIVERY = Date.parse('2026-11-30T04:00:00Z');

for (const engine of engines) {
  describe.skipIf(engine.skip)(`market on ${engine.name}`, () => {
    let opened: OpenedLedger;
    let now = T0;
    let market: MarketService;
    const prices: Array<{ signal: PriceSignal; old: bigint | null }> = [];
    const auctions: AuctionRecord[] = [];
    let sun: EnvelopeFactory;
    let home: EnvelopeFactory;

    beforeEach(async () => {
      now = T0;
      opened = await engine.open();
      sun = new EnvelopeFactory('gw-sun');
      home = new EnvelopeFactory('gw-home');
      await enrollTestGateway(opened.ledger, 'gw-sun', sun.publicKeyPem, ['sun-1']);
      await enrollTestGateway(opened.ledger, 'gw-home', home.publicKeyPem, [
        { id: 'home-1', model: 'eastron-sdm120', role: 'consumption', ratedPowerW: 20_000, energySource: null },
      ]);
      const events: Partial<MarketEvents> = { priceUpdated: (signal, old) => prices.push({ signal, old }), auctionCompleted: (a) => auctions.push(a) };
      market = new MarketService(opened.ledger, { rules: (id) => (id === MARKET ? rules : undefined), credits: cfg.credits, now: () => now, events });
    });
    afterEach(() => opened.cleanup());

    /** Two readings of a meter at `fromMs` and `toMs`, committed as the ingest path does. */
    async function meter(f: EnvelopeFactory, id: string, fromMs: number, toMs: number, importWh: [number, number], exportWh: [number, number]) {
      const a: Reading = { meter: meterId(id), seq: 1, ts: new Date(fromMs).toISOString(), importWh: importWh[0], exportWh: exportWh[0], powerW: 0, prev: GENESIS_PREV };
      const b: Reading = { ...a, seq: 2, ts: new Date(toMs).toISOString(), importWh: importWh[1], exportWh: exportWh[1], prev: readingHash(a) };
      const ctx = { ratedPowerW: 100_000, market: MARKET, timeZone: 'Asia/Bangkok', intervalMs: 900_000 };
      const [out] = await opened.ledger.commitEnvelopes([verifiedEnvelope(f.sign([a, b]), ctx, toMs + 1000)], { nowMs: toMs + 1000 });
      expect(out!.status).toBe('accepted');
    }

    it('trades: escrow, uniform-price auction, settlement against metered energy; every credit accounted for', async () => {
      expect(await market.deposit(BUYER, 'THB', 10_000n)).toBe(10_000n);

      const sell = await market.placeOrder(SELLER, MARKET, { side: 'sell', energyWh: 2000, limit: 350n });
      const buy = await market.placeOrder(BUYER, MARKET, { side: 'buy', energyWh: 3000, limit: 450n });
      if (!sell.ok || !buy.ok) throw new Error(`refused: ${JSON.stringify([sell, buy])}`);
      expect(buy.order.deliveryStartMs).toBe(DELIVERY);
      expect(buy.order.escrow).toBe(1350n); // 4.50 × 3 kWh
      expect(await market.money.balance(ownerAccount(BUYER, 'THB'))).toBe(8_650n);

      now = Date.parse('2026-11-30T03:30:00Z');
      const run = await market.runAuction(MARKET);
      expect(run?.auction).toMatchObject({ deliveryStartMs: DELIVERY, clearingPrice: 400n, volumeWh: 2000, trades: 1, orders: 2 });
      expect(auctions.map((a) => a.id)).toEqual([run!.auction.id]);
      expect(await market.runAuction(MARKET)).toBeUndefined(); // once per delivery interval
      const [trade] = await market.trades({ account: SELLER });
      expect(trade).toMatchObject({ buyer: BUYER, seller: SELLER, energyWh: 2000, price: 400n, value: 800n, delivery: null });
      // The buyer's unused escrow is back; the trade's value waits in escrow for delivery.
      expect(await market.money.balance(ownerAccount(BUYER, 'THB'))).toBe(9_200n);
      expect(await market.money.balance(systemAccount('escrow', 'THB'))).toBe(800n);
      expect((await market.store.order(buy.order.id))?.status).toBe('partial');
      expect((await market.store.order(sell.order.id))?.status).toBe('filled');

      // Delivery 04:00–04:30Z: the seller exports 1.5 kWh of the 2 sold, the buyer imports 2.5.
      await meter(sun, 'sun-1', DELIVERY, DELIVERY + 1_800_000, [0, 0], [10_000, 11_500]);
      await meter(home, 'home-1', DELIVERY, DELIVERY + 1_800_000, [5_000, 7_500], [0, 0]);
      now = DELIVERY + 1_800_000 + 1;
      expect(await market.settleNextDelivery(MARKET, 0)).toBe(1);
      expect(await market.settleNextDelivery(MARKET, 0)).toBe(0);

      const [settled] = await market.trades({ account: BUYER });
      // Imbalance price: the interval's own indicative price, supply 1.5 / demand 2.5 → 4.60.
      expect(settled!.delivery).toMatchObject({ sellerMeteredWh: 1500, buyerMeteredWh: 1500, sellerShortWh: 500, buyerShortWh: 500, imbalancePrice: 460n });
      // Seller: paid 1.5 kWh × 4.00 = 6.00, less 0.5 kWh × (4.60 − 4.00) = 0.30 for its shortfall.
      expect(await market.money.balance(ownerAccount(SELLER, 'THB'))).toBe(570n);
      // Buyer: refunded the 0.5 kWh not delivered (2.00).
      expect(await market.money.balance(ownerAccount(BUYER, 'THB'))).toBe(9_400n);
      expect(await market.money.balance(systemAccount('escrow', 'THB'))).toBe(0n);
      expect(await market.money.balance(systemAccount('imbalance', 'THB'))).toBe(30n);
      const basis = settled!.delivery!.basis as { seller: { meters: Array<{ meter: string; exportWh: number }> } };
      expect(basis.seller.meters).toEqual([{ meter: 'sun-1', importWh: 0, exportWh: 1500 }]);
      expect(await market.money.check()).toEqual([]);
    });

    it('refuses orders with the reason: volume, price band, hours, seller meter, credits', async () => {
      const refusal = async (account: string, req: Parameters<MarketService['placeOrder']>[2]) => {
        const r = await market.placeOrder(account, MARKET, req);
        return r.ok ? 'accepted' : r.refusal.code;
      };
      expect(await refusal(SELLER, { side: 'sell', energyWh: 999 })).toBe('below_min_volume');
      expect(await refusal(SELLER, { side: 'sell', energyWh: 1000, limit: 601n })).toBe('price_out_of_band');
      expect(await refusal(SELLER, { side: 'sell', energyWh: 1000, limit: 199n })).toBe('price_out_of_band');
      expect(await refusal(BUYER, { side: 'sell', energyWh: 1000 })).toBe('no_supply_meter');
      expect(await refusal(BUYER, { side: 'buy', energyWh: 1000 })).toBe('insufficient_credits');
      expect(await refusal(SELLER, { side: 'sell', energyWh: 1000, deliveryStartMs: DELIVERY - 1_800_000 })).toBe('delivery_not_open');
      expect(await refusal(SELLER, { side: 'sell', energyWh: 1000, deliveryStartMs: DELIVERY + 60_000 })).toBe('delivery_not_open');
      // sun-1 is rated 100 kW: at most 50 kWh in a 30-minute interval.
      expect(await refusal(SELLER, { side: 'sell', energyWh: 50_001 })).toBe('above_capacity');
      expect(await refusal(BUYER, { side: 'buy', energyWh: 10_000_001 })).toBe('above_max_volume');
      now = Date.parse('2026-11-30T15:30:00Z'); // 22:30 in Bangkok
      expect(await refusal(SELLER, { side: 'sell', energyWh: 1000 })).toBe('market_closed');
      // Nothing of the refused orders was kept or held.
      expect(await market.store.orders({})).toEqual([]);
      expect(await market.money.check()).toEqual([]);
    });

    it('bounds the open orders of one account in a market', async () => {
      for (let i = 0; i < 100; i++) expect((await market.placeOrder(SELLER, MARKET, { side: 'sell', energyWh: 1000 })).ok).toBe(true);
      const r = await market.placeOrder(SELLER, MARKET, { side: 'sell', energyWh: 1000 });
      expect(r.ok ? 'accepted' : r.refusal.code).toBe('too_many_open_orders');
    });

    it('cancels an open order, releasing its escrow; only the owner (or an admin) can', async () => {
      await market.deposit(BUYER, 'THB', 1_000n);
      const buy = await market.placeOrder(BUYER, MARKET, { side: 'buy', energyWh: 1000, limit: 400n });
      if (!buy.ok) throw new Error(buy.refusal.message);
      await expect(market.cancelOrder(SELLER, buy.order.id)).rejects.toMatchObject({ code: 'unknown_order', status: 404 });
      expect((await market.cancelOrder(BUYER, buy.order.id)).status).toBe('cancelled');
      await expect(market.cancelOrder(BUYER, buy.order.id)).rejects.toMatchObject({ code: 'order_closed', status: 409 });
      expect(await market.money.balance(ownerAccount(BUYER, 'THB'))).toBe(1_000n);
      expect(await market.money.check()).toEqual([]);
    });

    it('a missed auction runs late for orders still open, so no escrow outlives its delivery', async () => {
      await market.deposit(BUYER, 'THB', 1_000n);
      const buy = await market.placeOrder(BUYER, MARKET, { side: 'buy', energyWh: 1000, limit: 400n });
      if (!buy.ok) throw new Error(buy.refusal.message);
      now = DELIVERY + 3 * 3_600_000;
      const due = await market.store.dueDeliveries(MARKET, now, 10);
      expect(due).toEqual([DELIVERY]);
      expect((await market.runAuction(MARKET, DELIVERY - 1_800_000))?.auction).toMatchObject({ clearingPrice: null, volumeWh: 0, orders: 1 });
      expect((await market.store.order(buy.order.id))?.status).toBe('unmatched');
      expect(await market.money.balance(ownerAccount(BUYER, 'THB'))).toBe(1_000n);
    });

    it('price signals follow metered supply and demand, and keep their history', async () => {
      // 10:00–10:15 local: the home imports 2 kWh, the sun exports 1 kWh: scarcity.
      const from = Date.parse('2026-11-30T03:00:00Z');
      await meter(sun, 'sun-1', from, from + 900_000, [0, 0], [0, 1000]);
      await meter(home, 'home-1', from, from + 900_000, [0, 2000], [0, 0]);
      now = from + 900_000 + 5_000;
      const s1 = await market.updatePrice(MARKET);
      expect(s1).toMatchObject({ supplyWh: 1000, demandWh: 2000, ratio: 0.5, intervalStartMs: from });
      expect(s1.price).toBeGreaterThan(400n);
      now += 300_000;
      const s2 = await market.updatePrice(MARKET);
      expect(prices.map((p) => p.old)).toEqual([null, s1.price]);
      expect((await market.store.prices(MARKET, 10)).map((p) => p.computedAtMs)).toEqual([s2.computedAtMs, s1.computedAtMs]);
    });

    it('converts credits at the configured rate, the fee to the fee account, never creating money', async () => {
      await market.deposit(BUYER, 'THB', 100_000n); // 1000.00 THB
      const r = await market.convert(BUYER, 'THB', 'USD', 100_000n);
      expect(r.fee).toBe(100n); // 0.1 %
      expect(r.credit).toBe(2797n); // 999.00 THB × 0.028, rounded down
      expect(await market.money.balance(ownerAccount(BUYER, 'USD'))).toBe(2797n);
      expect(await market.money.balance(systemAccount('fees', 'THB'))).toBe(100n);
      await expect(market.convert(BUYER, 'THB', 'USD', 1n)).rejects.toMatchObject({ code: expect.stringMatching(/bad_conversion|insufficient_credits/) });
      await expect(market.withdraw(BUYER, 'USD', 2798n)).rejects.toMatchObject({ code: 'insufficient_credits' });
      await expect(market.deposit(BUYER, 'THB', 10n ** 15n + 1n)).rejects.toMatchObject({ code: 'bad_amount', status: 400 });
      await expect(market.deposit(BUYER, 'THB', 0n)).rejects.toMatchObject({ code: 'bad_amount' });
      await expect(market.deposit(BUYER, 'JPY', 1n)).rejects.toMatchObject({ code: 'unsupported_currency' });
      await expect(market.deposit('nobody', 'THB', 1n)).rejects.toMatchObject({ code: 'unknown_account', status: 404 });
      expect(await market.money.check()).toEqual([]);
    });
  });
}
