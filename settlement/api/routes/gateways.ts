import type { FastifyPluginAsync } from 'fastify';
import { Type, type Static } from '@sinclair/typebox';
import type { GatewayPresence } from '../../ingest/status-handler.ts';
import type { LedgerDb } from '../../store/database.ts';
import { GatewayStore } from '../../store/gateway-store.ts';
import { GATEWAY_READERS } from '../auth.ts';
import { scopedAccounts } from '../visibility.ts';
import { ErrorSchema } from './errors.ts';

/**
 * GET /gateways: the fleet with its status, for utilities and admins; an installer sees its
 * customers' gateways. Status: `revoked` from the registry; otherwise the gateway's retained
 * status message (its MQTT last will says offline) when this settlement has received one, else
 * `online` when a reading of it arrived in the last PRESENCE_WINDOW_MS (an API without ingest).
 */
export interface GatewayApiDeps {
  db: LedgerDb;
  /** The last status each gateway published (ingest/status-handler.ts); absent: readings alone decide. */
  presence?: (gateway: string) => GatewayPresence | undefined;
  now?: () => number;
}

/** Without a status message, a gateway whose last reading is younger than this counts as online. */
export const PRESENCE_WINDOW_MS = 5 * 60_000;

const GatewayJson = Type.Object({
  id: Type.String(),
  owner: Type.Union([Type.String(), Type.Null()], { description: 'the account it was enrolled for' }),
  status: Type.Union([Type.Literal('online'), Type.Literal('offline'), Type.Literal('revoked')]),
  lastSeen: Type.Union([Type.String(), Type.Null()], { description: 'its last status message or reading, whichever is later (ISO-8601); null when never seen' }),
  meters: Type.Array(Type.String()),
  outbox: Type.Optional(Type.Integer({ description: 'envelopes waiting in its outbox, as its last status message said' })),
  enrolledAt: Type.String(),
  revokedAt: Type.Union([Type.String(), Type.Null()]),
});

const GatewayQuery = Type.Object(
  {
    account: Type.Optional(Type.String({ minLength: 1, maxLength: 64, description: "one owner's gateways; an installer key sees its customers' only" })),
    after: Type.Optional(Type.String({ minLength: 1, maxLength: 64, description: 'the next page: gateways with an id after this one' })),
    limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 1000, description: 'at most this many (default 200, at most 1000)' })),
  },
  { additionalProperties: false },
);

const iso = (ms: number) => new Date(ms).toISOString();

export const gatewayRoutes: FastifyPluginAsync<GatewayApiDeps> = async (app, { db, presence, now = Date.now }) => {
  const store = new GatewayStore(db);
  app.get<{ Querystring: Static<typeof GatewayQuery> }>(
    '/gateways',
    {
      config: { roles: GATEWAY_READERS },
      schema: {
        description: `Gateways with status online, offline or revoked. Online/offline is the gateway's retained status message (its MQTT last will says offline); before the settlement has one, a reading in the last ${PRESENCE_WINDOW_MS / 60_000} minutes counts as online.`,
        querystring: GatewayQuery,
        response: { 200: Type.Array(GatewayJson, { description: 'in id order; a page ends at limit (ask again with after=)' }), 403: ErrorSchema },
      },
    },
    async (req, reply) => {
      const scope = scopedAccounts(req.principal!, req.query.account);
      if ('refuse' in scope) return reply.code(403).send(scope.refuse);
      const rows = await store.list({ owners: scope.accounts, limit: req.query.limit ?? 200, ...(req.query.after !== undefined ? { after: req.query.after } : {}) });
      const t = now();
      return rows.map((g) => {
        const p = presence?.(g.id);
        const seen = Math.max(p?.atMs ?? -Infinity, g.lastReadingAtMs ?? -Infinity);
        const status = g.status === 'revoked' ? 'revoked' : p ? p.state : g.lastReadingAtMs !== null && t - g.lastReadingAtMs < PRESENCE_WINDOW_MS ? 'online' : 'offline';
        return {
          id: g.id,
          owner: g.owner,
          status,
          lastSeen: Number.isFinite(seen) ? iso(seen) : null,
          meters: g.meters,
          ...(p?.outbox !== undefined ? { outbox: p.outbox } : {}),
          enrolledAt: iso(g.createdAtMs),
          revokedAt: g.revokedAtMs === null ? null : iso(g.revokedAtMs),
        };
      });
    },
  );
};
