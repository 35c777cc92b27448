import { randomBytes } from 'node:crypto';
import { DomainError } from '../domain-error.ts';
import { intervalStart } from '../energy/intervals.ts';
import type { Ledger } from '../ledger/ledger.ts';
import type { Market as RegistryMarket } from '../registry/registry.ts';
import { MarketStore, type AuctionRecord, type OrderRecord, type TradeRecord } from '../store/market-store.ts';
import { MoneyStore } from '../store/money-store.ts';
import { InsufficientFunds, move, ownerAccount, systemAccount, type Transfer } from './accounts.ts';
import { runAuction, type TradeDraft } from './auction.ts';
import { convert, type FeeFraction, type Rates } from './conversion.ts';
import { settleDeliveries, type DeliveryResult } from './delivery.ts';
import { checkOrder, type OrderRefusal, type OrderRequest } from './orders.ts';
import { indicativePrice, priceSignal, type PriceSignal } from './pricing.ts';
import { deliveryOfAuction, intervalMs, isOpen, priceBand, type MarketRules } from './rules.ts';
import { auctionId, orderId, type Currency, type Minor, type PricePerKwh } from './types.ts';

/**
 * The market's operations over the ledger: orders with their escrow, auctions, delivery
 * settlement, price signals, deposits and conversions. Every operation that moves money is one
 * transaction with its postings. No timers, HTTP or MQTT here: the schedulers (jobs/market-jobs.ts)
 * and the API call these methods, and what the world should hear of goes to `events`.
 */
export interface MarketEvents {
  priceUpdated(signal: PriceSignal, oldPrice: bigint | null): void;
  /** After the auction's commit, with the trades it made (in trade id order). */
  auctionCompleted(auction: AuctionRecord, trades: readonly TradeDraft[]): void;
  /** An order accepted, or refused with this code. */
  orderDecided(market: string, result: 'accepted' | OrderRefusal['code']): void;
  /** Trades of one delivery interval settled against metered energy, after the commit. */
  deliveriesSettled(market: string, trades: number, settled: readonly SettledTrade[]): void;
}

/** One trade as delivery settlement booked it. */
export interface SettledTrade {
  trade: TradeRecord;
  result: DeliveryResult;
  imbalancePrice: PricePerKwh;
  settledAtMs: number;
}

export interface StableCredits {
  currencies: readonly Currency[];
  defaultCurrency: Currency;
  rates: Rates;
  fee: FeeFraction;
}

/** Largest single deposit, withdrawal or conversion: 10^15 minor units (10 trillion THB). */
export const MAX_AMOUNT = 10n ** 15n;

const newId = (prefix: string) => `${prefix}_${randomBytes(9).toString('base64url')}`;

export class MarketService {
  readonly money: MoneyStore;
  readonly store: MarketStore;

  constructor(
    private readonly ledger: Ledger,
    private readonly deps: {
      rules: (market: string) => MarketRules | undefined;
      credits: StableCredits;
      now: () => number;
      events?: Partial<MarketEvents>;
    },
  ) {
    this.money = new MoneyStore(ledger.db, ledger.engine);
    this.store = new MarketStore(ledger.db, ledger.engine);
  }

  /** A market's rules as they hold now (config, overridden by executed proposals). */
  rulesOf(id: string): MarketRules | undefined {
    return this.deps.rules(id);
  }

  private async market(id: string): Promise<{ market: RegistryMarket; rules: MarketRules }> {
    const market = await this.ledger.getMarket(id);
    const rules = market && this.deps.rules(id);
    if (!market || !rules) throw new DomainError('unknown_market', `market ${id} does not exist`, 404);
    return { market, rules };
  }

  // ---- prices ------------------------------------------------------------------------------

  /** The newest price signal of a market, or the balance price when none was computed yet. */
  async currentPrice(marketId: string): Promise<PriceSignal> {
    const { rules } = await this.market(marketId);
    const [last] = await this.store.prices(marketId, 1);
    if (last) return last;
    const now = this.deps.now();
    return priceSignal(marketId, 0, 0, rules.pricing, now, rules.pricing.updateIntervalMs, null);
  }

  /**
   * Computes the indicative price from the metered supply and demand of the market's last
   * complete energy interval, stores it and tells `events`.
   */
  async updatePrice(marketId: string): Promise<PriceSignal> {
    const { market, rules } = await this.market(marketId);
    const now = this.deps.now();
    const energyMs = market.intervalMinutes * 60_000;
    const last = intervalStart(now, energyMs, market.timeZone) - energyMs;
    const [row] = await this.ledger.marketIntervals(marketId, last, last + energyMs);
    const [previous] = await this.store.prices(marketId, 1);
    const signal = priceSignal(marketId, row?.supplyWh ?? 0, row?.demandWh ?? 0, rules.pricing, now, rules.pricing.updateIntervalMs, last);
    await this.store.putPrice(signal);
    this.deps.events?.priceUpdated?.(signal, previous?.price ?? null);
    return signal;
  }

  // ---- orders ------------------------------------------------------------------------------

  async placeOrder(account: string, marketId: string, req: OrderRequest): Promise<{ ok: true; order: OrderRecord } | { ok: false; refusal: OrderRefusal }> {
    const { market, rules } = await this.market(marketId);
    if (!(await this.ledger.getAccount(account))) throw new DomainError('unknown_account', `account ${account} does not exist`, 404);
    const now = this.deps.now();
    const indicative = (await this.currentPrice(marketId)).price;
    const supply = req.side === 'sell' ? (await this.ledger.listMeters({ market: marketId })).filter((m) => m.owner === account && m.role !== 'consumption') : [];
    const openOrders = await this.store.openOrderCount(account, marketId);
    const decided = (result: 'accepted' | OrderRefusal['code']) => this.deps.events?.orderDecided?.(marketId, result);
    const checked = checkOrder(req, {
      rules,
      timeZone: market.timeZone,
      nowMs: now,
      indicative,
      supplyMeters: supply.length,
      supplyRatedPowerW: supply.reduce((a, m) => a + m.ratedPowerW, 0),
      openOrders,
    });
    if (!checked.ok) {
      decided(checked.refusal.code);
      return checked;
    }
    const { order } = checked;
    const currency = rules.currency;
    const id = orderId(newId('ord'));
    try {
      const rec = await this.money.transaction(async (trx) => {
        // The escrow first: its write takes the write lock on SQLite before anything is read.
        if (order.escrow > 0n) {
          await this.money.apply(trx, [move('escrow_hold', { kind: 'order', id }, ownerAccount(account, currency), systemAccount('escrow', currency), currency, order.escrow)], now);
        }
        return this.store.insertOrder(trx, {
          id,
          account,
          market: marketId,
          side: req.side,
          energyWh: req.energyWh,
          limit: order.limit,
          currency,
          deliveryStartMs: order.deliveryStartMs,
          deliveryEndMs: order.deliveryEndMs,
          escrow: order.escrow,
          createdAtMs: now,
        });
      });
      decided('accepted');
      return { ok: true, order: rec };
    } catch (e) {
      if (e instanceof InsufficientFunds) {
        decided('insufficient_credits');
        return {
          ok: false,
          refusal: { code: 'insufficient_credits', message: `this buy order holds ${order.escrow} minor units of ${currency} (limit × energy) and the account has ${e.balance}` },
        };
      }
      throw e;
    }
  }

  /** Cancels an open order of `account` (any account's when `account` is null: admin) and releases its escrow. */
  async cancelOrder(account: string | null, id: string): Promise<OrderRecord> {
    const now = this.deps.now();
    const found = await this.store.order(id);
    // Someone else's order answers as an unknown one: ids are not an oracle.
    if (!found || (account !== null && found.account !== account)) throw new DomainError('unknown_order', `order ${id} does not exist`, 404);
    await this.money.transaction(async (trx) => {
      if (!(await this.store.cancelOrder(trx, id))) throw new DomainError('order_closed', `order ${id} is ${found.status}: only an open order can be cancelled`, 409);
      if (found.escrow > 0n) {
        await this.money.apply(trx, [move('escrow_release', { kind: 'order', id }, systemAccount('escrow', found.currency), ownerAccount(found.account, found.currency), found.currency, found.escrow, 'cancelled')], now);
      }
    });
    return (await this.store.order(id))!;
  }

  // ---- auctions ----------------------------------------------------------------------------

  /**
   * Runs the auction held at boundary `atMs` (default: the current interval's start) for its
   * delivery interval. Returns undefined when that auction was run already. `rules` overrides
   * the configured ones (ScheduleAuctionCommand).
   */
  async runAuction(marketId: string, atMs?: number, overrides?: Partial<MarketRules['auction']>): Promise<{ auction: AuctionRecord; trades: number } | undefined> {
    const { market, rules: base } = await this.market(marketId);
    const rules: MarketRules = { ...base, auction: { ...base.auction, ...overrides } };
    const now = this.deps.now();
    // A scheduled auction is for a boundary near now: a week either way bounds what a typo (1970) can create.
    if (atMs !== undefined && Math.abs(atMs - now) > 7 * 86_400_000) {
      throw new DomainError('bad_time', `an auction boundary must be within 7 days of now (${new Date(now).toISOString()})`, 400);
    }
    if (atMs !== undefined && intervalStart(atMs, intervalMs(rules), market.timeZone) !== atMs) {
      throw new DomainError('bad_time', `${new Date(atMs).toISOString()} is not a ${rules.auction.intervalMinutes}-minute boundary in ${market.timeZone}`, 400);
    }
    const at = atMs ?? intervalStart(now, intervalMs(rules), market.timeZone);
    const delivery = deliveryOfAuction(rules, at);
    const indicative = (await this.currentPrice(marketId)).price;
    const id = auctionId(`auc_${marketId}_${new Date(delivery.startMs).toISOString().replace(/[-:]/g, '').slice(0, 13)}`);
    const result = await this.money.transaction(async (trx) => {
      if (!(await this.store.claimAuction(trx, { id, market: marketId, deliveryStartMs: delivery.startMs, deliveryEndMs: delivery.endMs, runAtMs: now }))) return undefined;
      const open = await this.store.book(trx, marketId, delivery.startMs);
      // An auction run with overrides (ScheduleAuctionCommand) applies them to the book: an
      // order the overridden min_volume or price band would refuse is left out, not cleared.
      const band = priceBand(rules, indicative);
      const fits = (o: (typeof open)[number]) =>
        (overrides?.minVolumeWh === undefined || o.energyWh >= overrides.minVolumeWh) &&
        (overrides?.maxPriceDeviationPpm === undefined || (o.limit >= band.low && o.limit <= band.high));
      const book = open.filter(fits);
      const outcome = runAuction(id, book, rules.currency, open.filter((o) => !fits(o)));
      const record: AuctionRecord = {
        id,
        market: marketId,
        deliveryStartMs: delivery.startMs,
        deliveryEndMs: delivery.endMs,
        runAtMs: now,
        clearingPrice: outcome.result.price,
        priceRange: outcome.result.priceRange,
        volumeWh: outcome.result.volumeWh,
        orders: open.length,
        trades: outcome.trades.length,
      };
      await this.store.recordAuction(trx, record, outcome, rules.currency);
      if (outcome.transfers.length) await this.money.apply(trx, outcome.transfers, now);
      return { record, trades: outcome.trades };
    });
    if (!result) return undefined;
    this.deps.events?.auctionCompleted?.(result.record, result.trades);
    return { auction: result.record, trades: result.record.trades };
  }

  /** Whether the market is open at `t` (auctions run only then). */
  async isOpen(marketId: string, t: number): Promise<boolean> {
    const { market, rules } = await this.market(marketId);
    return isOpen(rules, market.timeZone, t);
  }

  // ---- delivery settlement -----------------------------------------------------------------

  /**
   * Settles the trades of the market's oldest delivery interval that ended at least `graceMs`
   * ago (so estimated energy across gaps is booked or replaced). Returns the trades settled
   * (0: none due). One market at a time, so one market's trouble never holds up another's.
   */
  async settleNextDelivery(marketId: string, graceMs: number): Promise<number> {
    const { rules } = await this.market(marketId);
    const now = this.deps.now();
    const settled = await this.money.transaction(async (trx) => {
      const trades = await this.store.unsettledInterval(trx, marketId, now - graceMs);
      const booked: SettledTrade[] = [];
      if (trades.length === 0) return booked;
      const { deliveryStartMs: start, deliveryEndMs: end } = trades[0]!;
      const metered = await this.store.meteredByAccount(trx, marketId, start, end);
      const supply = [...metered.exportWh.values()].reduce((a, b) => a + b, 0);
      const demand = [...metered.importWh.values()].reduce((a, b) => a + b, 0);
      const imbalance = indicativePrice(supply, demand, rules.pricing).price;
      const results = settleDeliveries(trades, metered, imbalance, rules.currency);
      const byId = new Map(trades.map((t) => [t.id, t]));
      const transfers: Transfer[] = [];
      for (const r of results) {
        const t = byId.get(r.id)!;
        const basis = {
          interval: { start: new Date(start).toISOString(), end: new Date(end).toISOString() },
          seller: { account: t.seller, exportWh: metered.exportWh.get(t.seller) ?? 0, meters: metered.meters.get(t.seller) ?? [] },
          buyer: { account: t.buyer, importWh: metered.importWh.get(t.buyer) ?? 0, meters: metered.meters.get(t.buyer) ?? [] },
          marketSupplyWh: supply,
          marketDemandWh: demand,
          paid: { seller: r.sellerPaid.toString(), buyerRefund: r.buyerRefund.toString(), sellerPenalty: r.sellerPenalty.toString(), buyerBuyback: r.buyerBuyback.toString() },
        };
        await this.store.recordDelivery(trx, r, now, imbalance, basis);
        transfers.push(...r.transfers);
        booked.push({ trade: t, result: r, imbalancePrice: imbalance, settledAtMs: now });
      }
      if (transfers.length) await this.money.apply(trx, transfers, now);
      return booked;
    });
    if (settled.length > 0) this.deps.events?.deliveriesSettled?.(marketId, settled.length, settled);
    return settled.length;
  }

  // ---- stable credits ----------------------------------------------------------------------

  private checkCurrency(c: string): Currency {
    if (!(this.deps.credits.currencies as readonly string[]).includes(c)) {
      throw new DomainError('unsupported_currency', `currency ${c} is not one of ${this.deps.credits.currencies.join(', ')}`, 400);
    }
    return c as Currency;
  }

  async deposit(account: string, currency: string, amount: Minor, memo = ''): Promise<Minor> {
    return this.adminMove('deposit', account, currency, amount, memo);
  }

  async withdraw(account: string, currency: string, amount: Minor, memo = ''): Promise<Minor> {
    return this.adminMove('withdrawal', account, currency, amount, memo);
  }

  private async adminMove(kind: 'deposit' | 'withdrawal', account: string, currency: string, amount: Minor, memo: string): Promise<Minor> {
    const c = this.checkCurrency(currency);
    if (amount <= 0n || amount > MAX_AMOUNT) throw new DomainError('bad_amount', `the amount must be positive and at most ${MAX_AMOUNT} minor units`, 400);
    if (!(await this.ledger.getAccount(account))) throw new DomainError('unknown_account', `account ${account} does not exist`, 404);
    const owner = ownerAccount(account, c);
    const issuance = systemAccount('issuance', c);
    const t = kind === 'deposit' ? move('deposit', { kind: 'admin', id: account }, issuance, owner, c, amount, memo) : move('withdrawal', { kind: 'admin', id: account }, owner, issuance, c, amount, memo);
    try {
      await this.money.transaction((trx) => this.money.apply(trx, [t], this.deps.now()));
    } catch (e) {
      if (e instanceof InsufficientFunds) throw new DomainError('insufficient_credits', `${account} holds ${e.balance} minor units of ${c}, cannot withdraw ${amount}`, 422);
      throw e;
    }
    return this.money.balance(owner);
  }

  /** Converts `amount` (minor units of `from`) of `account` to `to`, at the configured rate less the fee. */
  async convert(account: string, from: string, to: string, amount: Minor): Promise<{ debit: Minor; credit: Minor; fee: Minor }> {
    const f = this.checkCurrency(from);
    const t = this.checkCurrency(to);
    if (amount > MAX_AMOUNT) throw new DomainError('bad_amount', `a conversion may be at most ${MAX_AMOUNT} minor units`, 400);
    let c;
    try {
      c = convert(amount, f, t, this.deps.credits.rates, this.deps.credits.fee);
    } catch (e) {
      throw new DomainError('bad_conversion', (e as Error).message, 400);
    }
    const id = newId('cnv');
    const ref = { kind: 'conversion' as const, id };
    const transfers: Transfer[] = [
      {
        reason: 'conversion',
        ref,
        memo: `${f} → ${t}`,
        postings: [
          { account: ownerAccount(account, f), currency: f, amount: -c.debit },
          ...(c.fee > 0n ? [{ account: systemAccount('fees', f), currency: f, amount: c.fee }] : []),
          { account: systemAccount('conversion', f), currency: f, amount: c.converted },
          { account: systemAccount('conversion', t), currency: t, amount: -c.credit },
          { account: ownerAccount(account, t), currency: t, amount: c.credit },
        ],
      },
    ];
    try {
      await this.money.transaction((trx) => this.money.apply(trx, transfers, this.deps.now()));
    } catch (e) {
      if (e instanceof InsufficientFunds) throw new DomainError('insufficient_credits', `${account} holds ${e.balance} minor units of ${f}, ${c.debit} needed`, 422);
      throw e;
    }
    return { debit: c.debit, credit: c.credit, fee: c.fee };
  }

  trades(filter: Parameters<MarketStore['trades']>[0]): Promise<TradeRecord[]> {
    return this.store.trades(filter);
  }
}
