import { readFileSync } from 'node:fs';
import { STATUS_CODES } from 'node:http';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { FastifyInstance, FastifySchema, RouteOptions } from 'fastify';
import swagger from '@fastify/swagger';
import swaggerUi from '@fastify/swagger-ui';
import { ErrorSchema } from './routes/errors.ts';

/**
 * The OpenAPI 3 document of the REST API, generated from the routes' TypeBox schemas by
 * @fastify/swagger and served at /docs/json, with Swagger UI at /docs (its assets come from the
 * package, no CDN). Each route's entry gets, from the route's own declarations: its security
 * (config.roles → the bearer scheme; config.public → none), its roles in the description, a tag
 * for its area, and its error answers as the one named `ApiError` component. docs/api.md is the
 * overview a client is written from; this document is its exact reference.
 */

export const DOCS_PREFIX = '/docs';
/** Why the documentation routes need no key (auth.ts asks every route for roles or a reason). */
export const DOCS_PUBLIC = 'API documentation; no data';
/** The name of the error shape in `components.schemas`. */
export const ERROR_COMPONENT = 'ApiError';

type Json = Record<string, unknown>;

const isObject = (v: unknown): v is Json => typeof v === 'object' && v !== null && !Array.isArray(v);

/** Version of the gridtokenx package: from sources the file two folders up, from dist/ three. */
export function packageVersion(from = dirname(fileURLToPath(import.meta.url))): string {
  for (let dir = from; ; dir = dirname(dir)) {
    try {
      const pkg = JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8')) as { name?: unknown; version?: unknown };
      if (pkg.name === 'gridtokenx' && typeof pkg.version === 'string') return pkg.version;
    } catch {
      // no package.json here: look further up
    }
    if (dirname(dir) === dir) return '0.0.0';
  }
}

/** The document's introduction: what a client needs before the operations. */
const description = (writesPerMinute: number) => `The settlement's REST API: meters and their verified energy, the market, certificates, rewards,
governance, gateways and API keys. The overview a client is written from is docs/api.md in the sources; this document
is generated from the routes' own schemas, so it matches the running version.

**Authentication.** Send an API key as \`Authorization: Bearer <key>\` (\`gtx settlement api-key create\`, or
\`POST /api/v1/api-keys\` with an admin key). Operations with a lock need one; the others are public and say why.
No key, an unknown or a revoked one: 401 \`unauthorized\`. A key whose role the operation does not take: 403 \`forbidden\`.

**Roles.** *admin*: everything, and the registry (codes, gateways, keys). *utility*: reads every meter, market and
account, and audits. *installer*: bound to a list of customer accounts; enrollment codes and gateway status for them.
*prosumer*: bound to one account. Each operation names its roles; "(own)" and "(customers')" mean that a prosumer key
reaches only its own account's data and an installer key only its customers', whatever a request asks for: another
account's meter is 404, an \`?account=\` or \`?owner=\` of someone else 403.

**Errors.** Every non-2xx answer is \`{"code", "message"}\` (the \`${ERROR_COMPONENT}\` schema): \`code\` is stable and
machine-readable, \`message\` a sentence a person can act on. Besides each operation's own: 400 \`bad_request\` names the
field that fails its schema; 404 \`not_found\` for an unknown path, 405 \`method_not_allowed\` (with \`Allow\`) for a method a
path does not take; 413 \`body_too_large\` (1 MiB); 415 \`unsupported_media_type\`; 429 \`too_many_requests\` (with
\`Retry-After\`) on write operations; 500 \`internal_error\` (the error and a request id are in the settlement's log).

**Numbers and dates.** Money is a decimal string in the currency's major unit (\`"4.00"\`), NRG a decimal string with up to
18 decimals, energy an integer of Wh or a kWh decimal string with up to 3 decimals, as each field says. Instants in
answers are UTC, ISO-8601 with \`Z\`. Date parameters and fields take an ISO-8601 date, \`2026-11-01\` (UTC midnight), or
a date-time with \`Z\` or an offset, \`2026-11-01T06:00:00Z\`, \`2026-11-01T13:00:00+07:00\` (in a URL send \`+\` as \`%2B\`);
\`/rewards\` takes local dates, \`YYYY-MM-DD\`. Ranges are [from, to), at most 31 days; every list has a \`limit\` with a maximum.

**Rate limits.** ${
  writesPerMinute > 0
    ? `Write operations (POST, PUT, PATCH, DELETE under /api/v1) share one budget per caller, per API key or per address without one
(gateway enrollment): ${writesPerMinute} a minute here (\`[http] write_rate_limit_per_minute\`), then 429 with Retry-After.`
    : 'Off here (`[http] write_rate_limit_per_minute` = 0).'
} Reads are not limited.`;

/** Tags, one per area of the API: the first path segment after /api/v1, merged where one area has several. */
const AREAS: Readonly<Record<string, string>> = {
  meters: 'meters',
  markets: 'market',
  orders: 'market',
  balances: 'market',
  trades: 'market',
  conversions: 'market',
  accounts: 'accounts',
  recs: 'certificates',
  rewards: 'rewards',
  governance: 'governance',
  enrollments: 'gateways',
  'enrollment-codes': 'gateways',
  gateways: 'gateways',
  'api-keys': 'keys',
  me: 'keys',
  events: 'events',
  admin: 'admin',
};

const TAGS = [
  { name: 'meters', description: 'Meters, their verified readings, interval energy, gaps and rejections.' },
  { name: 'market', description: 'Price signal, auctions, orders, balances, trades and their delivery settlement, conversions.' },
  { name: 'accounts', description: 'Accounts and their balances.' },
  { name: 'certificates', description: 'Renewable energy certificates: provenance, marketplace, retirement.' },
  { name: 'rewards', description: 'Conservation reward payments with their hours.' },
  { name: 'governance', description: 'NRG staking, voting power, proposals and votes.' },
  { name: 'gateways', description: 'Gateway enrollment with an installer code, enrollment codes, gateway status.' },
  { name: 'keys', description: 'API keys: who a key is, creating, listing and revoking keys.' },
  { name: 'events', description: 'Live events (Server-Sent Events).' },
  { name: 'admin', description: 'Registry and treasury operations of an admin.' },
  { name: 'operations', description: 'Liveness, readiness and Prometheus metrics.' },
  { name: 'web', description: 'The web pages (docs/web.md).' },
];

/** The tag of a route: its area under /api/v1; health and metrics are operations; the rest the web pages. */
export function areaOf(url: string): string {
  const api = /^\/api\/v\d+\/([^/]+)/.exec(url);
  if (api) return AREAS[api[1]!] ?? api[1]!;
  if (/^\/(health|metrics)(\/|$)/.test(url)) return 'operations';
  return 'web';
}

/** What a role may see, as the descriptions name it ("Roles: prosumer (own), utility, admin"). */
const ROLE_SCOPE: Readonly<Record<string, string>> = { prosumer: 'prosumer (own)', installer: "installer (customers')" };

export function rolesText(roles: readonly string[]): string {
  return `Roles: ${roles.map((r) => ROLE_SCOPE[r] ?? r).join(', ')}.`;
}

/** What an error answer means when the route gave the plain ErrorSchema, by status. */
const ERROR_MEANING: Readonly<Record<string, string>> = {
  '400': 'bad_request: a parameter or body field fails its schema (the message names it), or the body is not JSON.',
  '401': 'unauthorized: no API key, or an unknown or revoked one (with WWW-Authenticate: Bearer).',
  '403': "forbidden: the key's role may not use this operation, or the key asks for data of an account it is not bound to.",
  '404': 'not found: the code names what (unknown_meter, unknown_market …).',
  '409': 'conflict with the current state: the code says which.',
  '410': 'gone: the code says which.',
  '413': 'body_too_large: the body is larger than the server takes (1 MiB).',
  '415': 'unsupported_media_type: send the body as JSON, with content-type: application/json.',
  '422': 'refused by a rule of the domain: the code says which.',
  '429': 'too_many_requests: the caller sent more write requests than its budget; Retry-After says when to try again.',
  '500': "internal_error: the server could not answer; the error and the request id are in the settlement's log.",
  '503': 'not available now: the code says why.',
};

/** `{"code","message"}` however a route spelled it (ErrorSchema or describedError). */
export function isErrorShape(s: unknown): s is Json {
  if (!isObject(s) || s.type !== 'object' || !isObject(s.properties)) return false;
  return Object.keys(s.properties).sort().join(',') === 'code,message';
}

/** Error answers as references to the one component, keeping what each means to the route, and its headers. */
function documentedResponses(response: Json, hasBody: boolean): Json {
  const out: Json = {};
  for (const [status, s] of Object.entries(response)) {
    if (!isErrorShape(s)) {
      // The answer's own description, else its status text ("OK", "Created"), not "Default Response".
      out[status] = isObject(s) && typeof s.description !== 'string' ? { ...s, 'x-response-description': STATUS_CODES[Number(status)] ?? status } : s;
      continue;
    }
    const own = s !== ErrorSchema && typeof s.description === 'string' && s.description !== ErrorSchema.description ? s.description : undefined;
    out[status] = {
      $ref: `${ERROR_COMPONENT}#`,
      description: own ?? ERROR_MEANING[status] ?? 'an error: the code says which.',
      ...(isObject(s.headers) ? { headers: s.headers } : {}),
    };
  }
  // The body parser's answers, which any route that takes a body can give (routes/errors.ts).
  if (hasBody) {
    for (const status of ['413', '415']) out[status] ??= { $ref: `${ERROR_COMPONENT}#`, description: ERROR_MEANING[status] };
  }
  return out;
}

/**
 * The route → document transform: security, roles, tag and error answers from the route's own
 * declarations. Returns new objects; the route's live schema (its validators and serializers) is
 * never touched.
 */
export function documentRoute({ schema, url, route }: { schema: FastifySchema | undefined; url: string; route: RouteOptions }): { schema: FastifySchema; url: string } {
  const s: FastifySchema & Json = { ...(schema ?? {}) };
  const { roles, public: open } = route.config ?? {};
  s.tags ??= [areaOf(url)];
  const access = roles && roles.length > 0 ? rolesText(roles) : `Public, no API key: ${open ?? 'open'}.`;
  s.description = [schema?.description, access].filter(Boolean).join('\n\n');
  if (roles && roles.length > 0) {
    // Admin-only routes also take the older x-admin-key header (auth.ts).
    s.security = roles.length === 1 && roles[0] === 'admin' ? [{ bearer: [] }, { adminKey: [] }] : [{ bearer: [] }];
  } else {
    s.security = [];
  }
  if (isObject(s.response)) s.response = documentedResponses(s.response, s.body !== undefined);
  return { schema: s, url };
}

/** Routes of the documentation itself: under the prefix and hidden from the document (as the plugins register them). */
function isDocsRoute(route: RouteOptions): boolean {
  const inPrefix = route.url === DOCS_PREFIX || route.url.startsWith(`${DOCS_PREFIX}/`);
  return inPrefix && (route.schema as { hide?: unknown } | undefined)?.hide === true;
}

/** Swagger UI's page may load only its own scripts and styles (React sets inline styles; its logo is a data: URL). */
const DOCS_CSP = "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; connect-src 'self'; font-src 'self' data:; base-uri 'self'; form-action 'none'; frame-ancestors 'none'";

/**
 * Registers the document and the UI. Call on the root instance before registerAuth and the route
 * plugins: its onRoute hook must run before auth's, which refuses a route that declares no access,
 * and the generator must see every route registered after it.
 */
export function registerApiDocs(app: FastifyInstance, opts: { writeRateLimitPerMinute: number }): void {
  // Only the routes the two plugins add (under /docs, hidden from the document) become public
  // here; any other route still has to declare roles or a reason itself.
  app.addHook('onRoute', (route) => {
    const { roles, public: open } = route.config ?? {};
    if (isDocsRoute(route) && roles === undefined && open === undefined) route.config = { ...route.config, public: DOCS_PUBLIC };
  });

  // A named component for the one error shape; routes' error answers refer to it (documentRoute).
  app.addSchema({ ...ErrorSchema, $id: ERROR_COMPONENT, title: ERROR_COMPONENT });

  app.register(swagger, {
    openapi: {
      openapi: '3.0.3',
      info: { title: 'GridTokenX settlement API', version: packageVersion(), description: description(opts.writeRateLimitPerMinute) },
      tags: TAGS,
      components: {
        securitySchemes: {
          bearer: { type: 'http', scheme: 'bearer', description: 'An API key: `Authorization: Bearer gtx_…` (gtx settlement api-key create).' },
          adminKey: { type: 'apiKey', in: 'header', name: 'x-admin-key', description: 'The configured admin key (GTX_ADMIN_KEY), on admin-only operations; prefer the bearer scheme.' },
        },
      },
    },
    transform: documentRoute,
    // Shared schemas keep their $id as their component name (ApiError), not def-N.
    refResolver: { buildLocalReference: (json, _base, _fragment, i) => (typeof json.$id === 'string' && /^[A-Za-z][\w.-]*$/.test(json.$id) ? json.$id : `def-${i}`) },
  });
  app.register(swaggerUi, {
    routePrefix: DOCS_PREFIX,
    staticCSP: DOCS_CSP,
    theme: { title: 'GridTokenX API' },
    uiConfig: { deepLinking: true, defaultModelsExpandDepth: 0 },
  });
}
