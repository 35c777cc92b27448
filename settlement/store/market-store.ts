import type { AuctionOutcome, BookEntry } from '../market/auction.ts';
import type { DeliveryResult } from '../market/delivery.ts';
import type { PriceSignal } from '../market/pricing.ts';
import { orderId, tradeId, type Currency, type Minor, type OrderId, type PricePerKwh, type Side, type TradeId } from '../market/types.ts';
import { lockOrderBook } from '../ledger/pg-locks.ts';
import type { LedgerDb } from './database.ts';
import type { Trx } from './money-store.ts';

/**
 * Orders, auctions, trades and price history (migration 006), written once for both engines.
 * Writes take a transaction from MoneyStore.transaction, so each goes with its postings.
 */
export type OrderStatus = 'open' | 'filled' | 'partial' | 'unmatched' | 'cancelled';

export interface OrderRecord {
  id: OrderId;
  priority: number;
  account: string;
  market: string;
  side: Side;
  energyWh: number;
  limit: PricePerKwh;
  currency: Currency;
  deliveryStartMs: number;
  deliveryEndMs: number;
  status: OrderStatus;
  filledWh: number;
  escrow: Minor;
  auctionId: string | null;
  createdAtMs: number;
}

export interface AuctionRecord {
  id: string;
  market: string;
  deliveryStartMs: number;
  deliveryEndMs: number;
  runAtMs: number;
  clearingPrice: PricePerKwh | null;
  priceRange: { low: PricePerKwh; high: PricePerKwh } | null;
  volumeWh: number;
  orders: number;
  trades: number;
}

export interface TradeRecord {
  id: TradeId;
  auctionId: string;
  market: string;
  deliveryStartMs: number;
  deliveryEndMs: number;
  buyOrder: OrderId;
  sellOrder: OrderId;
  buyer: string;
  seller: string;
  energyWh: number;
  price: PricePerKwh;
  currency: Currency;
  value: Minor;
  delivery: null | {
    settledAtMs: number;
    sellerMeteredWh: number;
    buyerMeteredWh: number;
    sellerShortWh: number;
    buyerShortWh: number;
    imbalancePrice: PricePerKwh;
    /** What it rests on: the interval, the meters and their energy, the amounts moved. */
    basis: unknown;
  };
}

const big = (s: string) => BigInt(s);
const bigOrNull = (s: string | null) => (s === null ? null : BigInt(s));

export class MarketStore {
  constructor(
    private readonly db: LedgerDb,
    private readonly engine: 'sqlite' | 'postgres',
  ) {}

  // ---- orders ----------------------------------------------------------------------------

  /**
   * Stores a new order with the next time priority of its market. On PostgreSQL under the
   * market's order-book lock, so that orders placed at once on two workers get distinct,
   * increasing priorities (SQLite has one writer).
   */
  async insertOrder(trx: Trx, o: Omit<OrderRecord, 'priority' | 'status' | 'filledWh' | 'auctionId'>): Promise<OrderRecord> {
    if (this.engine === 'postgres') await lockOrderBook(o.market).execute(trx);
    const top = await trx.selectFrom('orders').select((eb) => eb.fn.max('priority').as('p')).where('market', '=', o.market).executeTakeFirst();
    const priority = Number(top?.p ?? 0) + 1;
    const rec: OrderRecord = { ...o, priority, status: 'open', filledWh: 0, auctionId: null };
    await trx
      .insertInto('orders')
      .values({
        id: rec.id,
        priority,
        account: rec.account,
        market: rec.market,
        side: rec.side,
        energy_wh: rec.energyWh,
        limit_price: rec.limit.toString(),
        currency: rec.currency,
        delivery_start_ms: rec.deliveryStartMs,
        delivery_end_ms: rec.deliveryEndMs,
        status: 'open',
        filled_wh: 0,
        escrow: rec.escrow.toString(),
        auction_id: null,
        created_at_ms: rec.createdAtMs,
      })
      .execute();
    return rec;
  }

  async order(id: string, db: LedgerDb | Trx = this.db): Promise<OrderRecord | undefined> {
    const r = await db.selectFrom('orders').selectAll().where('id', '=', id).executeTakeFirst();
    return r && toOrder(r);
  }

  async orders(filter: { account?: string; market?: string; status?: OrderStatus; limit?: number }): Promise<OrderRecord[]> {
    let q = this.db.selectFrom('orders').selectAll().orderBy('created_at_ms', 'desc').orderBy('id');
    if (filter.account !== undefined) q = q.where('account', '=', filter.account);
    if (filter.market !== undefined) q = q.where('market', '=', filter.market);
    if (filter.status !== undefined) q = q.where('status', '=', filter.status);
    q = q.limit(filter.limit ?? 500);
    return (await q.execute()).map(toOrder);
  }

  async openOrderCount(account: string, market: string): Promise<number> {
    const r = await this.db
      .selectFrom('orders')
      .select((eb) => eb.fn.countAll<number>().as('n'))
      .where('account', '=', account)
      .where('market', '=', market)
      .where('status', '=', 'open')
      .executeTakeFirst();
    return Number(r?.n ?? 0);
  }

  /** Marks an open order cancelled; false when it is no longer open (cleared, or cancelled already). */
  async cancelOrder(trx: Trx, id: string): Promise<boolean> {
    const r = await trx.updateTable('orders').set({ status: 'cancelled', escrow: '0' }).where('id', '=', id).where('status', '=', 'open').executeTakeFirst();
    return Number(r.numUpdatedRows) === 1;
  }

  /** The open orders for one delivery interval of a market: an auction's book. */
  async book(trx: Trx, market: string, deliveryStartMs: number): Promise<BookEntry[]> {
    const rows = await trx
      .selectFrom('orders')
      .selectAll()
      .where('market', '=', market)
      .where('delivery_start_ms', '=', deliveryStartMs)
      .where('status', '=', 'open')
      .orderBy('priority')
      .execute();
    return rows.map((r) => ({
      id: orderId(r.id),
      account: r.account,
      side: r.side,
      energyWh: Number(r.energy_wh),
      limit: big(r.limit_price),
      priority: Number(r.priority),
      escrow: big(r.escrow),
    }));
  }

  /** Delivery starts up to `byMs` with open orders, oldest first: auctions that are due. */
  async dueDeliveries(market: string, byMs: number, limit: number): Promise<number[]> {
    const rows = await this.db
      .selectFrom('orders')
      .select('delivery_start_ms')
      .distinct()
      .where('market', '=', market)
      .where('status', '=', 'open')
      .where('delivery_start_ms', '<=', byMs)
      .orderBy('delivery_start_ms')
      .limit(limit)
      .execute();
    return rows.map((r) => Number(r.delivery_start_ms));
  }

  // ---- auctions and trades ----------------------------------------------------------------

  /**
   * Claims the auction of (market, delivery start): false when one is stored already (another
   * worker, or an earlier run, cleared it). The insert is the claim, so it comes first.
   */
  async claimAuction(trx: Trx, a: Omit<AuctionRecord, 'clearingPrice' | 'priceRange' | 'volumeWh' | 'orders' | 'trades'>): Promise<boolean> {
    const r = await trx
      .insertInto('auctions')
      .values({
        id: a.id,
        market: a.market,
        delivery_start_ms: a.deliveryStartMs,
        delivery_end_ms: a.deliveryEndMs,
        run_at_ms: a.runAtMs,
        clearing_price: null,
        price_low: null,
        price_high: null,
        volume_wh: 0,
        orders: 0,
        trades: 0,
      })
      // Any conflict: the id is made from (market, delivery), so racing workers collide on both keys.
      .onConflict((oc) => oc.doNothing())
      .executeTakeFirst();
    return Number(r.numInsertedOrUpdatedRows ?? 0n) === 1;
  }

  /** Stores what the auction decided: its result, the trades and each order's fill. */
  async recordAuction(trx: Trx, a: AuctionRecord, outcome: AuctionOutcome, currency: Currency): Promise<void> {
    await trx
      .updateTable('auctions')
      .set({
        clearing_price: a.clearingPrice?.toString() ?? null,
        price_low: a.priceRange?.low.toString() ?? null,
        price_high: a.priceRange?.high.toString() ?? null,
        volume_wh: a.volumeWh,
        orders: a.orders,
        trades: a.trades,
      })
      .where('id', '=', a.id)
      .execute();
    if (outcome.trades.length) {
      // In chunks: a million-order book can give hundreds of thousands of trades.
      for (let i = 0; i < outcome.trades.length; i += 500) {
        await trx
          .insertInto('trades')
          .values(
            outcome.trades.slice(i, i + 500).map((t) => ({
              id: t.id,
              auction_id: a.id,
              market: a.market,
              delivery_start_ms: a.deliveryStartMs,
              delivery_end_ms: a.deliveryEndMs,
              buy_order: t.buyOrder,
              sell_order: t.sellOrder,
              buyer: t.buyer,
              seller: t.seller,
              energy_wh: t.energyWh,
              price: t.price.toString(),
              currency,
              value: t.value.toString(),
              settled_at_ms: null,
              seller_metered_wh: null,
              buyer_metered_wh: null,
              seller_short_wh: null,
              buyer_short_wh: null,
              imbalance_price: null,
              settlement: null,
            })),
          )
          .execute();
      }
    }
    for (const o of outcome.orders) {
      await trx.updateTable('orders').set({ status: o.status, filled_wh: o.filledWh, escrow: '0', auction_id: a.id }).where('id', '=', o.id).execute();
    }
  }

  async auctions(market: string, limit = 50): Promise<AuctionRecord[]> {
    const rows = await this.db.selectFrom('auctions').selectAll().where('market', '=', market).orderBy('delivery_start_ms', 'desc').limit(limit).execute();
    return rows.map((r) => ({
      id: r.id,
      market: r.market,
      deliveryStartMs: Number(r.delivery_start_ms),
      deliveryEndMs: Number(r.delivery_end_ms),
      runAtMs: Number(r.run_at_ms),
      clearingPrice: bigOrNull(r.clearing_price),
      priceRange: r.price_low === null || r.price_high === null ? null : { low: big(r.price_low), high: big(r.price_high) },
      volumeWh: Number(r.volume_wh),
      orders: Number(r.orders),
      trades: Number(r.trades),
    }));
  }

  async trades(filter: { auctionId?: string; account?: string; market?: string; limit?: number }): Promise<TradeRecord[]> {
    let q = this.db.selectFrom('trades').selectAll().orderBy('delivery_start_ms', 'desc').orderBy('id');
    if (filter.auctionId !== undefined) q = q.where('auction_id', '=', filter.auctionId);
    if (filter.market !== undefined) q = q.where('market', '=', filter.market);
    if (filter.account !== undefined) {
      const a = filter.account;
      q = q.where((eb) => eb.or([eb('buyer', '=', a), eb('seller', '=', a)]));
    }
    return (await q.limit(filter.limit ?? 500).execute()).map(toTrade);
  }

  /** A market's unsettled trades whose delivery ended at or before `endedByMs`, one interval (the oldest) at a time. */
  async unsettledInterval(trx: Trx, market: string, endedByMs: number): Promise<TradeRecord[]> {
    const first = await trx
      .selectFrom('trades')
      .select('delivery_start_ms')
      .where('market', '=', market)
      .where('settled_at_ms', 'is', null)
      .where('delivery_end_ms', '<=', endedByMs)
      .orderBy('delivery_end_ms')
      .limit(1)
      .executeTakeFirst();
    if (!first) return [];
    const rows = await trx
      .selectFrom('trades')
      .selectAll()
      .where('market', '=', market)
      .where('delivery_start_ms', '=', first.delivery_start_ms)
      .where('settled_at_ms', 'is', null)
      .orderBy('id')
      .execute();
    return rows.map(toTrade);
  }

  async recordDelivery(trx: Trx, r: DeliveryResult, atMs: number, imbalancePrice: PricePerKwh, basis: unknown): Promise<boolean> {
    const u = await trx
      .updateTable('trades')
      .set({
        settled_at_ms: atMs,
        seller_metered_wh: r.sellerMeteredWh,
        buyer_metered_wh: r.buyerMeteredWh,
        seller_short_wh: r.sellerShortWh,
        buyer_short_wh: r.buyerShortWh,
        imbalance_price: imbalancePrice.toString(),
        settlement: JSON.stringify(basis),
      })
      .where('id', '=', r.id)
      .where('settled_at_ms', 'is', null)
      .executeTakeFirst();
    return Number(u.numUpdatedRows) === 1;
  }

  /**
   * Each account's metered import and export in the market over [fromMs, toMs) (whole energy
   * intervals), with the meters behind it: what delivery is settled against.
   */
  async meteredByAccount(
    trx: Trx,
    market: string,
    fromMs: number,
    toMs: number,
  ): Promise<{ importWh: Map<string, number>; exportWh: Map<string, number>; meters: Map<string, Array<{ meter: string; importWh: number; exportWh: number }>> }> {
    const rows = await trx
      .selectFrom('interval_energy as ie')
      .innerJoin('meters as m', 'm.id', 'ie.meter')
      .select((eb) => ['m.owner', 'ie.meter', eb.fn.sum<number>('ie.import_wh').as('import_wh'), eb.fn.sum<number>('ie.export_wh').as('export_wh')])
      .where('ie.market', '=', market)
      .where('ie.start_ms', '>=', fromMs)
      .where('ie.start_ms', '<', toMs)
      .groupBy(['m.owner', 'ie.meter'])
      .orderBy('ie.meter')
      .execute();
    const importWh = new Map<string, number>();
    const exportWh = new Map<string, number>();
    const meters = new Map<string, Array<{ meter: string; importWh: number; exportWh: number }>>();
    for (const r of rows) {
      const imp = Number(r.import_wh);
      const exp = Number(r.export_wh);
      importWh.set(r.owner, (importWh.get(r.owner) ?? 0) + imp);
      exportWh.set(r.owner, (exportWh.get(r.owner) ?? 0) + exp);
      meters.set(r.owner, [...(meters.get(r.owner) ?? []), { meter: r.meter, importWh: imp, exportWh: exp }]);
    }
    return { importWh, exportWh, meters };
  }

  /** How much the market holds, for status lines and metrics. */
  async counts(): Promise<{ openOrders: number; auctions: number; trades: number; settledTrades: number }> {
    const one = async (q: Promise<{ n: number | string | bigint } | undefined>) => Number((await q)?.n ?? 0);
    return {
      openOrders: await one(this.db.selectFrom('orders').select((eb) => eb.fn.countAll<number>().as('n')).where('status', '=', 'open').executeTakeFirst()),
      auctions: await one(this.db.selectFrom('auctions').select((eb) => eb.fn.countAll<number>().as('n')).executeTakeFirst()),
      trades: await one(this.db.selectFrom('trades').select((eb) => eb.fn.countAll<number>().as('n')).executeTakeFirst()),
      settledTrades: await one(this.db.selectFrom('trades').select((eb) => eb.fn.countAll<number>().as('n')).where('settled_at_ms', 'is not', null).executeTakeFirst()),
    };
  }

  // ---- price history ----------------------------------------------------------------------

  async putPrice(s: PriceSignal): Promise<void> {
    await this.db
      .insertInto('price_signals')
      .values({
        market: s.market,
        computed_at_ms: s.computedAtMs,
        valid_until_ms: s.validUntilMs,
        price: s.price.toString(),
        ratio_ppm: Math.round(s.ratio * 1e6),
        supply_wh: s.supplyWh,
        demand_wh: s.demandWh,
        interval_start_ms: s.intervalStartMs,
      })
      .onConflict((oc) => oc.columns(['market', 'computed_at_ms']).doNothing())
      .execute();
  }

  /** Newest first. */
  async prices(market: string, limit: number): Promise<PriceSignal[]> {
    const rows = await this.db.selectFrom('price_signals').selectAll().where('market', '=', market).orderBy('computed_at_ms', 'desc').limit(limit).execute();
    return rows.map((r) => ({
      market: r.market,
      price: big(r.price),
      ratio: Number(r.ratio_ppm) / 1e6,
      supplyWh: Number(r.supply_wh),
      demandWh: Number(r.demand_wh),
      computedAtMs: Number(r.computed_at_ms),
      validUntilMs: Number(r.valid_until_ms),
      intervalStartMs: r.interval_start_ms === null ? null : Number(r.interval_start_ms),
    }));
  }
}

type OrderRow = import('./database.ts').OrdersTable;

function toOrder(r: OrderRow): OrderRecord {
  return {
    id: orderId(r.id),
    priority: Number(r.priority),
    account: r.account,
    market: r.market,
    side: r.side,
    energyWh: Number(r.energy_wh),
    limit: big(r.limit_price),
    currency: r.currency as Currency,
    deliveryStartMs: Number(r.delivery_start_ms),
    deliveryEndMs: Number(r.delivery_end_ms),
    status: r.status,
    filledWh: Number(r.filled_wh),
    escrow: big(r.escrow),
    auctionId: r.auction_id,
    createdAtMs: Number(r.created_at_ms),
  };
}

function toTrade(r: import('./database.ts').TradesTable): TradeRecord {
  return {
    id: tradeId(r.id),
    auctionId: r.auction_id,
    market: r.market,
    deliveryStartMs: Number(r.delivery_start_ms),
    deliveryEndMs: Number(r.delivery_end_ms),
    buyOrder: orderId(r.buy_order),
    sellOrder: orderId(r.sell_order),
    buyer: r.buyer,
    seller: r.seller,
    energyWh: Number(r.energy_wh),
    price: big(r.price),
    currency: r.currency as Currency,
    value: big(r.value),
    delivery:
      r.settled_at_ms === null
        ? null
        : {
            settledAtMs: Number(r.settled_at_ms),
            sellerMeteredWh: Number(r.seller_metered_wh),
            buyerMeteredWh: Number(r.buyer_metered_wh),
            sellerShortWh: Number(r.seller_short_wh),
            buyerShortWh: Number(r.buyer_short_wh),
            imbalancePrice: big(r.imbalance_price ?? '0'),
            basis: r.settlement === null ? null : (JSON.parse(r.settlement) as unknown),
          },
  };
}
