import type { FastifyPluginAsync } from 'fastify';
import { Type, type Static } from '@sinclair/typebox';
import { API_ROLES, MAX_INSTALLER_CUSTOMERS, type ApiKeyRecord, type ApiKeyStore, type ApiRole } from '../../registry/api-keys.ts';
import type { Ledger } from '../../ledger/ledger.ts';
import { ADMINS } from '../auth.ts';
import { describedError } from './errors.ts';

/**
 * API keys for admins: create (the key is in that answer only), list, revoke. Never a key or
 * its hash in an answer; the same store as `gtx settlement api-key`.
 */

const AccountId = (description?: string) => Type.String({ pattern: '^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$', examples: ['home-1'], ...(description ? { description } : {}) });

const KeyJson = Type.Object({
  id: Type.String({ description: 'the key’s public handle: in lists and logs, used to revoke' }),
  role: Type.String({ description: 'admin, utility, installer or prosumer (a role a newer release wrote grants nothing here)' }),
  label: Type.String(),
  account: Type.Union([Type.String(), Type.Null()], { description: 'prosumer keys: the account it acts for' }),
  customers: Type.Optional(Type.Array(Type.String(), { description: 'installer keys: the customer accounts it serves' })),
  createdAt: Type.String(),
  revokedAt: Type.Union([Type.String(), Type.Null()]),
});

const CreateBody = Type.Object(
  {
    role: Type.Union(API_ROLES.map((r) => Type.Literal(r))),
    label: Type.Optional(Type.String({ maxLength: 200 })),
    account: Type.Optional(AccountId('prosumer keys (required): the registry account it acts for, which must exist')),
    customers: Type.Optional(
      Type.Array(AccountId(), { minItems: 1, maxItems: MAX_INSTALLER_CUSTOMERS, description: `installer keys (required): the customer accounts it serves, 1 to ${MAX_INSTALLER_CUSTOMERS}` }),
    ),
  },
  { additionalProperties: false },
);

const iso = (ms: number) => new Date(ms).toISOString();
const keyJson = (k: ApiKeyRecord) => ({
  id: k.id,
  role: k.role,
  label: k.label,
  account: k.account,
  ...(k.customers ? { customers: k.customers } : {}),
  createdAt: iso(k.createdAtMs),
  revokedAt: k.revokedAtMs === null ? null : iso(k.revokedAtMs),
});

export const apiKeyRoutes: FastifyPluginAsync<{ apiKeys: ApiKeyStore; ledger: Ledger }> = async (app, { apiKeys, ledger }) => {
  app.get(
    '/api-keys',
    { config: { roles: ADMINS }, schema: { response: { 200: Type.Array(KeyJson, { description: 'oldest first; revoked keys too' }) } } },
    async () => (await apiKeys.list()).map(keyJson),
  );

  app.post<{ Body: Static<typeof CreateBody> }>(
    '/api-keys',
    {
      config: { roles: ADMINS },
      schema: {
        description: 'A new API key, shown in this answer only (the ledger keeps its SHA-256). A prosumer key needs `account`, an installer key `customers`; other roles take neither.',
        body: CreateBody,
        response: {
          201: Type.Object({ key: Type.String({ description: 'send as "Authorization: Bearer <key>"; shown only this once' }), ...KeyJson.properties }),
          400: describedError('bad_request: a field is malformed, or account/customers do not fit the role.'),
          404: describedError('unknown_account: a prosumer key for an account the registry does not have.'),
        },
      },
    },
    async (req, reply) => {
      const b = req.body;
      const role: ApiRole = b.role;
      if (role === 'prosumer' && b.account !== undefined && !(await ledger.getAccount(b.account))) {
        return reply.code(404).send({ code: 'unknown_account', message: `no account ${b.account} in the registry: accounts are created by enrollment codes (POST /api/v1/enrollment-codes)` });
      }
      try {
        const { key, record } = await apiKeys.create(role, b.label ?? '', b.account ?? null, b.customers ?? []);
        req.log.warn({ created: record.id, role, account: record.account, customers: record.customers, key: req.principal?.keyId }, 'API key created');
        return reply.code(201).send({ key, ...keyJson(record) });
      } catch (e) {
        if (e instanceof RangeError) return reply.code(400).send({ code: 'bad_request', message: e.message });
        throw e;
      }
    },
  );

  app.delete<{ Params: { id: string } }>(
    '/api-keys/:id',
    {
      config: { roles: ADMINS },
      schema: {
        description: 'Revokes the key at once (the next request with it is refused); revoking it again keeps the first time.',
        params: Type.Object({ id: Type.String({ minLength: 1, maxLength: 64 }) }),
        response: { 200: KeyJson, 404: describedError('unknown_key: no API key with this id.') },
      },
    },
    async (req, reply) => {
      const outcome = await apiKeys.revoke(req.params.id);
      const record = outcome === 'unknown' ? undefined : await apiKeys.find(req.params.id);
      if (!record) return reply.code(404).send({ code: 'unknown_key', message: `no API key with id ${req.params.id}; GET /api/v1/api-keys lists them` });
      if (outcome === 'revoked') req.log.warn({ revoked: record.id, role: record.role, key: req.principal?.keyId }, 'API key revoked');
      return keyJson(record);
    },
  );
};
