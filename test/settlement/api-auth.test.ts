import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import Fastify, { type FastifyInstance } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { generateGatewayKeyPair } from '../../protocol/index.ts';
import { registerAuth } from '../../settlement/api/auth.ts';
import { buildApi } from '../../settlement/api/server.ts';
import { ConfigError } from '../../settlement/config.ts';
import type { Ledger } from '../../settlement/ledger/ledger.ts';
import { openLedger } from '../../settlement/ledger/open.ts';
import { startSettlement } from '../../settlement/main.ts';
import { createMetrics } from '../../settlement/metrics.ts';
import { ApiKeyStore, hashApiKey, type ApiRole } from '../../settlement/registry/api-keys.ts';
import { Enrollment } from '../../settlement/registry/enrollment.ts';
import { TEST_MARKET, enrollTestGateway } from '../support/registry.ts';
import { freshPostgresSchema, postgresUrl, requireOrSkip } from '../support/services.ts';
import { settlementConfig, testLog } from '../support/stack.ts';
import { tempDir } from '../support/tmp.ts';

/**
 * Who may call which REST route, on the real fastify server over a real ledger (both engines):
 * per-meter and per-market data need a utility or admin key, admin routes an admin key, and
 * only enrollment (installer code), /health and /metrics are open.
 */

const GTX = join(import.meta.dirname, '../../bin/gtx.js');
const ADMIN_KEY = 'tests-admin-key-Zm9vYmFyYmF6cXV4cXV1eA=='; // ≥ 32 characters
const RANGE = 'from=2026-11-01T00:00:00Z&to=2026-11-02T00:00:00Z';

interface Call {
  method: 'GET' | 'POST';
  url: string;
  /** The route as registered, to check that this list covers every protected route. */
  route: string;
  payload?: unknown;
}

const READ_CALLS: Call[] = [
  { method: 'GET', url: '/api/v1/meters', route: '/api/v1/meters' },
  { method: 'GET', url: `/api/v1/meters/meter-a/intervals?${RANGE}`, route: '/api/v1/meters/:meter/intervals' },
  { method: 'GET', url: '/api/v1/meters/meter-a/gaps', route: '/api/v1/meters/:meter/gaps' },
  { method: 'GET', url: `/api/v1/markets/${TEST_MARKET}/intervals?${RANGE}`, route: '/api/v1/markets/:market/intervals' },
  { method: 'GET', url: '/api/v1/rewards', route: '/api/v1/rewards' },
];
const ADMIN_CALLS: Call[] = [
  { method: 'POST', url: '/api/v1/admin/enrollment-codes', route: '/api/v1/admin/enrollment-codes', payload: { market: TEST_MARKET, owner: 'alice' } },
  { method: 'POST', url: '/api/v1/admin/gateways/gw-auth/revoke', route: '/api/v1/admin/gateways/:id/revoke', payload: {} },
];

const pgUrl = await postgresUrl();
const skipPostgres = requireOrSkip('API keys on PostgreSQL', !!pgUrl, 'no PostgreSQL at 127.0.0.1:5432');

interface Opened {
  ledger: Ledger;
  /** Everything the engine stored, as text, to look for a plaintext key. */
  storedBytes(): Promise<string>;
  cleanup(): Promise<void>;
}

const engines: Array<{ name: string; skip: boolean; open(): Promise<Opened> }> = [
  {
    name: 'sqlite',
    skip: false,
    async open() {
      const dir = tempDir('gtx-api-auth-');
      const path = join(dir.path, 'ledger.sqlite');
      const ledger = await openLedger({ sqlitePath: path });
      return {
        ledger,
        // The database file and its WAL, byte for byte.
        storedBytes: async () => [path, `${path}-wal`].filter(existsSync).map((f) => readFileSync(f).toString('latin1')).join(''),
        async cleanup() {
          await ledger.close();
          dir.remove();
        },
      };
    },
  },
  {
    name: 'postgres',
    skip: skipPostgres,
    async open() {
      const schema = await freshPostgresSchema(pgUrl!);
      const ledger = await openLedger({ sqlitePath: '/nonexistent/unused.sqlite', databaseUrl: schema.url });
      return {
        ledger,
        storedBytes: async () => JSON.stringify(await ledger.db.selectFrom('api_keys').selectAll().execute()),
        async cleanup() {
          await ledger.close();
          await schema.drop();
        },
      };
    },
  },
];

function api(ledger: Ledger, adminKey: string | null = ADMIN_KEY): FastifyInstance {
  return buildApi({
    ledger,
    metrics: createMetrics(),
    log: testLog('api'),
    enrollment: new Enrollment(ledger, { now: Date.now, mqttUrl: () => 'mqtt://unused' }),
    apiKeys: new ApiKeyStore(ledger.db),
    adminKey,
    codeTtlMs: 3600_000,
    onRevoke: () => undefined,
  });
}

describe.each(engines)('REST API keys on $name', ({ skip, open }) => {
  let opened: Opened;
  let app: FastifyInstance;
  let store: ApiKeyStore;
  const keys = {} as Record<'utility' | 'admin' | 'revoked', string>;
  /** Routes that declared roles, as registered (method + url). */
  const protectedRoutes: string[] = [];

  const call = (c: Call, headers: Record<string, string> = {}) =>
    app.inject({ method: c.method, url: c.url, headers, ...(c.payload === undefined ? {} : { payload: c.payload as object }) });
  const bearer = (key: string) => ({ authorization: `Bearer ${key}` });

  beforeAll(async () => {
    if (skip) return;
    opened = await open();
    const { ledger } = opened;
    await enrollTestGateway(ledger, 'gw-auth', generateGatewayKeyPair().publicKeyPem, ['meter-a']);
    store = new ApiKeyStore(ledger.db);
    keys.utility = (await store.create('utility', 'grid operator')).key;
    keys.admin = (await store.create('admin')).key;
    const revoked = await store.create('utility', 'left the company');
    keys.revoked = revoked.key;
    expect(await store.revoke(revoked.record.id)).toBe('revoked');
    app = api(ledger);
    app.addHook('onRoute', (r) => {
      const methods = [r.method].flat();
      if (r.config?.roles && !methods.includes('HEAD')) protectedRoutes.push(`${methods.join(',')} ${r.url}`);
    });
    await app.ready();
  });
  afterAll(async () => {
    await app?.close();
    await opened?.cleanup();
  });

  // Every route's 401 and 403 answers are checked by api-roles.test.ts, which enumerates the routes; these are real ones.
  it.skipIf(skip)('the calls below are routes that need a key', () => {
    const covered = [...READ_CALLS, ...ADMIN_CALLS].map((c) => `${c.method} ${c.route}`);
    expect(protectedRoutes).toEqual(expect.arrayContaining(covered));
  });

  it.skipIf(skip)('refuses every protected route without a key, with an unknown key and with a revoked key (401)', async () => {
    for (const c of [...READ_CALLS, ...ADMIN_CALLS]) {
      for (const headers of [{}, bearer('gtx_not-a-key-at-all'), bearer(keys.revoked), { authorization: `Basic ${keys.utility}` }]) {
        const res = await call(c, headers);
        expect([c.url, res.statusCode], JSON.stringify(headers)).toEqual([c.url, 401]);
        expect(res.json()).toMatchObject({ code: 'unauthorized', message: expect.any(String) });
        expect(res.headers['www-authenticate']).toBe('Bearer');
      }
    }
  });

  it.skipIf(skip)('lets utility and admin keys read meters and markets (2xx)', async () => {
    for (const c of READ_CALLS) {
      for (const key of [keys.utility, keys.admin, ADMIN_KEY]) {
        const res = await call(c, bearer(key));
        expect([c.url, res.statusCode]).toEqual([c.url, 200]);
      }
    }
  });

  it.skipIf(skip)('refuses a utility key on admin routes (403) and takes admin keys there (2xx)', async () => {
    for (const c of ADMIN_CALLS) {
      const res = await call(c, bearer(keys.utility));
      expect([c.url, res.statusCode]).toEqual([c.url, 403]);
      expect(res.json()).toMatchObject({ code: 'forbidden', message: expect.stringContaining('admin') });
    }
    const [codes, revoke] = ADMIN_CALLS as [Call, Call];
    // A stored admin key, the configured one as a bearer token, and the older header.
    for (const headers of [bearer(keys.admin), bearer(ADMIN_KEY), { 'x-admin-key': ADMIN_KEY }]) {
      expect((await call(codes, headers)).statusCode).toBe(201);
    }
    expect((await call(revoke, bearer(keys.admin))).statusCode).toBe(200);
    expect((await call(revoke, { 'x-admin-key': ADMIN_KEY })).statusCode).toBe(200);
  });

  it.skipIf(skip)('takes x-admin-key on admin routes only, and compares it whole', async () => {
    expect((await call(READ_CALLS[0]!, { 'x-admin-key': ADMIN_KEY })).statusCode).toBe(401);
    expect((await call(ADMIN_CALLS[0]!, { 'x-admin-key': ADMIN_KEY.slice(0, -1) })).statusCode).toBe(401);
    expect((await call(ADMIN_CALLS[0]!, { 'x-admin-key': keys.utility })).statusCode).toBe(403);
  });

  it.skipIf(skip)('keeps /health, /health/ready, /metrics and enrollment (installer code) open', async () => {
    expect((await app.inject({ method: 'GET', url: '/health' })).statusCode).toBe(200);
    // Not ready here (no broker or writer in this API-only build), but answered without a key.
    expect([200, 503]).toContain((await app.inject({ method: 'GET', url: '/health/ready' })).statusCode);
    expect((await app.inject({ method: 'GET', url: '/metrics' })).statusCode).toBe(200);
    const code = (await call(ADMIN_CALLS[0]!, bearer(keys.admin))).json<{ code: string }>().code;
    const res = await app.inject({
      method: 'POST',
      url: '/api/v1/enrollments',
      payload: {
        code,
        gateway: 'gw-open',
        publicKeyPem: generateGatewayKeyPair().publicKeyPem,
        meters: [{ id: 'meter-open', model: 'eastron-sdm120', role: 'consumption', ratedPowerW: 9000 }],
      },
    });
    expect(res.statusCode, res.body).toBe(201);
  });

  it.skipIf(skip)('refuses a key at once when it is revoked, and a key of a role this release does not know', async () => {
    const { key, record } = await store.create('utility');
    expect((await call(READ_CALLS[0]!, bearer(key))).statusCode).toBe(200);
    await store.revoke(record.id);
    expect((await call(READ_CALLS[0]!, bearer(key))).statusCode).toBe(401);
    expect(await store.revoke(record.id)).toBe('already_revoked');
    expect(await store.revoke('nosuchkey1')).toBe('unknown');

    // As a newer release might write it.
    const future = 'gtx_from-a-newer-release-0123456789abcdefghijklmno';
    await opened.ledger.db
      .insertInto('api_keys')
      .values({ id: 'future0001', key_hash: hashApiKey(future), role: 'auditor', label: '', created_at_ms: Date.now(), revoked_at_ms: null })
      .execute();
    expect((await call(READ_CALLS[0]!, bearer(future))).statusCode).toBe(401);
  });

  it.skipIf(skip)('stores only the SHA-256 of a key, never the key', async () => {
    const { key, record } = await store.create('admin', 'hash check');
    expect(key).toMatch(/^gtx_[A-Za-z0-9_-]{43}$/);
    expect(record.id).toMatch(/^[a-z2-9]{10}$/);
    const row = await opened.ledger.db.selectFrom('api_keys').selectAll().where('id', '=', record.id).executeTakeFirstOrThrow();
    expect(row.key_hash).toBe(hashApiKey(key));
    expect(row).toMatchObject({ role: 'admin', label: 'hash check', revoked_at_ms: null });
    const stored = await opened.storedBytes();
    expect(stored).toContain(hashApiKey(key));
    for (const k of [key, keys.utility, keys.admin, keys.revoked]) {
      expect(stored).not.toContain(k);
      expect(stored).not.toContain(k.slice(4)); // nor its random part
    }
    const listed = await store.list();
    expect(listed.find((k) => k.id === record.id)).toEqual({ id: record.id, role: 'admin', label: 'hash check', createdAtMs: record.createdAtMs, revokedAtMs: null, account: null });
    expect(JSON.stringify(listed)).not.toContain(key);
  });
});

describe('routes must say who may call them', () => {
  it('refuses to start with a route that declares neither roles nor public', async () => {
    const dir = tempDir('gtx-api-undeclared-');
    const ledger = await openLedger({ sqlitePath: join(dir.path, 'l.sqlite') });
    try {
      const app = Fastify();
      registerAuth(app, { apiKeys: new ApiKeyStore(ledger.db), adminKey: null, log: testLog('api') });
      app.register(async (sub) => {
        sub.get('/forgotten', async () => ({ personal: 'data' }));
      }, { prefix: '/api/v1' });
      await expect(app.ready()).rejects.toThrow(/GET \/api\/v1\/forgotten declares no access/);
    } finally {
      await ledger.close();
      dir.remove();
    }
  });

  it('checks roles against the list of the route', async () => {
    const dir = tempDir('gtx-api-roles-');
    const ledger = await openLedger({ sqlitePath: join(dir.path, 'l.sqlite') });
    const app = Fastify();
    try {
      const store = new ApiKeyStore(ledger.db);
      registerAuth(app, { apiKeys: store, adminKey: null, log: testLog('api') });
      const only: ApiRole[] = ['utility'];
      app.get('/utility-only', { config: { roles: only } }, async (req) => ({ key: req.principal?.keyId }));
      const utility = await store.create('utility');
      const admin = await store.create('admin');
      const get = (key: string) => app.inject({ method: 'GET', url: '/utility-only', headers: { authorization: `Bearer ${key}` } });
      expect((await get(utility.key)).json()).toEqual({ key: utility.record.id });
      expect((await get(admin.key)).statusCode).toBe(403);
      // No configured admin key: a bearer token is only ever looked up.
      expect((await app.inject({ method: 'GET', url: '/utility-only', headers: { 'x-admin-key': admin.key } })).statusCode).toBe(401);
    } finally {
      await app.close();
      await ledger.close();
      dir.remove();
    }
  });
});

describe('the admin key must be at least 32 characters', () => {
  const dir = tempDir('gtx-admin-key-');
  afterAll(() => dir.remove());

  it('refuses to build the API or start the settlement with a short one, before opening anything', async () => {
    const cfg = settlementConfig(join(dir.path, 'short'));
    cfg.adminKey = 'change-me';
    await expect(startSettlement(cfg, { log: testLog('settlement') })).rejects.toThrow(ConfigError);
    await expect(startSettlement(cfg, { log: testLog('settlement') })).rejects.toThrow(/at least 32.*openssl rand -base64 32.*gtx settlement api-key create --role admin/);
    expect(existsSync(cfg.dataDir)).toBe(false);

    cfg.adminKey = 'x'.repeat(31);
    await expect(startSettlement(cfg, { log: testLog('settlement') })).rejects.toThrow(/has 31 characters/);

    const ledger = await openLedger({ sqlitePath: join(dir.path, 'api.sqlite') });
    try {
      expect(() => api(ledger, 'short')).toThrow(ConfigError);
      await api(ledger, 'x'.repeat(32)).close();
      await api(ledger, null).close();
    } finally {
      await ledger.close();
    }
  });

  it('`gtx settlement run` with GTX_ADMIN_KEY=short exits 2 with one line', () => {
    const env: NodeJS.ProcessEnv = { ...process.env, GTX_ADMIN_KEY: 'short' };
    delete env.DATABASE_URL;
    // cwd without config/settlement.toml: the built-in defaults, ledger under ./data.
    const r = spawnSync(process.execPath, [GTX, 'settlement', 'run'], { cwd: dir.path, env, encoding: 'utf8', timeout: 30_000 });
    expect(r.status, r.stderr).toBe(2);
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
    expect(r.stderr).toMatch(/^gtx: the admin key \(GTX_ADMIN_KEY or \[enrollment\] admin_key\) has 5 characters.*openssl rand -base64 32/);
    expect(r.stdout).toBe('');
    expect(existsSync(join(dir.path, 'data'))).toBe(false);
  });
});
