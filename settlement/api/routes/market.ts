import type { FastifyPluginAsync, FastifyReply, FastifyRequest } from 'fastify';
import { Type, type Static } from '@sinclair/typebox';
import { DomainError } from '../../domain-error.ts';
import { type MarketService } from '../../market/market.ts';
import { formatAmount, formatEnergyKwh, formatPrice, parseAmount, parseEnergyKwh } from '../../market/money.ts';
import { priceSignalView } from '../../market/price-view.ts';
import { CURRENCIES, type Currency } from '../../market/types.ts';
import type { AuctionRecord, OrderRecord, TradeRecord } from '../../store/market-store.ts';
import type { ApiRole } from '../../registry/api-keys.ts';
import { ADMINS, ANY_KEY, OWNERS_AND_READERS } from '../auth.ts';
import { FORMS, parseInstant } from './energy.ts';
import { describedError, ErrorSchema } from './errors.ts';

/**
 * The market's REST routes (docs/market.md): prices and auction results for every key holder;
 * orders, balances, trades and conversions for a prosumer's own account (admins and utilities
 * see every account's, and name it with ?account=); deposits, withdrawals and scheduled
 * auctions for admins. Money is a decimal string in the currency's major unit ("4.00"),
 * energy a kWh decimal string with up to 3 decimals.
 */
export interface MarketApiDeps {
  market: MarketService;
  currencyOf: (market: string) => Currency;
}

const ANYONE = ANY_KEY;
const PROSUMERS: readonly ApiRole[] = ['prosumer'];

const Money = (description: string) => Type.String({ pattern: '^-?(0|[1-9][0-9]*)(\\.[0-9]+)?$', description, examples: ['4.00', '125.50'] });
const Energy = Type.String({ pattern: '^(0|[1-9][0-9]*)(\\.[0-9]{1,3})?$', description: 'kWh, up to 3 decimals', examples: ['1.5', '2.125'] });
const CurrencyField = Type.Union(CURRENCIES.map((c) => Type.Literal(c)), { description: 'THB, USD or EUR ([stable_credits] supported_currencies)' });
const Instant = Type.String({ description: `the delivery interval's start: ${FORMS}`, examples: ['2026-11-01T06:30:00Z', '2026-11-01T13:30:00+07:00'] });

const PriceSignalJson = Type.Object({
  market: Type.String(),
  price: Money('currency per kWh'),
  currency: Type.String(),
  ratio: Type.Number({ description: 'metered supply / demand over the interval, clamped to [min_ratio, 1/min_ratio]' }),
  supplyWh: Type.Integer(),
  demandWh: Type.Integer(),
  intervalStart: Type.Union([Type.String(), Type.Null()]),
  computedAt: Type.String(),
  validUntil: Type.String(),
});

const OrderJson = Type.Object({
  id: Type.String(),
  account: Type.String(),
  market: Type.String(),
  side: Type.Union([Type.Literal('buy'), Type.Literal('sell')]),
  energyKwh: Type.String(),
  limitPrice: Money('currency per kWh'),
  currency: Type.String(),
  deliveryStart: Type.String(),
  deliveryEnd: Type.String(),
  status: Type.Union(['open', 'filled', 'partial', 'unmatched', 'cancelled'].map((s) => Type.Literal(s))),
  filledKwh: Type.String(),
  escrow: Money('held in escrow now'),
  auctionId: Type.Union([Type.String(), Type.Null()]),
  createdAt: Type.String(),
});

const AuctionJson = Type.Object({
  id: Type.String(),
  market: Type.String(),
  deliveryStart: Type.String(),
  deliveryEnd: Type.String(),
  ranAt: Type.String(),
  clearingPrice: Type.Union([Money('currency per kWh'), Type.Null()], { description: 'null when bids and asks did not cross' }),
  priceRange: Type.Union([Type.Object({ low: Money('lowest price maximising volume'), high: Money('highest') }), Type.Null()]),
  volumeKwh: Type.String(),
  orders: Type.Integer(),
  trades: Type.Integer(),
});

const TradeJson = Type.Object({
  id: Type.String(),
  auctionId: Type.String(),
  market: Type.String(),
  deliveryStart: Type.String(),
  deliveryEnd: Type.String(),
  buyOrder: Type.String(),
  sellOrder: Type.String(),
  buyer: Type.String(),
  seller: Type.String(),
  energyKwh: Type.String(),
  price: Money('currency per kWh'),
  currency: Type.String(),
  value: Money('price × energy, rounded down'),
  delivery: Type.Union([
    Type.Object({
      settledAt: Type.String(),
      sellerMeteredKwh: Type.String({ description: "the seller's metered export this trade was settled against" }),
      buyerMeteredKwh: Type.String({ description: "the buyer's metered import this trade was settled against" }),
      sellerShortKwh: Type.String(),
      buyerShortKwh: Type.String(),
      imbalancePrice: Money('currency per kWh'),
      basis: Type.Unknown({ description: 'the interval, meters and energy it rests on, and the amounts moved' }),
    }),
    Type.Null(),
  ]),
});

const BalanceJson = Type.Object({ account: Type.String(), currency: Type.String(), balance: Money('balance') });

const iso = (ms: number) => new Date(ms).toISOString();


function orderJson(o: OrderRecord) {
  return {
    id: o.id,
    account: o.account,
    market: o.market,
    side: o.side,
    energyKwh: formatEnergyKwh(o.energyWh),
    limitPrice: formatPrice(o.limit, o.currency),
    currency: o.currency,
    deliveryStart: iso(o.deliveryStartMs),
    deliveryEnd: iso(o.deliveryEndMs),
    status: o.status,
    filledKwh: formatEnergyKwh(o.filledWh),
    escrow: formatAmount(o.escrow, o.currency),
    auctionId: o.auctionId,
    createdAt: iso(o.createdAtMs),
  };
}

function auctionJson(a: AuctionRecord, c: Currency) {
  return {
    id: a.id,
    market: a.market,
    deliveryStart: iso(a.deliveryStartMs),
    deliveryEnd: iso(a.deliveryEndMs),
    ranAt: iso(a.runAtMs),
    clearingPrice: a.clearingPrice === null ? null : formatPrice(a.clearingPrice, c),
    priceRange: a.priceRange && { low: formatPrice(a.priceRange.low, c), high: formatPrice(a.priceRange.high, c) },
    volumeKwh: formatEnergyKwh(a.volumeWh),
    orders: a.orders,
    trades: a.trades,
  };
}

function tradeJson(t: TradeRecord) {
  const d = t.delivery;
  return {
    id: t.id,
    auctionId: t.auctionId,
    market: t.market,
    deliveryStart: iso(t.deliveryStartMs),
    deliveryEnd: iso(t.deliveryEndMs),
    buyOrder: t.buyOrder,
    sellOrder: t.sellOrder,
    buyer: t.buyer,
    seller: t.seller,
    energyKwh: formatEnergyKwh(t.energyWh),
    price: formatPrice(t.price, t.currency),
    currency: t.currency,
    value: formatAmount(t.value, t.currency),
    delivery: d && {
      settledAt: iso(d.settledAtMs),
      sellerMeteredKwh: formatEnergyKwh(d.sellerMeteredWh),
      buyerMeteredKwh: formatEnergyKwh(d.buyerMeteredWh),
      sellerShortKwh: formatEnergyKwh(d.sellerShortWh),
      buyerShortKwh: formatEnergyKwh(d.buyerShortWh),
      imbalancePrice: formatPrice(d.imbalancePrice, t.currency),
      basis: d.basis,
    },
  };
}

/**
 * A prosumer sees the energy its trade was settled against on both sides (that is the
 * settlement), but not the other party's meters and their totals: a neighbour's consumption is
 * the neighbour's personal data.
 */
function withoutCounterpartyMeters(t: TradeRecord, account: string): TradeRecord {
  if (!t.delivery || (t.buyer === account && t.seller === account)) return t;
  const basis = t.delivery.basis as Record<string, unknown> | null;
  if (!basis) return t;
  const other = t.buyer === account ? 'seller' : 'buyer';
  const { [other]: _hidden, ...rest } = basis;
  return { ...t, delivery: { ...t.delivery, basis: { ...rest, [other]: { account: other === 'seller' ? t.seller : t.buyer } } } };
}

function sendDomainError(reply: FastifyReply, e: unknown): FastifyReply {
  if (e instanceof DomainError) return reply.code(e.status).send({ code: e.code, message: e.message });
  throw e;
}

/** The account a request acts on: a prosumer's own; for admin and utility the ?account= given. */
function accountOf(req: FastifyRequest, asked: string | undefined): { account?: string } | { refuse: { code: string; message: string } } {
  const p = req.principal!;
  if (p.role === 'prosumer') {
    if (asked !== undefined && asked !== p.account) return { refuse: { code: 'forbidden', message: 'a prosumer key sees only its own account; leave out ?account=' } };
    return { account: p.account };
  }
  return asked === undefined ? {} : { account: asked };
}

const MarketParams = Type.Object({ market: Type.String({ minLength: 1, maxLength: 64 }) });
const UNKNOWN_MARKET = describedError('unknown_market: no market of this id is configured.');
const Limit = (max: number) => Type.Optional(Type.Integer({ minimum: 1, maximum: max, description: `at most ${max}` }));

export const marketRoutes: FastifyPluginAsync<MarketApiDeps> = async (app, { market, currencyOf }) => {
  app.get<{ Params: Static<typeof MarketParams>; Querystring: { include_history?: boolean; limit?: number } }>(
    '/markets/:market/price',
    {
      config: { roles: ANYONE },
      schema: {
        params: MarketParams,
        querystring: Type.Object({ include_history: Type.Optional(Type.Boolean()), limit: Limit(1000) }, { additionalProperties: false }),
        response: { 200: Type.Object({ current: PriceSignalJson, history: Type.Optional(Type.Array(PriceSignalJson, { description: 'newest first' })) }), 404: UNKNOWN_MARKET },
      },
    },
    async (req, reply) => {
      try {
        const c = currencyOf(req.params.market);
        const current = priceSignalView(await market.currentPrice(req.params.market), c);
        if (!req.query.include_history) return { current };
        const history = await market.store.prices(req.params.market, req.query.limit ?? 100);
        return { current, history: history.map((s) => priceSignalView(s, c)) };
      } catch (e) {
        return sendDomainError(reply, e);
      }
    },
  );

  app.get<{ Params: Static<typeof MarketParams>; Querystring: { limit?: number } }>(
    '/markets/:market/auctions',
    {
      config: { roles: ANYONE },
      schema: {
        params: MarketParams,
        querystring: Type.Object({ limit: Limit(500) }, { additionalProperties: false }),
        response: { 200: Type.Array(AuctionJson, { description: 'newest delivery first' }), 404: UNKNOWN_MARKET },
      },
    },
    async (req, reply) => {
      try {
        await market.currentPrice(req.params.market); // 404 for an unknown market
        const c = currencyOf(req.params.market);
        return (await market.store.auctions(req.params.market, req.query.limit ?? 50)).map((a) => auctionJson(a, c));
      } catch (e) {
        return sendDomainError(reply, e);
      }
    },
  );

  const OrderBody = Type.Object(
    {
      market: Type.String({ minLength: 1, maxLength: 64 }),
      side: Type.Union(['buy', 'sell', 'Buy', 'Sell'].map((s) => Type.Literal(s))),
      energyKwh: Energy,
      limitPrice: Type.Optional(Money('currency per kWh; absent: the current indicative price')),
      deliveryStart: Type.Optional(Instant),
    },
    { additionalProperties: false },
  );
  app.post<{ Body: Static<typeof OrderBody> }>(
    '/orders',
    {
      config: { roles: PROSUMERS },
      schema: {
        body: OrderBody,
        response: {
          201: OrderJson,
          400: describedError('bad_request: a field is malformed.'),
          404: UNKNOWN_MARKET,
          422: describedError(
            'The order is refused: below_min_volume, price_out_of_band (further than max_price_deviation from the indicative price), market_closed, delivery_not_open (not a delivery start, past gate closure, or more than a day ahead), no_supply_meter (a seller without a generation or bidirectional meter in the market), above_capacity (more than the seller’s meters can export in the interval at rated power), above_max_volume (over 10 MWh), too_many_open_orders (100 open in the market), insufficient_credits (a buyer cannot cover limit × energy in escrow).',
          ),
        },
      },
    },
    async (req, reply) => {
      const p = req.principal!;
      if (p.role !== 'prosumer') return reply.code(403).send({ code: 'forbidden', message: 'orders are placed with a prosumer key' });
      const b = req.body;
      let energyWh: number;
      let limit: bigint | undefined;
      let deliveryStartMs: number | undefined;
      try {
        energyWh = parseEnergyKwh(b.energyKwh);
        limit = b.limitPrice === undefined ? undefined : parseAmount(b.limitPrice, currencyOf(b.market));
      } catch (e) {
        return reply.code(400).send({ code: 'bad_request', message: (e as Error).message });
      }
      if (b.deliveryStart !== undefined) {
        deliveryStartMs = parseInstant(b.deliveryStart);
        if (deliveryStartMs === undefined) return reply.code(400).send({ code: 'bad_request', message: `deliveryStart ${JSON.stringify(b.deliveryStart)} is not an ISO-8601 date-time` });
      }
      try {
        const r = await market.placeOrder(p.account, b.market, {
          side: b.side.toLowerCase() as 'buy' | 'sell',
          energyWh,
          ...(limit === undefined ? {} : { limit }),
          ...(deliveryStartMs === undefined ? {} : { deliveryStartMs }),
        });
        if (!r.ok) return reply.code(422).send(r.refusal);
        req.log.info({ order: r.order.id, account: p.account, market: b.market, side: r.order.side, energy_wh: r.order.energyWh, limit: r.order.limit.toString() }, 'order accepted');
        return reply.code(201).send(orderJson(r.order));
      } catch (e) {
        return sendDomainError(reply, e);
      }
    },
  );

  app.get<{ Querystring: { account?: string; status?: OrderRecord['status']; limit?: number } }>(
    '/orders',
    {
      config: { roles: OWNERS_AND_READERS },
      schema: {
        querystring: Type.Object(
          {
            account: Type.Optional(Type.String({ description: 'admin and utility keys: one account; a prosumer key sees its own only' })),
            status: Type.Optional(Type.Union(['open', 'filled', 'partial', 'unmatched', 'cancelled'].map((s) => Type.Literal(s)))),
            limit: Limit(500),
          },
          { additionalProperties: false },
        ),
        response: { 200: Type.Array(OrderJson, { description: 'newest first' }) },
      },
    },
    async (req, reply) => {
      const who = accountOf(req, req.query.account);
      if ('refuse' in who) return reply.code(403).send(who.refuse);
      const rows = await market.store.orders({ ...who, ...(req.query.status ? { status: req.query.status } : {}), limit: req.query.limit ?? 100 });
      return rows.map(orderJson);
    },
  );

  app.delete<{ Params: { id: string } }>(
    '/orders/:id',
    {
      config: { roles: ['admin', 'prosumer'] },
      schema: {
        params: Type.Object({ id: Type.String({ minLength: 1, maxLength: 64 }) }),
        response: {
          200: OrderJson,
          404: describedError('unknown_order: no such order of this account.'),
          409: describedError('order_closed: the order is no longer open (its auction ran, or it was cancelled).'),
        },
      },
    },
    async (req, reply) => {
      const p = req.principal!;
      try {
        const o = await market.cancelOrder(p.role === 'prosumer' ? p.account : null, req.params.id);
        req.log.info({ order: o.id, account: o.account, key: p.keyId }, 'order cancelled');
        return orderJson(o);
      } catch (e) {
        return sendDomainError(reply, e);
      }
    },
  );

  app.get<{ Querystring: { account?: string } }>(
    '/balances',
    {
      config: { roles: OWNERS_AND_READERS },
      schema: {
        querystring: Type.Object({ account: Type.Optional(Type.String()) }, { additionalProperties: false }),
        response: { 200: Type.Array(BalanceJson), 400: ErrorSchema },
      },
    },
    async (req, reply) => {
      const who = accountOf(req, req.query.account);
      if ('refuse' in who) return reply.code(403).send(who.refuse);
      if (who.account === undefined) return reply.code(400).send({ code: 'bad_request', message: 'name the account: ?account=ID' });
      return (await market.money.balances(who.account)).map((b) => ({ account: b.owner ?? b.account, currency: b.currency, balance: formatAmount(b.balance, b.currency) }));
    },
  );

  app.get<{ Querystring: { account?: string; market?: string; limit?: number } }>(
    '/trades',
    {
      config: { roles: OWNERS_AND_READERS },
      schema: {
        querystring: Type.Object({ account: Type.Optional(Type.String()), market: Type.Optional(Type.String()), limit: Limit(500) }, { additionalProperties: false }),
        response: { 200: Type.Array(TradeJson, { description: 'newest delivery first; a prosumer sees the trades it bought or sold in' }) },
      },
    },
    async (req, reply) => {
      const who = accountOf(req, req.query.account);
      if ('refuse' in who) return reply.code(403).send(who.refuse);
      const rows = await market.trades({ ...who, ...(req.query.market ? { market: req.query.market } : {}), limit: req.query.limit ?? 100 });
      const p = req.principal!;
      return rows.map((t) => tradeJson(p.role === 'prosumer' ? withoutCounterpartyMeters(t, p.account) : t));
    },
  );

  const ConversionBody = Type.Object({ from: CurrencyField, to: CurrencyField, amount: Money('in the from currency') }, { additionalProperties: false });
  app.post<{ Body: Static<typeof ConversionBody> }>(
    '/conversions',
    {
      config: { roles: PROSUMERS },
      schema: {
        body: ConversionBody,
        response: {
          201: Type.Object({ from: Type.String(), to: Type.String(), debit: Money('taken, in from'), fee: Money('part of debit, to the fee account'), credit: Money('given, in to') }),
          400: ErrorSchema,
          422: describedError('insufficient_credits: the account does not hold the amount.'),
        },
      },
    },
    async (req, reply) => {
      const p = req.principal!;
      if (p.role !== 'prosumer') return reply.code(403).send({ code: 'forbidden', message: 'conversions are made with a prosumer key' });
      try {
        const from = req.body.from as Currency;
        const amount = parseAmount(req.body.amount, from);
        const r = await market.convert(p.account, req.body.from, req.body.to, amount);
        req.log.info({ account: p.account, from: req.body.from, to: req.body.to, debit: r.debit.toString(), credit: r.credit.toString(), fee: r.fee.toString() }, 'credits converted');
        const to = req.body.to as Currency;
        return reply.code(201).send({ from, to, debit: formatAmount(r.debit, from), fee: formatAmount(r.fee, from), credit: formatAmount(r.credit, to) });
      } catch (e) {
        if (e instanceof RangeError) return reply.code(400).send({ code: 'bad_request', message: e.message });
        return sendDomainError(reply, e);
      }
    },
  );

  // ---- admin ---------------------------------------------------------------------------------

  const MoveBody = Type.Object(
    { account: Type.String({ minLength: 1, maxLength: 64 }), currency: CurrencyField, amount: Money('positive'), memo: Type.Optional(Type.String({ maxLength: 200 })) },
    { additionalProperties: false },
  );
  for (const kind of ['deposits', 'withdrawals'] as const) {
    app.post<{ Body: Static<typeof MoveBody> }>(
      `/admin/${kind}`,
      {
        config: { roles: ADMINS },
        schema: {
          body: MoveBody,
          response: { 201: BalanceJson, 400: ErrorSchema, 404: describedError('unknown_account'), 422: describedError('insufficient_credits: a withdrawal beyond the balance.') },
        },
      },
      async (req, reply) => {
        try {
          const c = req.body.currency as Currency;
          const amount = parseAmount(req.body.amount, c);
          const op = kind === 'deposits' ? market.deposit.bind(market) : market.withdraw.bind(market);
          const balance = await op(req.body.account, req.body.currency, amount, req.body.memo ?? '');
          req.log.warn({ account: req.body.account, currency: c, amount: amount.toString(), kind, key: req.principal?.keyId }, `credits ${kind === 'deposits' ? 'deposited' : 'withdrawn'}`);
          return reply.code(201).send({ account: req.body.account, currency: c, balance: formatAmount(balance, c) });
        } catch (e) {
          if (e instanceof RangeError) return reply.code(400).send({ code: 'bad_request', message: e.message });
          return sendDomainError(reply, e);
        }
      },
    );
  }

  const AuctionBody = Type.Object(
    {
      market: Type.String({ minLength: 1, maxLength: 64 }),
      at: Type.Optional(Type.String({ description: `the auction boundary, ${FORMS}; it clears the delivery interval that starts one interval later. Default: the current boundary.` })),
      minVolumeKwh: Type.Optional(Energy),
      maxPriceDeviation: Type.Optional(Type.Number({ minimum: 0, maximum: 1 })),
    },
    { additionalProperties: false },
  );
  app.post<{ Body: Static<typeof AuctionBody> }>(
    '/admin/auctions',
    {
      config: { roles: ADMINS },
      schema: {
        body: AuctionBody,
        response: { 201: AuctionJson, 400: describedError('bad_request; bad_time: `at` is not an interval boundary within 7 days of now.'), 404: UNKNOWN_MARKET, 409: describedError('auction_exists: that delivery interval was auctioned already.') },
      },
    },
    async (req, reply) => {
      const at = req.body.at === undefined ? undefined : parseInstant(req.body.at);
      if (req.body.at !== undefined && at === undefined) return reply.code(400).send({ code: 'bad_request', message: `at ${JSON.stringify(req.body.at)} is not an ISO-8601 date-time` });
      try {
        const r = await market.runAuction(req.body.market, at, {
          ...(req.body.minVolumeKwh ? { minVolumeWh: parseEnergyKwh(req.body.minVolumeKwh) } : {}),
          ...(req.body.maxPriceDeviation !== undefined ? { maxPriceDeviationPpm: Math.round(req.body.maxPriceDeviation * 1e6) } : {}),
        });
        if (!r) return reply.code(409).send({ code: 'auction_exists', message: 'that delivery interval was auctioned already; GET /api/v1/markets/{market}/auctions shows it' });
        return reply.code(201).send(auctionJson(r.auction, currencyOf(req.body.market)));
      } catch (e) {
        if (e instanceof RangeError) return reply.code(400).send({ code: 'bad_request', message: e.message });
        return sendDomainError(reply, e);
      }
    },
  );
};
