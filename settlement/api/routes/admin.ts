import type { FastifyPluginAsync } from 'fastify';
import { Type, type Static } from '@sinclair/typebox';
import { EnrollmentError } from '../../registry/enrollment.ts';
import type { ApiDeps } from '../server.ts';
import { ADMINS } from '../auth.ts';
import { EnrollmentCodeResponse } from './enrollments.ts';
import { ErrorSchema } from './errors.ts';

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
  const { enrollment, ledger, log, onRevoke, codeTtlMs } = deps;

  app.post<{ Body: Static<typeof CodeRequest> }>(
    '/enrollment-codes',
    { config: { roles: ADMINS }, schema: { body: CodeRequest, response: { 201: EnrollmentCodeResponse, 404: ErrorSchema } } },
    async (req, reply) => {
      try {
        const ttlMs = req.body.ttlHours ? req.body.ttlHours * 3600_000 : codeTtlMs;
        const { code, expiresAtMs } = await enrollment.issueCode({ market: req.body.market, owner: req.body.owner, ttlMs });
        log.info({ market: req.body.market, owner: req.body.owner, expiresAt: new Date(expiresAtMs).toISOString(), key: req.principal?.keyId }, 'installer code issued');
        return reply.code(201).send({ code, market: req.body.market, owner: req.body.owner, expiresAt: new Date(expiresAtMs).toISOString() });
      } catch (e) {
        if (e instanceof EnrollmentError) return reply.code(e.status).send({ code: e.code, message: e.message });
        throw e;
      }
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
