import type { FastifyPluginAsync } from 'fastify';
import { Type, type Static } from '@sinclair/typebox';
import type { ApiDeps } from '../server.ts';
import { ADMINS } from '../auth.ts';
import { EnrollmentCodeResponse } from './enrollments.ts';
import { ErrorSchema } from './errors.ts';
import { issueEnrollmentCode } from './enrollment-codes.ts';

const CodeRequest = Type.Object(
  {
    market: Type.String({ minLength: 1 }),
    owner: Type.String({ pattern: '^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$' }),
    ttlHours: Type.Optional(Type.Integer({ minimum: 1, maximum: 24 * 90 })),
  },
  { additionalProperties: false },
);

/** Admin routes: an admin API key (stored, or the configured admin key) on every one. */
export const adminRoutes: FastifyPluginAsync<ApiDeps> = async (app, deps) => {
  const { ledger, log, onRevoke } = deps;

  // The older form of POST /enrollment-codes (the CLI's scripts and tests use it): market required, answer without an id.
  app.post<{ Body: Static<typeof CodeRequest> }>(
    '/enrollment-codes',
    { config: { roles: ADMINS }, schema: { body: CodeRequest, response: { 201: EnrollmentCodeResponse, 404: ErrorSchema } } },
    async (req, reply) => {
      const r = await issueEnrollmentCode(deps, req.principal!, req.body);
      if ('refused' in r) return reply.code(r.refused.status).send(r.refused.body);
      const { code, market, owner, expiresAt } = r.issued;
      return reply.code(201).send({ code, market, owner, expiresAt });
    },
  );

  app.post<{ Params: { id: string } }>(
    '/gateways/:id/revoke',
    {
      config: { roles: ADMINS },
      schema: {
        params: Type.Object({ id: Type.String() }),
        response: { 200: Type.Object({ gateway: Type.String(), status: Type.Literal('revoked'), revokedAt: Type.String() }), 404: ErrorSchema },
      },
    },
    async (req, reply) => {
      const at = Date.now();
      if (!(await ledger.setGatewayStatus(req.params.id, 'revoked', at))) {
        return reply.code(404).send({ code: 'unknown_gateway', message: `gateway ${req.params.id} is not registered` });
      }
      onRevoke(req.params.id);
      log.warn({ gateway: req.params.id, key: req.principal?.keyId }, 'gateway revoked');
      return { gateway: req.params.id, status: 'revoked' as const, revokedAt: new Date(at).toISOString() };
    },
  );
};
