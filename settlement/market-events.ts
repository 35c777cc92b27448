import type { Logger } from 'pino';
import { topics, type AuctionCompletedMessage, type PriceSignalMessage } from '../protocol/index.ts';
import type { MarketEvents } from './market/market.ts';
import type { SettlementMetrics } from './metrics.ts';
import { formatPrice } from './market/money.ts';
import type { Currency } from './market/types.ts';
import type { EventHub } from './events/hub.ts';
import { auctionEvent, priceEvent, settlementEvent, tradeEvent } from './events/live-events.ts';
import type { SinkAuction, SinkPrice } from './timeseries/influx-sink.ts';

/**
 * The market's events as the world hears them: a log line with the fields an operator greps
 * for, and a message on the market's MQTT topic (the price retained), in the wire format of
 * protocol/messages.ts. A publish that fails is logged; the ledger already holds the fact.
 * With a `hub`, the same facts (and each trade and its delivery settlement) go to live
 * subscribers too (GET /api/v1/events).
 */
export function marketEventPublisher(d: {
  log: Logger;
  metrics?: SettlementMetrics;
  publish: (topic: string, payload: string) => Promise<void>;
  currency: (market: string) => Currency;
  hub?: EventHub;
  /** The InfluxDB sink: each price signal and auction outcome for the dashboards (never awaited). */
  timeseries?: { price(p: SinkPrice): void; auction(a: SinkAuction): void };
}): MarketEvents {
  const iso = (ms: number) => new Date(ms).toISOString();
  const send = (topic: string, msg: unknown) => d.publish(topic, JSON.stringify(msg)).catch((e: unknown) => d.log.warn({ err: e, topic }, 'market event not published'));
  return {
    orderDecided(market, result) {
      d.metrics?.marketOrders.inc({ market, result });
    },
    deliveriesSettled(market, trades, settled) {
      d.metrics?.marketTradesSettled.inc(trades);
      d.log.info({ event: 'DeliveriesSettled', market, trades }, 'trades settled against metered energy');
      if (d.hub?.active) for (const t of settled) d.hub.publish(settlementEvent(t));
    },
    priceUpdated(s, oldPrice) {
      d.metrics?.marketPrice.set({ market: s.market, currency: d.currency(s.market) }, Number(s.price));
      d.log.info({ event: 'PriceSignalUpdated', market: s.market, price: s.price.toString(), old_price: oldPrice?.toString() ?? null, ratio: s.ratio, supply_wh: s.supplyWh, demand_wh: s.demandWh }, 'price signal updated');
      const msg: PriceSignalMessage = {
        v: 1,
        event: 'PriceSignalUpdated',
        market: s.market,
        price: formatPrice(s.price, d.currency(s.market)),
        old_price: oldPrice === null ? null : formatPrice(oldPrice, d.currency(s.market)),
        currency: d.currency(s.market),
        ratio: s.ratio,
        supply_wh: s.supplyWh,
        demand_wh: s.demandWh,
        interval_start: s.intervalStartMs === null ? null : iso(s.intervalStartMs),
        computed_at: iso(s.computedAtMs),
        valid_until: iso(s.validUntilMs),
      };
      void send(topics.price(s.market), msg);
      d.timeseries?.price({ market: s.market, currency: d.currency(s.market), computedAtMs: s.computedAtMs, priceMinorPerKwh: s.price, ratio: s.ratio });
      if (d.hub?.active) d.hub.publish(priceEvent(s, oldPrice, d.currency(s.market)));
    },
    auctionCompleted(a, trades) {
      d.metrics?.marketAuctions.inc({ market: a.market, crossed: String(a.clearingPrice !== null) });
      d.metrics?.marketTradedWh.inc({ market: a.market }, a.volumeWh);
      d.log.info(
        { event: 'AuctionCompleted', market: a.market, auction: a.id, clearing_price: a.clearingPrice?.toString() ?? null, volume_wh: a.volumeWh, trades: a.trades, orders: a.orders },
        'auction completed',
      );
      const msg: AuctionCompletedMessage = {
        v: 1,
        event: 'AuctionCompleted',
        market: a.market,
        auction_id: a.id,
        delivery_start: iso(a.deliveryStartMs),
        delivery_end: iso(a.deliveryEndMs),
        clearing_price: a.clearingPrice === null ? null : formatPrice(a.clearingPrice, d.currency(a.market)),
        currency: d.currency(a.market),
        total_volume_wh: a.volumeWh,
        trades_count: a.trades,
        orders_count: a.orders,
      };
      void send(topics.auction(a.market), msg);
      d.timeseries?.auction({
        market: a.market,
        currency: d.currency(a.market),
        auctionId: a.id,
        deliveryStartMs: a.deliveryStartMs,
        clearingPriceMinorPerKwh: a.clearingPrice,
        volumeWh: a.volumeWh,
        trades: a.trades,
        orders: a.orders,
      });
      if (d.hub?.active) {
        const currency = d.currency(a.market);
        d.hub.publish(auctionEvent(a, currency));
        for (const t of trades) d.hub.publish(tradeEvent(a, t, currency));
      }
    },
  };
}
