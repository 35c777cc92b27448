import { move, ownerAccount, systemAccount, type Transfer } from './accounts.ts';
import { clearAuction, type ClearingResult } from './clearing.ts';
import { valueOf } from './money.ts';
import { tradeId, type AuctionId, type Currency, type Minor, type OrderId, type PricePerKwh, type Side, type TradeId } from './types.ts';

/**
 * What an auction does with its book, free of storage: clears it (clearing.ts), turns the fills
 * into trades at the uniform price, and releases what buyers hold in escrow beyond their trades.
 *
 * Money: a buy order holds limit × energy (rounded up) in escrow from acceptance. A trade's
 * value is price × energy rounded down to a whole minor unit (in the buyer's favour; the seller
 * is paid exactly that amount, so nothing is created), which can never exceed what the order
 * holds because price ≤ limit and the fills of an order add up to at most its energy. The
 * trade values stay in escrow until the delivery is settled against meter data (delivery.ts);
 * the rest of each buyer's escrow goes back to the buyer now.
 */
export interface BookEntry {
  id: OrderId;
  account: string;
  side: Side;
  energyWh: number;
  limit: PricePerKwh;
  priority: number;
  /** What the order holds in escrow now. */
  escrow: Minor;
}

export interface TradeDraft {
  id: TradeId;
  buyOrder: OrderId;
  sellOrder: OrderId;
  buyer: string;
  seller: string;
  energyWh: number;
  price: PricePerKwh;
  value: Minor;
}

export type FillStatus = 'filled' | 'partial' | 'unmatched';

export interface OrderResult {
  id: OrderId;
  status: FillStatus;
  filledWh: number;
  /** Escrow given back to the buyer now. */
  releasedWh: number;
  released: Minor;
}

export interface AuctionOutcome {
  result: ClearingResult;
  trades: TradeDraft[];
  orders: OrderResult[];
  transfers: Transfer[];
}

/**
 * `excluded`: open orders of this delivery left out of the clearing (below the auction's
 * min_volume, or their limit out of its price band): they end unmatched, their escrow released.
 */
export function runAuction(auction: AuctionId, book: readonly BookEntry[], currency: Currency, excluded: readonly BookEntry[] = []): AuctionOutcome {
  const result = clearAuction(book.map((o) => ({ id: o.id, side: o.side, energyWh: o.energyWh, limit: o.limit, seq: o.priority })));
  const trades: TradeDraft[] = [];
  const tradeValue = new Map<OrderId, Minor>();
  if (result.price !== null) {
    const price = result.price;
    const { fills } = result;
    for (let n = 0; n < fills.buy.length; n++) {
      const buy = book[fills.buy[n]!]!;
      const sell = book[fills.sell[n]!]!;
      const energyWh = fills.energyWh[n]!;
      const value = valueOf(price, energyWh, 'down');
      // Zero-padded, so the id order (in which delivery shares out metered energy) is fill order.
      trades.push({ id: tradeId(`${auction}-${String(n + 1).padStart(7, '0')}`), buyOrder: buy.id, sellOrder: sell.id, buyer: buy.account, seller: sell.account, energyWh, price, value });
      tradeValue.set(buy.id, (tradeValue.get(buy.id) ?? 0n) + value);
    }
  }
  const orders: OrderResult[] = [];
  const transfers: Transfer[] = [];
  const all = [...book, ...excluded];
  for (const [i, o] of all.entries()) {
    const filledWh = i < book.length ? result.filledWh[i]! : 0;
    const status: FillStatus = filledWh === 0 ? 'unmatched' : filledWh === o.energyWh ? 'filled' : 'partial';
    const released = o.side === 'buy' ? o.escrow - (tradeValue.get(o.id) ?? 0n) : 0n;
    if (released < 0n) throw new Error(`order ${o.id}: trades worth more than its escrow (${o.escrow})`);
    if (released > 0n) {
      transfers.push(move('escrow_release', { kind: 'order', id: o.id }, systemAccount('escrow', currency), ownerAccount(o.account, currency), currency, released, `auction ${auction}`));
    }
    orders.push({ id: o.id, status, filledWh, releasedWh: o.energyWh - filledWh, released });
  }
  return { result, trades, orders, transfers };
}
