import type { TradeDraft } from '../market/auction.ts';
import type { SettledTrade } from '../market/market.ts';
import { formatAmount, formatPrice } from '../market/money.ts';
import type { PriceSignal } from '../market/pricing.ts';
import { priceSignalView, type PriceSignalView } from '../market/price-view.ts';
import type { Currency, PricePerKwh } from '../market/types.ts';
import type { AuctionRecord } from '../store/market-store.ts';
import type { RecRecord } from '../store/rec-store.ts';

/**
 * The facts the settlement announces to live subscribers (GET /api/v1/events), each in its wire
 * form: money and prices as decimal strings with their currency, energy as integer Wh, instants
 * as ISO-8601 UTC. `accounts` says whose event it is: null for market-wide facts everyone may
 * see, otherwise the registry accounts it concerns (hub.ts delivers it to those accounts'
 * subscribers and to those that see everything).
 */
export const LIVE_EVENT_TYPES = ['price', 'auction', 'certificate', 'trade', 'settlement', 'reading'] as const;
export type LiveEventType = (typeof LIVE_EVENT_TYPES)[number];

/** A price signal as the API shows it (market/price-view.ts), with the price it replaced. */
export type PriceEventData = PriceSignalView & { oldPrice: string | null };

export interface AuctionEventData {
  id: string;
  market: string;
  deliveryStart: string;
  deliveryEnd: string;
  ranAt: string;
  /** null when bids and asks did not cross. */
  clearingPrice: string | null;
  currency: Currency;
  volumeWh: number;
  trades: number;
  orders: number;
}

export interface CertificateEventData {
  id: string;
  owner: string;
  /** The generation meter whose verified export the certificate rests on. */
  meter: string;
  market: string;
  energySource: string;
  volumeWh: number;
  periodStart: string;
  periodEnd: string;
  issuedAt: string;
}

export interface TradeEventData {
  id: string;
  auctionId: string;
  market: string;
  buyer: string;
  seller: string;
  energyWh: number;
  price: string;
  value: string;
  currency: Currency;
  deliveryStart: string;
  deliveryEnd: string;
}

export interface SettlementEventData {
  tradeId: string;
  market: string;
  buyer: string;
  seller: string;
  energyWh: number;
  /** The seller's metered export this trade was settled against (what was delivered). */
  deliveredWh: number;
  buyerMeteredWh: number;
  sellerShortWh: number;
  buyerShortWh: number;
  sellerPaid: string;
  buyerRefund: string;
  sellerPenalty: string;
  buyerBuyback: string;
  imbalancePrice: string;
  currency: Currency;
  deliveryStart: string;
  deliveryEnd: string;
  settledAt: string;
}

export interface ReadingEventData {
  meter: string;
  /** The registry account that owns the meter. */
  account: string;
  seq: number;
  ts: string;
  powerW: number;
  importWh: number;
  exportWh: number;
}

export type LiveEvent =
  | { type: 'price'; accounts: null; data: PriceEventData }
  | { type: 'auction'; accounts: null; data: AuctionEventData }
  | { type: 'certificate'; accounts: readonly string[]; data: CertificateEventData }
  | { type: 'trade'; accounts: readonly string[]; data: TradeEventData }
  | { type: 'settlement'; accounts: readonly string[]; data: SettlementEventData }
  | { type: 'reading'; accounts: readonly string[]; data: ReadingEventData };

const iso = (ms: number) => new Date(ms).toISOString();
/** Buyer and seller, once when an account traded with itself. */
const parties = (buyer: string, seller: string): readonly string[] => (buyer === seller ? [buyer] : [buyer, seller]);

export function priceEvent(s: PriceSignal, oldPrice: PricePerKwh | null, currency: Currency): LiveEvent {
  const view = priceSignalView(s, currency);
  return { type: 'price', accounts: null, data: { ...view, oldPrice: oldPrice === null ? null : formatPrice(oldPrice, currency) } };
}

export function auctionEvent(a: AuctionRecord, currency: Currency): LiveEvent {
  return {
    type: 'auction',
    accounts: null,
    data: {
      id: a.id,
      market: a.market,
      deliveryStart: iso(a.deliveryStartMs),
      deliveryEnd: iso(a.deliveryEndMs),
      ranAt: iso(a.runAtMs),
      clearingPrice: a.clearingPrice === null ? null : formatPrice(a.clearingPrice, currency),
      currency,
      volumeWh: a.volumeWh,
      trades: a.trades,
      orders: a.orders,
    },
  };
}

export function tradeEvent(a: AuctionRecord, t: TradeDraft, currency: Currency): LiveEvent {
  return {
    type: 'trade',
    accounts: parties(t.buyer, t.seller),
    data: {
      id: t.id,
      auctionId: a.id,
      market: a.market,
      buyer: t.buyer,
      seller: t.seller,
      energyWh: t.energyWh,
      price: formatPrice(t.price, currency),
      value: formatAmount(t.value, currency),
      currency,
      deliveryStart: iso(a.deliveryStartMs),
      deliveryEnd: iso(a.deliveryEndMs),
    },
  };
}

export function settlementEvent({ trade: t, result: r, imbalancePrice, settledAtMs }: SettledTrade): LiveEvent {
  const c = t.currency;
  return {
    type: 'settlement',
    accounts: parties(t.buyer, t.seller),
    data: {
      tradeId: t.id,
      market: t.market,
      buyer: t.buyer,
      seller: t.seller,
      energyWh: t.energyWh,
      deliveredWh: r.sellerMeteredWh,
      buyerMeteredWh: r.buyerMeteredWh,
      sellerShortWh: r.sellerShortWh,
      buyerShortWh: r.buyerShortWh,
      sellerPaid: formatAmount(r.sellerPaid, c),
      buyerRefund: formatAmount(r.buyerRefund, c),
      sellerPenalty: formatAmount(r.sellerPenalty, c),
      buyerBuyback: formatAmount(r.buyerBuyback, c),
      imbalancePrice: formatPrice(imbalancePrice, c),
      currency: c,
      deliveryStart: iso(t.deliveryStartMs),
      deliveryEnd: iso(t.deliveryEndMs),
      settledAt: iso(settledAtMs),
    },
  };
}

export function certificateEvent(rec: RecRecord): LiveEvent {
  return {
    type: 'certificate',
    accounts: [rec.owner],
    data: {
      id: rec.id,
      owner: rec.owner,
      meter: rec.meter,
      market: rec.market,
      energySource: rec.energySource,
      volumeWh: rec.volumeWh,
      periodStart: iso(rec.periodStartMs),
      periodEnd: iso(rec.periodEndMs),
      issuedAt: iso(rec.issuedAtMs),
    },
  };
}

/** The fields of a committed reading the event carries (a VerifiedReading has them). */
export interface CommittedReading {
  meter: string;
  seq: number;
  ts: string;
  powerW: number;
  importWh: number;
  exportWh: number;
}

export function readingEvent(r: CommittedReading, owner: string): LiveEvent {
  return {
    type: 'reading',
    accounts: [owner],
    data: { meter: r.meter, account: owner, seq: r.seq, ts: r.ts, powerW: r.powerW, importWh: r.importWh, exportWh: r.exportWh },
  };
}
