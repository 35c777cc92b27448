import { Value } from '@sinclair/typebox/value';
import mqtt from 'mqtt';
import { afterEach, describe, expect, it } from 'vitest';
import { AuctionCompletedMessageSchema, PriceSignalMessageSchema, generateGatewayKeyPair, topics } from '../../protocol/index.ts';
import { startSettlement } from '../../settlement/main.ts';
import { enrollTestGateway, TEST_MARKET } from '../support/registry.ts';
import { settlementConfig, testLog } from '../support/stack.ts';
import { tempDir } from '../support/tmp.ts';
import { waitFor } from '../support/wait.ts';

/**
 * The market's messages on a real broker (the settlement's embedded aedes), as a subscriber
 * sees them: the price signal retained, the auction result once, both in the documented format.
 */
describe('market messages over MQTT', () => {
  const cleanups: Array<() => unknown> = [];
  afterEach(async () => {
    for (const c of cleanups.reverse()) await c();
    cleanups.length = 0;
  });

  it('publishes the price signal retained and each auction result, as docs/protocol.md says', async () => {
    const dir = tempDir();
    cleanups.push(() => dir.remove());
    const cfg = settlementConfig(dir.path);
    const m = cfg.markets[0]!;
    // Open around the clock, so the test runs at any hour.
    m.rules = { ...m.rules, auction: { ...m.rules.auction, openMinute: 0, closeMinute: 1440 } };
    const s = await startSettlement(cfg, { log: testLog('settlement') });
    cleanups.push(() => s.stop());

    const seen: Array<{ topic: string; body: unknown; retain: boolean }> = [];
    const sub = await mqtt.connectAsync(s.brokerUrl, { clientId: 'market-watcher', reconnectPeriod: 0 });
    cleanups.push(() => sub.endAsync());
    sub.on('message', (topic, payload, packet) => seen.push({ topic, body: JSON.parse(payload.toString()), retain: packet.retain }));
    await sub.subscribeAsync([topics.allPrices, topics.allAuctions], { qos: 1 });

    await s.pricing[0]!.runOnce();
    const price = await waitFor(() => seen.find((x) => x.topic === topics.price(TEST_MARKET)), 'a price signal');
    expect(Value.Check(PriceSignalMessageSchema, price.body), JSON.stringify(price.body)).toBe(true);
    expect(price.body).toMatchObject({ event: 'PriceSignalUpdated', market: TEST_MARKET, price: '4.00', currency: 'THB' });

    // A late subscriber gets the retained signal at once.
    const late = await mqtt.connectAsync(s.brokerUrl, { clientId: 'late-watcher', reconnectPeriod: 0 });
    cleanups.push(() => late.endAsync());
    const retained: Array<{ body: unknown; retain: boolean }> = [];
    late.on('message', (_t, payload, packet) => retained.push({ body: JSON.parse(payload.toString()), retain: packet.retain }));
    await late.subscribeAsync(topics.price(TEST_MARKET), { qos: 1 });
    await waitFor(() => retained.length > 0, 'the retained price signal');
    expect(retained[0]).toMatchObject({ retain: true, body: { event: 'PriceSignalUpdated', market: TEST_MARKET } });

    // A seller and a buyer, an auction: one AuctionCompleted.
    await enrollTestGateway(s.ledger, 'gw-msg-sun', generateGatewayKeyPair().publicKeyPem, ['msg-sun-1']);
    await enrollTestGateway(s.ledger, 'gw-msg-home', generateGatewayKeyPair().publicKeyPem, [
      { id: 'msg-home-1', model: 'eastron-sdm120', role: 'consumption', ratedPowerW: 20_000, energySource: null },
    ]);
    await s.market.deposit('owner-gw-msg-home', 'THB', 100_000n);
    expect((await s.market.placeOrder('owner-gw-msg-sun', TEST_MARKET, { side: 'sell', energyWh: 2000, limit: 380n })).ok).toBe(true);
    expect((await s.market.placeOrder('owner-gw-msg-home', TEST_MARKET, { side: 'buy', energyWh: 1500, limit: 420n })).ok).toBe(true);
    const due = await s.market.store.dueDeliveries(TEST_MARKET, Number.MAX_SAFE_INTEGER, 1);
    const run = await s.market.runAuction(TEST_MARKET, due[0]! - m.rules.auction.intervalMinutes * 60_000);
    expect(run?.trades).toBe(1);
    const auction = await waitFor(() => seen.find((x) => x.topic === topics.auction(TEST_MARKET)), 'an auction result');
    expect(Value.Check(AuctionCompletedMessageSchema, auction.body), JSON.stringify(auction.body)).toBe(true);
    expect(auction.body).toMatchObject({ event: 'AuctionCompleted', clearing_price: '4.00', total_volume_wh: 1500, trades_count: 1, orders_count: 2, auction_id: run!.auction.id });
    expect(auction.retain).toBe(false);

    // And in Prometheus: orders by result, auctions, matched energy, the price.
    const text = await s.metrics.registry.metrics();
    expect(text).toContain(`gtx_market_orders_total{market="${TEST_MARKET}",result="accepted"} 2`);
    expect(text).toContain(`gtx_market_auctions_total{market="${TEST_MARKET}",crossed="true"} 1`);
    expect(text).toContain(`gtx_market_traded_wh_total{market="${TEST_MARKET}"} 1500`);
    expect(text).toContain(`gtx_market_price_minor_per_kwh{market="${TEST_MARKET}",currency="THB"} 400`);
  });
});
