import type { FastifyPluginAsync } from 'fastify';
import { Type, type Static } from '@sinclair/typebox';
import { formatAmount } from '../../market/money.ts';
import { NRG } from '../../market/types.ts';
import type { LedgerDb } from '../../store/database.ts';
import { RewardStore } from '../../store/reward-store.ts';
import { ErrorSchema } from './errors.ts';

/**
 * Conservation reward payments (docs/rewards.md), each traceable to its hours: per local hour
 * the baseline, the metered import and the Wh saved. A prosumer sees its own; utilities and
 * admins see all.
 */
const RewardJson = Type.Object({
  meter: Type.String(),
  day: Type.String({ description: "local date in the market's time zone" }),
  owner: Type.String(),
  savedWh: Type.Integer(),
  amount: Type.String({ description: 'NRG paid from the incentive pool' }),
  paidAt: Type.String(),
  hours: Type.Array(Type.Object({ hour: Type.Integer({ description: 'local hour, 0–23' }), baselineWh: Type.Integer(), actualWh: Type.Integer(), savedWh: Type.Integer() })),
});

const Day = (description: string) => Type.Optional(Type.String({ pattern: '^\\d{4}-\\d{2}-\\d{2}$', description }));
const ListQuery = Type.Object(
  {
    owner: Type.Optional(Type.String({ maxLength: 64 })),
    meter: Type.Optional(Type.String({ maxLength: 64 })),
    from: Day('first local date, YYYY-MM-DD'),
    to: Day('last local date, YYYY-MM-DD'),
    limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 500 })),
  },
  { additionalProperties: false },
);

export const rewardRoutes: FastifyPluginAsync<{ db: LedgerDb }> = async (app, { db }) => {
  const store = new RewardStore(db);
  app.get<{ Querystring: Static<typeof ListQuery> }>(
    '/rewards',
    { config: { roles: ['admin', 'utility', 'prosumer'] }, schema: { querystring: ListQuery, response: { 200: Type.Array(RewardJson, { description: 'newest day first' }), 403: ErrorSchema } } },
    async (req, reply) => {
      const p = req.principal!;
      const q = req.query;
      if (p.role === 'prosumer' && q.owner !== undefined && q.owner !== p.account) return reply.code(403).send({ code: 'forbidden', message: 'a prosumer key lists its own rewards; leave out ?owner=' });
      const owner = p.role === 'prosumer' ? p.account : q.owner;
      const rows = await store.list({ ...q, ...(owner ? { owner } : {}), limit: q.limit ?? 100 });
      return rows.map((r) => ({ meter: r.meter, day: r.day, owner: r.owner, savedWh: r.savedWh, amount: formatAmount(r.amount, NRG), paidAt: new Date(r.paidAtMs).toISOString(), hours: r.hours }));
    },
  );
};
