import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import Fastify, { type FastifyInstance } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { registerAuth } from '../../settlement/api/auth.ts';
import { DOCS_PREFIX, ERROR_COMPONENT, registerApiDocs, rolesText } from '../../settlement/api/openapi.ts';
import { isLimitedWrite } from '../../settlement/api/rate-limit.ts';
import { listenApi } from '../../settlement/api/server.ts';
import type { Ledger } from '../../settlement/ledger/ledger.ts';
import { openLedger } from '../../settlement/ledger/open.ts';
import { ApiKeyStore } from '../../settlement/registry/api-keys.ts';
import { launchBrowser, skipWithoutChromium } from '../support/browser.ts';
import { fullApi } from '../support/full-api.ts';
import { testLog } from '../support/stack.ts';
import { tempDir } from '../support/tmp.ts';

/**
 * The OpenAPI document at /docs/json against the routes the app really registered (collected as
 * they are added, so routes other parts add are checked without a list here): every route is in
 * it with its success schema, its errors as the one ApiError component, its security and roles;
 * every $ref resolves; /docs serves Swagger UI from this server without a key; and docs/api.md
 * lists exactly the document's operations.
 */

const ROOT = join(import.meta.dirname, '../..');
const API_MD = join(ROOT, 'docs/api.md');
const LIMIT = 120;

type Json = Record<string, unknown>;
interface Operation {
  description?: string;
  security?: Array<Record<string, string[]>>;
  parameters?: Array<{ in: string; name: string; schema?: Json; description?: string }>;
  requestBody?: { content: Record<string, { schema: Json }> };
  responses: Record<string, { description: string; content?: Record<string, { schema: Json }>; headers?: Record<string, unknown> }>;
}
interface Doc {
  openapi: string;
  info: { title: string; version: string; description: string };
  paths: Record<string, Record<string, Operation>>;
  components: { schemas: Record<string, Json>; securitySchemes: Record<string, Json> };
}
interface Route {
  method: string;
  url: string;
  roles?: readonly string[];
  open?: string;
  hasInput: boolean;
}

/** fastify's `:param` and `*` as OpenAPI path templates. */
const openapiPath = (url: string) => url.replace(/:([A-Za-z_]\w*)/g, '{$1}').replace(/\*/g, '{*}');
const isDocs = (url: string) => url === DOCS_PREFIX || url.startsWith(`${DOCS_PREFIX}/`);

/** Every `$ref` in the document, with where it was found. */
function refs(node: unknown, at = '#'): Array<{ ref: string; at: string }> {
  if (Array.isArray(node)) return node.flatMap((v, i) => refs(v, `${at}/${i}`));
  if (typeof node !== 'object' || node === null) return [];
  return Object.entries(node).flatMap(([k, v]) => (k === '$ref' && typeof v === 'string' ? [{ ref: v, at }] : refs(v, `${at}/${k}`)));
}

/** A local JSON pointer (`#/components/schemas/ApiError`) in `doc`, or undefined. */
function resolvePointer(doc: unknown, ref: string): unknown {
  if (!ref.startsWith('#/')) return undefined;
  return ref
    .slice(2)
    .split('/')
    .map((p) => p.replace(/~1/g, '/').replace(/~0/g, '~'))
    .reduce<unknown>((node, key) => (typeof node === 'object' && node !== null ? (node as Json)[key] : undefined), doc);
}

/** The table rows of docs/api.md: `| \`METHOD /path\` | roles | what |`. */
function documentedRows(markdown: string): Map<string, string> {
  const rows = new Map<string, string>();
  for (const m of markdown.matchAll(/^\| `(GET|POST|PUT|PATCH|DELETE) (\/\S*)` \| ([^|]+) \|/gm)) rows.set(`${m[1]} ${m[2]}`, m[3]!.trim());
  return rows;
}

/** The roles column as docs/api.md writes it: "admin, utility, prosumer (own)" or "public: why". */
function rolesColumn(r: Route): string {
  return r.roles ? rolesText(r.roles).replace(/^Roles: /, '').replace(/\.$/, '') : `public: ${r.open ?? ''}`;
}

describe('the OpenAPI document', () => {
  const dir = tempDir('gtx-api-openapi-');
  let ledger: Ledger;
  let app: FastifyInstance;
  let base: string;
  let doc: Doc;
  const routes: Route[] = [];

  beforeAll(async () => {
    ledger = await openLedger({ sqlitePath: join(dir.path, 'ledger.sqlite') });
    // Every optional part on (market, governance, certificates, live events), with the write limit.
    ({ app } = await fullApi(ledger, new ApiKeyStore(ledger.db), { writeRateLimitPerMinute: LIMIT }));
    app.addHook('onRoute', (r) => {
      for (const method of [r.method].flat()) {
        if (method === 'HEAD' || isDocs(r.url)) continue;
        const s = r.schema ?? {};
        routes.push({ method, url: r.url, roles: r.config?.roles, open: r.config?.public, hasInput: !!(s.querystring || s.body || s.params) });
      }
    });
    base = await listenApi(app, '127.0.0.1', 0);
    const res = await fetch(`${base}/docs/json`);
    expect(res.status).toBe(200);
    doc = (await res.json()) as Doc;
  });
  afterAll(async () => {
    await app?.close();
    await ledger?.close();
    dir.remove();
  });

  it('is OpenAPI 3 with info from package.json, a bearer scheme and the error shape as a component', () => {
    expect(doc.openapi).toMatch(/^3\.\d+\.\d+$/);
    const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { version: string };
    expect(doc.info).toMatchObject({ title: expect.stringContaining('GridTokenX'), version: pkg.version });
    // The description a client starts from: auth, roles, errors, dates, rate limits.
    for (const word of ['Authorization: Bearer', 'admin', 'utility', 'installer', 'prosumer', '{"code", "message"}', '2026-11-01T13:00:00+07:00', 'write_rate_limit_per_minute']) {
      expect(doc.info.description).toContain(word);
    }
    expect(doc.components.securitySchemes.bearer).toMatchObject({ type: 'http', scheme: 'bearer' });
    expect(doc.components.schemas[ERROR_COMPONENT]).toMatchObject({ type: 'object', required: ['code', 'message'], properties: { code: { type: 'string' }, message: { type: 'string' } } });
    expect(routes.length).toBeGreaterThan(30);
  });

  it('has every registered route, with the same method, and nothing else', () => {
    const registered = routes.map((r) => `${r.method} ${openapiPath(r.url)}`).sort();
    const documented = Object.entries(doc.paths)
      .flatMap(([path, ops]) => Object.keys(ops).map((m) => `${m.toUpperCase()} ${path}`))
      .sort();
    expect(documented).toEqual(registered);
  });

  it('declares for each route its success schema, and for routes with roles 401, 403, the bearer scheme and the roles', () => {
    for (const r of routes) {
      const where = `${r.method} ${r.url}`;
      const op = doc.paths[openapiPath(r.url)]?.[r.method.toLowerCase()];
      expect(op, where).toBeDefined();
      const success = Object.entries(op!.responses).filter(([status]) => /^2\d\d$/.test(status));
      expect(success.length, `${where}: no 2xx answer`).toBeGreaterThan(0);
      for (const [status, answer] of success) {
        expect(Object.values(answer.content ?? {}).map((c) => c.schema), `${where} ${status}: no schema`).toEqual([expect.any(Object)]);
      }
      if (r.roles) {
        expect(op!.security, where).toContainEqual({ bearer: [] });
        expect(op!.description, where).toContain(rolesText(r.roles));
        for (const status of ['401', '403']) expect(op!.responses[status], `${where} ${status}`).toBeDefined();
      } else {
        expect(op!.security, where).toEqual([]);
        expect(op!.description, where).toContain(`Public, no API key: ${r.open}`);
      }
      if (r.hasInput) expect(op!.responses['400'], `${where}: 400 for input that fails its schema`).toBeDefined();
      if (isLimitedWrite(r)) {
        expect(op!.responses['429'], `${where}: 429 of the write rate limit`).toBeDefined();
        expect(op!.responses['429']!.headers, where).toHaveProperty('retry-after');
      }
    }
  });

  it('shows every 4xx and 500 answer as the ApiError component, with what it means', () => {
    for (const [path, ops] of Object.entries(doc.paths)) {
      for (const [method, op] of Object.entries(ops)) {
        for (const [status, answer] of Object.entries(op.responses)) {
          if (!/^4\d\d$|^500$/.test(status)) continue;
          const where = `${method.toUpperCase()} ${path} ${status}`;
          expect(answer.content?.['application/json']?.schema, where).toEqual({ $ref: `#/components/schemas/${ERROR_COMPONENT}` });
          expect(answer.description, where).not.toBe('Default Response');
        }
      }
    }
  });

  it('resolves every $ref', () => {
    const all = refs(doc);
    expect(all.length).toBeGreaterThan(0);
    const broken = all.filter(({ ref }) => resolvePointer(doc, ref) === undefined);
    expect(broken).toEqual([]);
  });

  it('says which ISO-8601 forms each date parameter and date field takes', () => {
    const dated = /^(from|to|at|since|until)$|(Start|End|At)$/;
    /** A free string (not an enum of currencies, say) under a date-like name. */
    const isDate = (name: string, s: Json | undefined) => dated.test(name) && s?.type === 'string' && s.enum === undefined;
    const undocumented: string[] = [];
    for (const [path, ops] of Object.entries(doc.paths)) {
      for (const [method, op] of Object.entries(ops)) {
        const fields = [
          ...(op.parameters ?? []).filter((p) => p.in === 'query').map((p) => ({ name: p.name, schema: p.schema, description: p.description })),
          ...Object.entries((op.requestBody?.content['application/json']?.schema.properties ?? {}) as Record<string, Json & { description?: string }>).map(([name, s]) => ({ name, schema: s, description: s.description })),
        ];
        for (const f of fields) {
          if (!isDate(f.name, f.schema)) continue;
          // A concrete example of the form: 2026-11-01, 2026-11-01T06:00:00Z … or YYYY-MM-DD for local dates.
          if (!/\d{4}-\d{2}-\d{2}|YYYY-MM-DD/.test(f.description ?? '')) undocumented.push(`${method.toUpperCase()} ${path}: ${f.name} (${JSON.stringify(f.description ?? null)})`);
        }
      }
    }
    expect(undocumented).toEqual([]);
  });

  it('serves Swagger UI at /docs and the document at /docs/json without a key, from this server only', async () => {
    const page = await fetch(`${base}/docs`);
    expect(page.status).toBe(200);
    expect(page.headers.get('content-type')).toMatch(/^text\/html/);
    expect(page.headers.get('content-security-policy')).toContain("script-src 'self'");
    const html = await page.text();
    const links = [...html.matchAll(/(?:src|href)="([^"]+)"/g)].map((m) => m[1]!);
    expect(links.length).toBeGreaterThan(2);
    // No CDN: every script and style sheet is a path on this server, and each answers.
    for (const link of links) {
      expect(link, 'an absolute URL in /docs').not.toMatch(/^[a-z]+:|^\/\//i);
      const asset = await fetch(new URL(link, `${base}/docs`));
      expect([link, asset.status]).toEqual([link, 200]);
      await asset.arrayBuffer();
    }
    // A key, even a wrong one, changes nothing on public routes.
    const withKey = await fetch(`${base}/docs/json`, { headers: { authorization: 'Bearer gtx_not-a-key' } });
    expect(withKey.status).toBe(200);
    await withKey.arrayBuffer();
  });
});

describe('docs/api.md', () => {
  const dir = tempDir('gtx-api-md-');
  let ledger: Ledger;
  let app: FastifyInstance;
  const routes: Route[] = [];

  beforeAll(async () => {
    ledger = await openLedger({ sqlitePath: join(dir.path, 'ledger.sqlite') });
    // Every optional part on (market, governance, certificates, live events), with the write limit.
    ({ app } = await fullApi(ledger, new ApiKeyStore(ledger.db), { writeRateLimitPerMinute: LIMIT }));
    app.addHook('onRoute', (r) => {
      for (const method of [r.method].flat()) {
        if (method !== 'HEAD' && !isDocs(r.url)) routes.push({ method, url: r.url, roles: r.config?.roles, open: r.config?.public, hasInput: false });
      }
    });
    await app.ready();
  });
  afterAll(async () => {
    await app?.close();
    await ledger?.close();
    dir.remove();
  });

  it('lists every operation of the document once, with its roles, and no other', () => {
    const rows = documentedRows(readFileSync(API_MD, 'utf8'));
    const missing: string[] = [];
    const wrongRoles: string[] = [];
    for (const r of routes) {
      const key = `${r.method} ${openapiPath(r.url)}`;
      const row = rows.get(key);
      // Ready to paste into the table of its area.
      if (row === undefined) missing.push(`| \`${key}\` | ${rolesColumn(r)} | … |`);
      else if (row !== rolesColumn(r)) wrongRoles.push(`${key}: "${row}", the route says "${rolesColumn(r)}"`);
    }
    const known = new Set(routes.map((r) => `${r.method} ${openapiPath(r.url)}`));
    const stale = [...rows.keys()].filter((k) => !known.has(k));
    expect(missing, `docs/api.md misses these operations:\n${missing.join('\n')}`).toEqual([]);
    expect(wrongRoles, 'docs/api.md names other roles than the routes').toEqual([]);
    expect(stale, 'docs/api.md lists operations the API does not have').toEqual([]);
  });

  it('is linked from README', () => {
    expect(readFileSync(join(ROOT, 'README.md'), 'utf8')).toContain('(docs/api.md)');
  });
});

describe('the docs routes and the rule that every route declares its access', () => {
  const dir = tempDir('gtx-api-docs-rule-');
  let ledger: Ledger;
  beforeAll(async () => {
    ledger = await openLedger({ sqlitePath: join(dir.path, 'l.sqlite') });
  });
  afterAll(async () => {
    await ledger?.close();
    dir.remove();
  });

  /** The docs and auth as buildApi orders them, and `add`'s routes. */
  function bare(add: (app: FastifyInstance) => void): FastifyInstance {
    const app = Fastify();
    registerApiDocs(app, { writeRateLimitPerMinute: 0 });
    registerAuth(app, { apiKeys: new ApiKeyStore(ledger.db), adminKey: null, log: testLog('api') });
    add(app);
    return app;
  }

  it('marks only the documentation plugins’ own routes public', async () => {
    const ok = bare(() => undefined);
    try {
      expect((await ok.inject({ method: 'GET', url: '/docs/json' })).statusCode).toBe(200);
    } finally {
      await ok.close();
    }
    // Under /docs but shown in the document: it must declare its access like any route.
    await expect(bare((app) => app.register(async (sub) => void sub.get('/docs/extra', async () => ({})))).ready()).rejects.toThrow(/GET \/docs\/extra declares no access/);
    // Hidden from the document but outside /docs: still refused.
    await expect(bare((app) => app.register(async (sub) => void sub.get('/api/v1/secret', { schema: { hide: true } }, async () => ({})))).ready()).rejects.toThrow(
      /GET \/api\/v1\/secret declares no access/,
    );
  });
});

describe.skipIf(skipWithoutChromium('Swagger UI in Chromium'))('Swagger UI in headless Chromium', () => {
  const dir = tempDir('gtx-api-docs-ui-');
  let ledger: Ledger;
  let app: FastifyInstance;
  let base: string;

  beforeAll(async () => {
    ledger = await openLedger({ sqlitePath: join(dir.path, 'ledger.sqlite') });
    // Every optional part on (market, governance, certificates, live events), with the write limit.
    ({ app } = await fullApi(ledger, new ApiKeyStore(ledger.db), { writeRateLimitPerMinute: LIMIT }));
    base = await listenApi(app, '127.0.0.1', 0);
  });
  afterAll(async () => {
    await app?.close();
    await ledger?.close();
    dir.remove();
  });

  it('renders every operation under its Content-Security-Policy, loading nothing from elsewhere', async () => {
    const doc = (await (await fetch(`${base}/docs/json`)).json()) as Doc;
    const operations = Object.values(doc.paths).reduce((n, ops) => n + Object.keys(ops).length, 0);
    const { context, close } = await launchBrowser();
    try {
      const page = await context.newPage();
      const problems: string[] = [];
      page.on('console', (m) => void (m.type() === 'error' && problems.push(m.text())));
      page.on('pageerror', (e) => void problems.push(e.message));
      const foreign: string[] = [];
      page.on('request', (req) => void (!req.url().startsWith(base) && !req.url().startsWith('data:') && foreign.push(req.url())));
      await page.goto(`${base}/docs`);
      await page.locator('.opblock').nth(operations - 1).waitFor();
      expect(await page.locator('.opblock').count()).toBe(operations);
      await page.locator('.info .title').filter({ hasText: 'GridTokenX' }).waitFor();
      await page.screenshot({ path: join(ROOT, 'test-results/api-docs.png'), fullPage: false });
      expect(problems).toEqual([]);
      expect(foreign).toEqual([]);
    } finally {
      await close();
    }
  });
});
