import type { FastifyPluginAsync } from 'fastify';
import { timingSafeEqual } from 'node:crypto';
import { Type, type Static } from '@sinclair/typebox';
import { EnrollmentError } from '../../registry/enrollment.ts';
import type { ApiDeps } from '../server.ts';
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

function sameKey(given: string | undefined, expected: string): boolean {
  if (!given) return false;
  const a = Buffer.from(given);
  const b = Buffer.from(expected);
  return a.length === b.length && timingSafeEqual(a, b);
}

/** Admin routes, behind the `x-admin-key` header. Off when no admin key is configured. */
export const adminRoutes: FastifyPluginAsync<ApiDeps> = async (app, deps) => {
  const { adminKey, enrollment, ledger, log, onRevoke, codeTtlMs } = deps;
  app.addHook('onRequest', async (req, reply) => {
    if (!adminKey) return reply.code(403).send({ code: 'admin_api_off', message: 'no admin key is configured (GTX_ADMIN_KEY or [enrollment] admin_key)' });
    const given = req.headers['x-admin-key'];
    if (!sameKey(typeof given === 'string' ? given : undefined, adminKey)) {
      log.warn({ ip: req.ip, url: req.url }, 'admin request with a wrong or missing key');
      return reply.code(401).send({ code: 'unauthorized', message: 'missing or wrong x-admin-key' });
    }
  });

  app.post<{ Body: Static<typeof CodeRequest> }>(
    '/enrollment-codes',
    { schema: { body: CodeRequest, response: { 201: EnrollmentCodeResponse, 404: ErrorSchema } } },
    async (req, reply) => {
      try {
        const ttlMs = req.body.ttlHours ? req.body.ttlHours * 3600_000 : codeTtlMs;
        const { code, expiresAtMs } = await enrollment.issueCode({ market: req.body.market, owner: req.body.owner, ttlMs });
        log.info({ market: req.body.market, owner: req.body.owner, expiresAt: new Date(expiresAtMs).toISOString() }, 'installer code issued');
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
      log.warn({ gateway: req.params.id }, 'gateway revoked');
      return { gateway: req.params.id, status: 'revoked' as const, revokedAt: new Date(at).toISOString() };
    },
  );
};
