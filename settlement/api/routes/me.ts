import type { FastifyPluginAsync } from 'fastify';
import { Type } from '@sinclair/typebox';
import { API_ROLES, type ApiPrincipal } from '../../registry/api-keys.ts';
import type { LedgerDb } from '../../store/database.ts';

/**
 * GET /me: who the presented key is, and the markets there are. The web pages (settlement/web)
 * call it once at sign-in to choose their views; it shows nothing the key does not already
 * grant, and never the key itself.
 */
const MeJson = Type.Object({
  keyId: Type.String({ description: 'the key’s public handle (as in GET /api-keys and the logs)' }),
  role: Type.String({ description: 'admin, utility, installer or prosumer' }),
  account: Type.Optional(Type.String({ description: 'prosumer keys: the one account the key acts for' })),
  customers: Type.Optional(Type.Array(Type.String(), { description: 'installer keys: the customer accounts the key acts for' })),
  markets: Type.Array(
    Type.Object({ id: Type.String(), name: Type.String(), timeZone: Type.String({ description: 'IANA zone the market’s hours are in' }), intervalMinutes: Type.Integer() }),
    { description: 'the configured markets (configuration, not personal data)' },
  ),
});

/** A settlement has a handful of markets; the bound only keeps one answer's work fixed. */
const MAX_MARKETS = 100;

/** What a key is bound to: a prosumer's account, an installer's customers. */
function bindings(p: ApiPrincipal): { account?: string; customers?: string[] } {
  switch (p.role) {
    case 'prosumer':
      return { account: p.account };
    case 'installer':
      return { customers: [...p.customers] };
    default:
      return {};
  }
}

export const meRoutes: FastifyPluginAsync<{ db: LedgerDb }> = async (app, { db }) => {
  app.get(
    '/me',
    {
      // Every role: a key may always ask who it is.
      config: { roles: API_ROLES },
      schema: {
        summary: 'Who this API key is: role, bound account or customers, and the markets',
        response: { 200: MeJson },
      },
    },
    async (req) => {
      const p = req.principal!;
      const markets = await db.selectFrom('markets').select(['id', 'name', 'time_zone', 'interval_minutes']).orderBy('id').limit(MAX_MARKETS).execute();
      return {
        keyId: p.keyId,
        role: p.role,
        ...bindings(p),
        markets: markets.map((m) => ({ id: m.id, name: m.name, timeZone: m.time_zone, intervalMinutes: Number(m.interval_minutes) })),
      };
    },
  );
};
