import { valueOf } from './money.ts';
import { earliestDelivery, intervalMs, isDeliveryStart, isOpen, priceBand, type MarketRules } from './rules.ts';
import type { Minor, PricePerKwh, Side } from './types.ts';

/**
 * Whether an order may enter the book, decided from what the caller looked up (the market's
 * rules, its indicative price, the seller's meters). Funds are checked where the escrow is
 * posted (the money ledger refuses an overdraft), so that check and hold are one step.
 */
export interface OrderRequest {
  side: Side;
  energyWh: number;
  /** Absent: the current indicative price. */
  limit?: PricePerKwh;
  /** Absent: the earliest delivery interval still open to orders. */
  deliveryStartMs?: number;
}

export interface OrderContext {
  rules: MarketRules;
  timeZone: string;
  nowMs: number;
  indicative: PricePerKwh;
  /** Generation or bidirectional meters the account has enrolled in the market. */
  supplyMeters: number;
  /** Their rated power summed, W: a sale cannot exceed what they can export in the interval. */
  supplyRatedPowerW: number;
  /** The account's open orders in the market now. */
  openOrders: number;
}

/** Largest order: 10 MWh. Bounds what one order adds to an auction's totals. */
export const MAX_ORDER_WH = 10_000_000;
/** Open orders per account and market: bounds the book and the rows one key can create. */
export const MAX_OPEN_ORDERS = 100;

export type OrderRefusalCode =
  | 'below_min_volume'
  | 'price_out_of_band'
  | 'market_closed'
  | 'delivery_not_open'
  | 'no_supply_meter'
  | 'above_capacity'
  | 'above_max_volume'
  | 'too_many_open_orders'
  | 'insufficient_credits';

export interface OrderRefusal {
  code: OrderRefusalCode;
  message: string;
}

export interface AcceptedOrder {
  limit: PricePerKwh;
  deliveryStartMs: number;
  deliveryEndMs: number;
  /** Held from a buyer on acceptance: limit × energy, rounded up; 0 for a sell order. */
  escrow: Minor;
}

const kwh = (wh: number) => (wh / 1000).toFixed(3);

export function checkOrder(req: OrderRequest, ctx: OrderContext): { ok: true; order: AcceptedOrder } | { ok: false; refusal: OrderRefusal } {
  const { rules, timeZone, nowMs } = ctx;
  const refuse = (code: OrderRefusalCode, message: string) => ({ ok: false as const, refusal: { code, message } });
  if (!isOpen(rules, timeZone, nowMs)) {
    const hh = (m: number) => `${String(Math.floor(m / 60)).padStart(2, '0')}:${String(m % 60).padStart(2, '0')}`;
    return refuse('market_closed', `the market takes orders from ${hh(rules.auction.openMinute)} to ${hh(rules.auction.closeMinute)} ${timeZone}`);
  }
  if (ctx.openOrders >= MAX_OPEN_ORDERS) {
    return refuse('too_many_open_orders', `an account may have at most ${MAX_OPEN_ORDERS} open orders in a market; cancel some or wait for their auctions`);
  }
  if (req.energyWh > MAX_ORDER_WH) {
    return refuse('above_max_volume', `an order may be at most ${kwh(MAX_ORDER_WH)} kWh, got ${kwh(req.energyWh)}`);
  }
  if (req.energyWh < rules.auction.minVolumeWh) {
    return refuse('below_min_volume', `an order needs at least ${kwh(rules.auction.minVolumeWh)} kWh, got ${kwh(req.energyWh)}`);
  }
  const earliest = earliestDelivery(rules, timeZone, nowMs);
  const start = req.deliveryStartMs ?? earliest;
  if (!isDeliveryStart(rules, timeZone, start)) {
    return refuse('delivery_not_open', `delivery must start on a ${rules.auction.intervalMinutes}-minute boundary in ${timeZone}, e.g. ${new Date(earliest).toISOString()}`);
  }
  if (start < earliest) {
    return refuse('delivery_not_open', `delivery starting ${new Date(start).toISOString()} is past gate closure; the earliest open is ${new Date(earliest).toISOString()}`);
  }
  // Orders for up to a day ahead: bounds the book an auction ever has to look at.
  if (start > earliest + 86_400_000) {
    return refuse('delivery_not_open', `delivery can be at most 24 h after ${new Date(earliest).toISOString()}`);
  }
  const limit = req.limit ?? ctx.indicative;
  const band = priceBand(rules, ctx.indicative);
  if (limit < band.low || limit > band.high) {
    return refuse(
      'price_out_of_band',
      `limit ${limit} is more than ${rules.auction.maxPriceDeviationPpm / 10_000} % from the indicative price ${ctx.indicative} (minor units per kWh); allowed ${band.low}..${band.high}`,
    );
  }
  if (req.side === 'sell' && ctx.supplyMeters === 0) {
    return refuse('no_supply_meter', 'a seller needs an enrolled generation or bidirectional meter in this market');
  }
  // What the seller's meters could export in one delivery interval at their rated power.
  const capacityWh = Math.floor((ctx.supplyRatedPowerW * rules.auction.intervalMinutes) / 60);
  if (req.side === 'sell' && req.energyWh > capacityWh) {
    return refuse('above_capacity', `the account's supply meters (${ctx.supplyRatedPowerW} W rated) can export at most ${kwh(capacityWh)} kWh in a ${rules.auction.intervalMinutes}-minute interval`);
  }
  const escrow = req.side === 'buy' ? valueOf(limit, req.energyWh, 'up') : 0n;
  return { ok: true, order: { limit, deliveryStartMs: start, deliveryEndMs: start + intervalMs(rules), escrow } };
}
