import { createHash, timingSafeEqual } from 'node:crypto';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { Logger } from 'pino';
import type { ApiKeyStore, ApiPrincipal, ApiRole } from '../registry/api-keys.ts';
import { ErrorSchema } from './routes/errors.ts';

/**
 * Who may call each route. Every route declares it in its options, and a route that declares
 * neither refuses to register, so a new route cannot forget:
 *
 *   app.get('/meters', { config: { roles: READERS }, … })          API key of one of these roles
 *   app.get('/health', { config: { public: 'no per-meter data' }, … })   open; the reason is the review note
 */
declare module 'fastify' {
  interface FastifyContextConfig {
    roles?: readonly ApiRole[];
    /** Why this route needs no API key (it serves no personal data, or checks another credential). */
    public?: string;
  }
  interface FastifyRequest {
    /** The key holder, on routes with `roles`. */
    principal?: ApiPrincipal;
  }
}

/** Routes that expose every meter's and every market's data: utilities and admins. */
export const READERS: readonly ApiRole[] = ['admin', 'utility'];
/** Routes that change the registry. */
export const ADMINS: readonly ApiRole[] = ['admin'];
/** Data any key holder may see (price signals, auction results, proposals): every role. */
export const ANY_KEY: readonly ApiRole[] = ['admin', 'utility', 'installer', 'prosumer'];
/**
 * Every role, each scoped to what it may see (visibleAccounts below): a prosumer its own
 * account's meters, an installer its customers', utilities and admins all. The route checks.
 */
export const SCOPED_READERS: readonly ApiRole[] = ['admin', 'utility', 'installer', 'prosumer'];
/** An account's own data (orders, balances, trades, certificates, rewards, stakes) or all of it: no installers. */
export const OWNERS_AND_READERS: readonly ApiRole[] = ['admin', 'utility', 'prosumer'];
/** Gateway status: the fleet for utilities and admins, an installer's customers' gateways. */
export const GATEWAY_READERS: readonly ApiRole[] = ['admin', 'utility', 'installer'];
/** Enrollment codes: admins for any owner, installers for their customers. */
export const CODE_ISSUERS: readonly ApiRole[] = ['admin', 'installer'];

/**
 * The registry accounts whose data `p` may see: null for all (admin, utility), a prosumer's
 * own account, an installer's customers. Routes filter by it whatever the query asks for.
 */
export function visibleAccounts(p: ApiPrincipal): readonly string[] | null {
  switch (p.role) {
    case 'prosumer':
      return [p.account];
    case 'installer':
      return p.customers;
    case 'admin':
    case 'utility':
      return null;
    default:
      // A role added later sees no account's data until it is named here.
      return [];
  }
}

/** Whether `p` may see the data of `account`. */
export function maySee(p: ApiPrincipal, account: string): boolean {
  const accounts = visibleAccounts(p);
  return accounts === null || accounts.includes(account);
}

export interface AuthDeps {
  apiKeys: ApiKeyStore;
  /** The configured admin key (GTX_ADMIN_KEY / [enrollment] admin_key); acts as an admin API key. */
  adminKey: string | null;
  log: Logger;
}

const sha256 = (s: string) => createHash('sha256').update(s, 'utf8').digest();

/** The presented key: `Authorization: Bearer …`, or the older `x-admin-key` on admin-only routes. */
function presentedKey(req: FastifyRequest, adminOnly: boolean): string | undefined {
  const auth = req.headers.authorization;
  if (auth !== undefined) {
    const m = /^Bearer +(\S+) *$/i.exec(auth);
    return m?.[1];
  }
  const legacy = req.headers['x-admin-key'];
  return adminOnly && typeof legacy === 'string' && legacy !== '' ? legacy : undefined;
}

function unauthorized(reply: FastifyReply, message: string): FastifyReply {
  return reply.code(401).header('www-authenticate', 'Bearer').send({ code: 'unauthorized', message });
}

/**
 * Adds the checks to `app` itself (not an encapsulated plugin), before any route is registered:
 * onRoute refuses undeclared routes, onRequest authenticates and checks the role.
 */
export function registerAuth(app: FastifyInstance, deps: AuthDeps): void {
  const { apiKeys, log } = deps;
  // Compared as SHA-256 digests: equal lengths for timingSafeEqual, and no timing signal about the key's length.
  const adminDigest = deps.adminKey === null ? null : sha256(deps.adminKey);
  app.decorateRequest('principal', undefined);

  app.addHook('onRoute', (route) => {
    const { roles, public: open } = route.config ?? {};
    if (open === undefined && (roles === undefined || roles.length === 0)) {
      throw new Error(`route ${route.method} ${route.url} declares no access: add config.roles (API key roles) or config.public (why it is open)`);
    }
    if (open !== undefined && roles !== undefined) throw new Error(`route ${route.method} ${route.url} declares both roles and public`);
    // Documented in the route's schema, like its other answers.
    const response = route.schema?.response as Record<string, unknown> | undefined;
    if (roles && response) {
      response[401] ??= ErrorSchema;
      response[403] ??= ErrorSchema;
    }
  });

  app.addHook('onRequest', async (req, reply) => {
    const roles = req.routeOptions.config.roles;
    // Public routes, and URLs no route matches (404).
    if (!roles) return;
    const key = presentedKey(req, roles.length === 1 && roles[0] === 'admin');
    if (key === undefined) {
      return unauthorized(reply, 'this route needs an API key: send "Authorization: Bearer <key>" (gtx settlement api-key create)');
    }
    const principal: ApiPrincipal | undefined =
      adminDigest !== null && timingSafeEqual(sha256(key), adminDigest) ? { keyId: 'admin-key', role: 'admin' } : await apiKeys.authenticate(key);
    if (!principal) {
      log.warn({ ip: req.ip, url: req.url }, 'API request with an unknown or revoked key');
      return unauthorized(reply, 'unknown or revoked API key');
    }
    if (!roles.includes(principal.role)) {
      log.warn({ ip: req.ip, url: req.url, key: principal.keyId, role: principal.role }, 'API request with a key of the wrong role');
      return reply.code(403).send({ code: 'forbidden', message: `a ${principal.role} key may not use this route; it needs ${roles.join(' or ')}` });
    }
    req.principal = principal;
  });
}
