import type { FastifyPluginAsync } from 'fastify';
import { Type, type Static } from '@sinclair/typebox';
import { codeHash, EnrollmentError } from '../../registry/enrollment.ts';
import type { ApiPrincipal } from '../../registry/api-keys.ts';
import { codeIdOf, EnrollmentCodeStore } from '../../store/enrollment-code-store.ts';
import type { ApiDeps } from '../server.ts';
import { CODE_ISSUERS } from '../auth.ts';
import { describedError } from './errors.ts';

/**
 * Installer codes: an admin issues them for any owner, an installer for its customers only, and
 * each lists them (an admin every code, an installer those it issued). The code is shown once,
 * in the answer that issues it; lists name a code by the start of its hash.
 */

const Owner = Type.String({ pattern: '^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$', description: 'the account the gateway is enrolled for (created with the first code)', examples: ['home-1'] });
const TtlHours = Type.Integer({ minimum: 1, maximum: 24 * 90, description: "hours the code stays valid (default: [enrollment] code_ttl_hours)" });

const IssueBody = Type.Object(
  {
    owner: Owner,
    market: Type.Optional(Type.String({ minLength: 1, maxLength: 64, description: 'default: the one market, when there is exactly one' })),
    ttlHours: Type.Optional(TtlHours),
  },
  { additionalProperties: false },
);

const IssuedCode = Type.Object({
  id: Type.String({ description: 'names the code in GET /enrollment-codes' }),
  code: Type.String({ description: 'the one-time installer code: shown only in this answer', examples: ['GTX-7KQ2-M9XD-4TRB'] }),
  market: Type.String(),
  owner: Type.String(),
  expiresAt: Type.String(),
  issuedBy: Type.String({ description: 'the API key id that issued it' }),
});

const CodeJson = Type.Object({
  id: Type.String({ description: 'the first 16 hex digits of the code’s SHA-256; the code itself is never shown again' }),
  owner: Type.String(),
  market: Type.String(),
  createdAt: Type.String(),
  expiresAt: Type.String(),
  status: Type.Union([Type.Literal('open'), Type.Literal('used'), Type.Literal('expired')]),
  usedAt: Type.Union([Type.String(), Type.Null()]),
  gateway: Type.Union([Type.String(), Type.Null()], { description: 'the gateway that enrolled with it' }),
  issuedBy: Type.Union([Type.String(), Type.Null()], { description: 'the API key id that issued it; null for codes from the CLI' }),
});

const iso = (ms: number) => new Date(ms).toISOString();

type Issued = { id: string; code: string; market: string; owner: string; expiresAt: string; issuedBy: string };
type Refused = { status: number; body: { code: string; message: string } };

/** Issues a code for `owner` as `p` (an installer only for its customers) and records who issued it. */
export async function issueEnrollmentCode(
  deps: Pick<ApiDeps, 'enrollment' | 'ledger' | 'log' | 'codeTtlMs'>,
  p: ApiPrincipal,
  body: { owner: string; market?: string | undefined; ttlHours?: number | undefined },
): Promise<{ issued: Issued } | { refused: Refused }> {
  if (p.role === 'installer' && !p.customers.includes(body.owner)) {
    const message = `${JSON.stringify(body.owner)} is not a customer of this installer key (it serves ${p.customers.join(', ')}); ask an admin for a code`;
    return { refused: { status: 403, body: { code: 'forbidden', message } } };
  }
  let market = body.market;
  if (market === undefined) {
    const markets = await deps.ledger.listMarkets();
    if (markets.length !== 1) {
      const message = `name the market: body field "market" is one of ${markets.map((m) => m.id).join(', ') || '(none configured)'}`;
      return { refused: { status: 400, body: { code: 'bad_request', message } } };
    }
    market = markets[0]!.id;
  }
  try {
    const ttlMs = body.ttlHours ? body.ttlHours * 3600_000 : deps.codeTtlMs;
    const { code, expiresAtMs } = await deps.enrollment.issueCode({ market, owner: body.owner, ttlMs });
    const hash = codeHash(code);
    await new EnrollmentCodeStore(deps.ledger.db).recordIssuer(hash, p.keyId);
    deps.log.info({ market, owner: body.owner, expiresAt: iso(expiresAtMs), key: p.keyId, role: p.role }, 'installer code issued');
    return { issued: { id: codeIdOf(hash), code, market, owner: body.owner, expiresAt: iso(expiresAtMs), issuedBy: p.keyId } };
  } catch (e) {
    if (e instanceof EnrollmentError) return { refused: { status: e.status, body: { code: e.code, message: e.message } } };
    throw e;
  }
}

export const enrollmentCodeRoutes: FastifyPluginAsync<ApiDeps> = async (app, deps) => {
  const codes = new EnrollmentCodeStore(deps.ledger.db);

  app.post<{ Body: Static<typeof IssueBody> }>(
    '/enrollment-codes',
    {
      config: { roles: CODE_ISSUERS },
      schema: {
        description: 'A one-time installer code for a gateway of `owner`: an admin key for any owner, an installer key for its customers only.',
        body: IssueBody,
        response: {
          201: IssuedCode,
          400: describedError('bad_request: a field is malformed, or there are several markets and none is named; bad_owner.'),
          403: describedError('forbidden: an installer key naming an owner that is not one of its customers.'),
          404: describedError('unknown_market: no market of this id is configured.'),
        },
      },
    },
    async (req, reply) => {
      const r = await issueEnrollmentCode(deps, req.principal!, req.body);
      return 'issued' in r ? reply.code(201).send(r.issued) : reply.code(r.refused.status).send(r.refused.body);
    },
  );

  app.get<{ Querystring: { limit?: number } }>(
    '/enrollment-codes',
    {
      config: { roles: CODE_ISSUERS },
      schema: {
        description: 'Installer codes, newest first: an admin key sees every code, an installer key those it issued. The codes themselves are never shown again.',
        querystring: Type.Object(
          { limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 1000, description: 'at most this many (default 100, at most 1000)' })) },
          { additionalProperties: false },
        ),
        response: { 200: Type.Array(CodeJson, { description: 'newest first' }) },
      },
    },
    async (req) => {
      const p = req.principal!;
      const rows = await codes.list({ limit: req.query.limit ?? 100, ...(p.role === 'admin' ? {} : { issuedBy: p.keyId }) });
      const now = Date.now();
      return rows.map((c) => ({
        id: c.id,
        owner: c.owner,
        market: c.market,
        createdAt: iso(c.createdAtMs),
        expiresAt: iso(c.expiresAtMs),
        status: c.usedAtMs !== null ? ('used' as const) : now >= c.expiresAtMs ? ('expired' as const) : ('open' as const),
        usedAt: c.usedAtMs === null ? null : iso(c.usedAtMs),
        gateway: c.usedBy,
        issuedBy: c.issuedBy,
      }));
    },
  );
};
