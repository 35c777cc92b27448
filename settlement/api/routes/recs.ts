import type { FastifyPluginAsync } from 'fastify';
import { Type, type Static } from '@sinclair/typebox';
import type { RecMinter } from '../../recs/minting.ts';
import type { RecRecord } from '../../store/rec-store.ts';
import { ADMINS } from '../auth.ts';
import { parseInstant } from './energy.ts';
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
  status: Type.String(),
  provenance: Type.Object({ firstSeq: Type.Integer(), lastSeq: Type.Integer(), envelopes: Type.Array(Type.String()) }),
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
});

export const recRoutes: FastifyPluginAsync<{ minter: RecMinter }> = async (app, { minter }) => {
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
    { from: Type.Optional(Type.String({ description: 'ISO-8601; default: the lookback window' })), to: Type.Optional(Type.String({ description: 'ISO-8601; default and upper bound: the last settled hour' })) },
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
