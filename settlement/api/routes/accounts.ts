import type { FastifyPluginAsync } from 'fastify';
import { Type, type Static } from '@sinclair/typebox';
import { formatAmount } from '../../market/money.ts';
import { AccountStore } from '../../store/account-store.ts';
import type { LedgerDb } from '../../store/database.ts';
import { SCOPED_READERS } from '../auth.ts';
import { scopedAccounts } from '../visibility.ts';
import { ErrorSchema } from './errors.ts';

/**
 * GET /accounts: registry accounts with their balances. Utilities and admins see every account
 * (a page at a time), a prosumer its own, an installer its customers'.
 */

const Money = (description: string) => Type.String({ pattern: '^-?(0|[1-9][0-9]*)(\\.[0-9]+)?$', description, examples: ['93.70', '100.000000000000000000'] });

const AccountJson = Type.Object({
  account: Type.String(),
  name: Type.String(),
  balances: Type.Array(
    Type.Object({
      currency: Type.String({ description: 'THB, USD, EUR or NRG' }),
      available: Money('what the account can spend, in the currency’s major unit'),
      held: Money('set aside: escrow of open buy orders; for NRG, staked'),
    }),
    { description: 'one entry per currency the account has touched' },
  ),
});

const AccountQuery = Type.Object(
  {
    account: Type.Optional(Type.String({ minLength: 1, maxLength: 64, description: "one account; a prosumer key sees only its own, an installer key its customers'" })),
    after: Type.Optional(Type.String({ minLength: 1, maxLength: 64, description: 'the next page: accounts with an id after this one' })),
    limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 1000, description: 'at most this many accounts (default 100, at most 1000)' })),
  },
  { additionalProperties: false },
);

export const accountRoutes: FastifyPluginAsync<{ db: LedgerDb }> = async (app, { db }) => {
  const store = new AccountStore(db);
  app.get<{ Querystring: Static<typeof AccountQuery> }>(
    '/accounts',
    {
      config: { roles: SCOPED_READERS },
      schema: {
        querystring: AccountQuery,
        response: { 200: Type.Array(AccountJson, { description: 'in id order; a page ends at limit (ask again with after=)' }), 403: ErrorSchema },
      },
    },
    async (req, reply) => {
      const scope = scopedAccounts(req.principal!, req.query.account);
      if ('refuse' in scope) return reply.code(403).send(scope.refuse);
      const rows = await store.list({ accounts: scope.accounts, limit: req.query.limit ?? 100, ...(req.query.after !== undefined ? { after: req.query.after } : {}) });
      return rows.map((a) => ({
        account: a.account,
        name: a.name,
        balances: a.balances.map((b) => ({ currency: b.currency, available: formatAmount(b.available, b.currency), held: formatAmount(b.held, b.currency) })),
      }));
    },
  );
};
