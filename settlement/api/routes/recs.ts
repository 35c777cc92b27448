import type { FastifyPluginAsync } from 'fastify';
import { Type, type Static } from '@sinclair/typebox';
import type { RecMinter } from '../../recs/minting.ts';
import type { RecLifecycle } from '../../recs/lifecycle.ts';
import { DomainError } from '../../domain-error.ts';
import { formatAmount, formatPrice, parseAmount } from '../../market/money.ts';
import { CURRENCIES, type Currency } from '../../market/types.ts';
import { describedError } from './errors.ts';
import type { RecRecord } from '../../store/rec-store.ts';
import { ADMINS } from '../auth.ts';
import { FORMS, parseInstant } from './energy.ts';
import { ErrorSchema } from './errors.ts';

/**
 * Certificates (docs/recs.md): listed with their provenance; minted only by the minting job,
 * which an admin may trigger for a period (never a free-form mint).
 */
const RecJson = Type.Object({
  id: Type.String(),
  generator: Type.Object({ meter: Type.String(), owner: Type.String() }),
  owner: Type.String(),
  energySource: Type.String(),
  market: Type.String(),
  periodStart: Type.String(),
  periodEnd: Type.String(),
  volumeWh: Type.Integer(),
  issuedAt: Type.String(),
  status: Type.Union(['active', 'for_sale', 'sold', 'retired'].map((x) => Type.Literal(x))),
  provenance: Type.Object({ firstSeq: Type.Integer(), lastSeq: Type.Integer(), envelopes: Type.Array(Type.String()) }),
  listing: Type.Union([Type.Object({ pricePerKwh: Type.String(), currency: Type.String() }), Type.Null()]),
  parent: Type.Union([Type.String(), Type.Null()], { description: 'split from (partial retirement)' }),
  retirement: Type.Union([Type.Object({ at: Type.String(), reason: Type.String(), beneficiary: Type.String() }), Type.Null()]),
});

const iso = (ms: number) => new Date(ms).toISOString();
const recJson = (r: RecRecord) => ({
  id: r.id,
  generator: { meter: r.meter, owner: r.generatorOwner },
  owner: r.owner,
  energySource: r.energySource,
  market: r.market,
  periodStart: iso(r.periodStartMs),
  periodEnd: iso(r.periodEndMs),
  volumeWh: r.volumeWh,
  issuedAt: iso(r.issuedAtMs),
  status: r.status,
  provenance: { firstSeq: r.firstSeq, lastSeq: r.lastSeq, envelopes: r.envelopes },
  listing: r.listing && { pricePerKwh: formatPrice(r.listing.price, r.listing.currency as Currency), currency: r.listing.currency },
  parent: r.parent,
  retirement: r.retirement && { at: iso(r.retirement.atMs), reason: r.retirement.reason, beneficiary: r.retirement.beneficiary },
});

const failed = (e: unknown) => {
  if (e instanceof DomainError) return { status: e.status, body: { code: e.code, message: e.message } };
  if (e instanceof RangeError) return { status: 400, body: { code: 'bad_request', message: e.message } };
  throw e;
};

export const recRoutes: FastifyPluginAsync<{ minter: RecMinter; lifecycle: RecLifecycle }> = async (app, { minter, lifecycle }) => {
  app.get<{ Querystring: { source?: string; limit?: number } }>(
    '/recs/marketplace',
    {
      config: { roles: ['admin', 'utility', 'prosumer'] },
      schema: {
        querystring: Type.Object({ source: Type.Optional(Type.String()), limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 500 })) }, { additionalProperties: false }),
        response: { 200: Type.Array(RecJson, { description: 'certificates for sale' }) },
      },
    },
    async (req) => (await minter.recs.list({ status: 'for_sale', ...(req.query.source ? { source: req.query.source } : {}), limit: req.query.limit ?? 100 })).map(recJson),
  );

  const IdParams = Type.Object({ id: Type.String({ minLength: 1, maxLength: 64 }) });
  const prosumer = (req: { principal?: { role: string; account?: string } }) => (req.principal?.role === 'prosumer' ? (req.principal as { account: string }).account : undefined);
  const notProsumer = { code: 'forbidden', message: 'certificates are traded and retired with the holder’s prosumer key' };

  const ListBody = Type.Object({ pricePerKwh: Type.String({ pattern: '^(0|[1-9][0-9]*)(\\.[0-9]{1,2})?$', examples: ['0.05'] }), currency: Type.Union(CURRENCIES.map((c) => Type.Literal(c))) }, { additionalProperties: false });
  app.post<{ Params: Static<typeof IdParams>; Body: Static<typeof ListBody> }>(
    '/recs/:id/list',
    {
      config: { roles: ['prosumer'] },
      schema: { params: IdParams, body: ListBody, response: { 200: RecJson, 400: ErrorSchema, 404: describedError('unknown_rec: not held by the caller'), 409: describedError('rec_not_available: retired or already for sale') } },
    },
    async (req, reply) => {
      const who = prosumer(req);
      if (!who) return reply.code(403).send(notProsumer);
      try {
        return recJson(await lifecycle.putForSale(req.params.id, who, parseAmount(req.body.pricePerKwh, req.body.currency), req.body.currency));
      } catch (e) {
        const f = failed(e);
        return reply.code(f.status).send(f.body);
      }
    },
  );

  app.delete<{ Params: Static<typeof IdParams> }>(
    '/recs/:id/list',
    { config: { roles: ['prosumer'] }, schema: { params: IdParams, response: { 200: RecJson, 404: ErrorSchema, 409: describedError('rec_not_for_sale') } } },
    async (req, reply) => {
      const who = prosumer(req);
      if (!who) return reply.code(403).send(notProsumer);
      try {
        return recJson(await lifecycle.withdraw(req.params.id, who));
      } catch (e) {
        const f = failed(e);
        return reply.code(f.status).send(f.body);
      }
    },
  );

  app.post<{ Params: Static<typeof IdParams> }>(
    '/recs/:id/purchase',
    {
      config: { roles: ['prosumer'] },
      schema: {
        params: IdParams,
        response: {
          200: Type.Object({ rec: RecJson, paid: Type.String(), currency: Type.String() }),
          409: describedError('rec_not_for_sale (sold or withdrawn), own_rec'),
          422: describedError('insufficient_credits'),
        },
      },
    },
    async (req, reply) => {
      const who = prosumer(req);
      if (!who) return reply.code(403).send(notProsumer);
      try {
        const r = await lifecycle.purchase(req.params.id, who);
        return { rec: recJson(r.rec), paid: formatAmount(r.paid, r.currency), currency: r.currency };
      } catch (e) {
        const f = failed(e);
        return reply.code(f.status).send(f.body);
      }
    },
  );

  const RetireBody = Type.Object(
    { reason: Type.String({ minLength: 1, maxLength: 200 }), beneficiary: Type.String({ minLength: 1, maxLength: 200 }), volumeWh: Type.Optional(Type.Integer({ minimum: 1, description: 'retire only this much; the rest stays held' })) },
    { additionalProperties: false },
  );
  app.post<{ Params: Static<typeof IdParams>; Body: Static<typeof RetireBody> }>(
    '/recs/:id/retire',
    {
      config: { roles: ['prosumer'] },
      schema: { params: IdParams, body: RetireBody, response: { 200: RecJson, 400: ErrorSchema, 404: ErrorSchema, 409: describedError('rec_not_available: retired, or for sale (withdraw first)') } },
    },
    async (req, reply) => {
      const who = prosumer(req);
      if (!who) return reply.code(403).send(notProsumer);
      try {
        return recJson(await lifecycle.retire(req.params.id, who, req.body.reason, req.body.beneficiary, req.body.volumeWh));
      } catch (e) {
        const f = failed(e);
        return reply.code(f.status).send(f.body);
      }
    },
  );

  const ListQuery = Type.Object(
    {
      owner: Type.Optional(Type.String()),
      generator: Type.Optional(Type.String({ description: 'meter id' })),
      source: Type.Optional(Type.String({ description: 'Solar, Wind, Hydro, Geothermal, Biomass, Other' })),
      status: Type.Optional(Type.Union(['active', 'for_sale', 'sold', 'retired'].map((s) => Type.Literal(s)))),
      limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 500 })),
    },
    { additionalProperties: false },
  );
  app.get<{ Querystring: Static<typeof ListQuery> }>(
    '/recs',
    { config: { roles: ['admin', 'utility', 'prosumer'] }, schema: { querystring: ListQuery, response: { 200: Type.Array(RecJson, { description: 'newest period first' }), 403: ErrorSchema } } },
    async (req, reply) => {
      const p = req.principal!;
      const q = req.query;
      // A prosumer lists the certificates it holds.
      if (p.role === 'prosumer' && q.owner !== undefined && q.owner !== p.account) return reply.code(403).send({ code: 'forbidden', message: 'a prosumer key lists its own certificates; leave out ?owner=' });
      const owner = p.role === 'prosumer' ? p.account : q.owner;
      const rows = await minter.recs.list({ ...(owner ? { owner } : {}), ...(q.generator ? { generator: q.generator } : {}), ...(q.source ? { source: q.source } : {}), ...(q.status ? { status: q.status as RecRecord['status'] } : {}), limit: q.limit ?? 100 });
      return rows.map(recJson);
    },
  );

  const MintBody = Type.Object(
    { from: Type.Optional(Type.String({ description: `${FORMS}; default: the lookback window` })), to: Type.Optional(Type.String({ description: `${FORMS}; default and upper bound: the last settled hour` })) },
    { additionalProperties: false },
  );
  app.post<{ Body: Static<typeof MintBody> }>(
    '/recs/mint',
    { config: { roles: ADMINS }, schema: { body: MintBody, response: { 200: Type.Object({ minted: Type.Array(RecJson) }), 400: ErrorSchema } } },
    async (req, reply) => {
      const from = req.body.from === undefined ? undefined : parseInstant(req.body.from);
      const to = req.body.to === undefined ? undefined : parseInstant(req.body.to);
      if ((req.body.from !== undefined && from === undefined) || (req.body.to !== undefined && to === undefined)) {
        return reply.code(400).send({ code: 'bad_request', message: 'from and to must be ISO-8601 dates or date-times' });
      }
      const window = from !== undefined || to !== undefined ? { fromMs: from ?? 0, toMs: to ?? Number.MAX_SAFE_INTEGER } : undefined;
      const { minted } = await minter.mintDue(window);
      req.log.warn({ minted: minted.length, key: req.principal?.keyId }, 'certificate minting run by an admin');
      return { minted: minted.map(recJson) };
    },
  );
};
