import type { FastifyPluginAsync } from 'fastify';
import { Type, type Static } from '@sinclair/typebox';
import type { ApiDeps } from '../server.ts';
import { READERS } from '../auth.ts';
import { ErrorSchema } from './errors.ts';

const Range = Type.Object({
  from: Type.String({ format: 'date-time' }),
  to: Type.String({ format: 'date-time' }),
});
const MAX_RANGE_MS = 31 * 24 * 3600_000;

function parseRange(q: Static<typeof Range>): { fromMs: number; toMs: number } | string {
  const fromMs = Date.parse(q.from);
  const toMs = Date.parse(q.to);
  if (!(fromMs < toMs)) return 'from must be before to';
  if (toMs - fromMs > MAX_RANGE_MS) return 'ask for at most 31 days at a time';
  return { fromMs, toMs };
}

/** Verified energy per interval: what pricing, auctions, RECs and rewards build on. Personal data: API key needed. */
export const energyRoutes: FastifyPluginAsync<ApiDeps> = async (app, { ledger }) => {
  app.get<{ Params: { market: string }; Querystring: Static<typeof Range> }>(
    '/markets/:market/intervals',
    {
      config: { roles: READERS },
      schema: {
        querystring: Range,
        response: {
          200: Type.Array(
            Type.Object({
              start: Type.String(),
              supplyWh: Type.Integer(),
              demandWh: Type.Integer(),
              meters: Type.Integer(),
              /** Part of the interval's energy is estimated across gaps (docs/protocol.md, "Energy across a gap"). */
              estimated: Type.Boolean(),
              estimatedSupplyWh: Type.Integer(),
              estimatedDemandWh: Type.Integer(),
            }),
          ),
          400: ErrorSchema,
          404: ErrorSchema,
        },
      },
    },
    async (req, reply) => {
      const r = parseRange(req.query);
      if (typeof r === 'string') return reply.code(400).send({ code: 'bad_range', message: r });
      if (!(await ledger.getMarket(req.params.market))) return reply.code(404).send({ code: 'unknown_market', message: `no market ${req.params.market}` });
      const rows = await ledger.marketIntervals(req.params.market, r.fromMs, r.toMs);
      return rows.map((x) => ({
        start: new Date(x.startMs).toISOString(),
        supplyWh: x.supplyWh,
        demandWh: x.demandWh,
        meters: x.meters,
        estimated: x.estSupplyWh !== 0 || x.estDemandWh !== 0,
        estimatedSupplyWh: x.estSupplyWh,
        estimatedDemandWh: x.estDemandWh,
      }));
    },
  );

  app.get<{ Params: { meter: string }; Querystring: Static<typeof Range> }>(
    '/meters/:meter/intervals',
    {
      config: { roles: READERS },
      schema: {
        querystring: Range,
        response: {
          200: Type.Array(
            Type.Object({
              start: Type.String(),
              importWh: Type.Integer(),
              exportWh: Type.Integer(),
              /** Part of importWh / exportWh is estimated across a gap; a late fill makes it exact. */
              estimated: Type.Boolean(),
              estimatedImportWh: Type.Integer(),
              estimatedExportWh: Type.Integer(),
            }),
          ),
          400: ErrorSchema,
        },
      },
    },
    async (req, reply) => {
      const r = parseRange(req.query);
      if (typeof r === 'string') return reply.code(400).send({ code: 'bad_range', message: r });
      const rows = await ledger.intervalEnergy(req.params.meter, r.fromMs, r.toMs);
      return rows.map((x) => ({
        start: new Date(x.startMs).toISOString(),
        importWh: x.importWh,
        exportWh: x.exportWh,
        estimated: x.estImportWh !== 0 || x.estExportWh !== 0,
        estimatedImportWh: x.estImportWh,
        estimatedExportWh: x.estExportWh,
      }));
    },
  );

  app.get<{ Params: { meter: string } }>(
    '/meters/:meter/gaps',
    {
      config: { roles: READERS },
      schema: {
        response: {
          200: Type.Array(
            Type.Object({ fromSeq: Type.Integer(), toSeq: Type.Integer(), openedAt: Type.String(), estimated: Type.Boolean() }),
          ),
        },
      },
    },
    async (req) =>
      (await ledger.gaps(req.params.meter)).map((g) => ({ fromSeq: g.fromSeq, toSeq: g.toSeq, openedAt: new Date(g.openedAtMs).toISOString(), estimated: g.estimated })),
  );
};
