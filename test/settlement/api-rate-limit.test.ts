import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { FastifyInstance } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { generateGatewayKeyPair } from '../../protocol/index.ts';
import { addressKey } from '../../settlement/api/rate-limit.ts';
import { listenApi } from '../../settlement/api/server.ts';
import { ConfigError, defaultSettlementConfig, loadSettlementConfig } from '../../settlement/config.ts';
import type { Ledger } from '../../settlement/ledger/ledger.ts';
import { openLedger } from '../../settlement/ledger/open.ts';
import { startSettlement } from '../../settlement/main.ts';
import { ApiKeyStore } from '../../settlement/registry/api-keys.ts';
import { testApi } from '../support/api.ts';
import { TEST_MARKET, enrollTestGateway } from '../support/registry.ts';
import { settlementConfig, testLog } from '../support/stack.ts';
import { tempDir } from '../support/tmp.ts';

/**
 * The write rate limit on the real fastify server over a real SQLite ledger: N writes a minute
 * per API key (per address without one), the N+1st answered 429 in the one error shape with
 * Retry-After; other keys, other addresses and reads untouched; 0 turns it off; and the
 * settlement takes the limit from [http] write_rate_limit_per_minute.
 */

const LIMIT = 5;
const ROOT = join(import.meta.dirname, '../..');
const CODE = { market: TEST_MARKET, owner: 'alice' };

interface Answer {
  status: number;
  headers: Headers;
  body: Record<string, unknown>;
}

/** Exactly `{"code":"too_many_requests","message"}` with a Retry-After of at most the window. */
function expectTooMany(res: Answer): void {
  expect(res.status).toBe(429);
  expect(res.headers.get('content-type')).toMatch(/^application\/json/);
  expect(Object.keys(res.body).sort()).toEqual(['code', 'message']);
  expect(res.body.code).toBe('too_many_requests');
  expect(res.body.message).toMatch(new RegExp(`at most ${LIMIT} a minute per API key.*try again in`));
  const retry = Number(res.headers.get('retry-after'));
  expect(Number.isInteger(retry) && retry >= 1 && retry <= 60, `Retry-After ${res.headers.get('retry-after')}`).toBe(true);
}

describe('write rate limit', () => {
  const dir = tempDir('gtx-api-rate-limit-');
  let ledger: Ledger;
  let store: ApiKeyStore;
  let app: FastifyInstance;
  let base: string;

  const call = async (method: string, path: string, key?: string, body?: unknown): Promise<Answer> => {
    const res = await fetch(`${base}${path}`, {
      method,
      headers: { ...(key ? { authorization: `Bearer ${key}` } : {}), ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
    });
    const text = await res.text();
    return { status: res.status, headers: res.headers, body: text === '' ? {} : (JSON.parse(text) as Record<string, unknown>) };
  };
  const newKey = async (role: 'admin' | 'utility' = 'admin') => (await store.create(role, 'rate limit test')).key;

  beforeAll(async () => {
    ledger = await openLedger({ sqlitePath: join(dir.path, 'ledger.sqlite') });
    await enrollTestGateway(ledger, 'gw-rl', generateGatewayKeyPair().publicKeyPem, ['meter-rl']);
    store = new ApiKeyStore(ledger.db);
    app = testApi(ledger, store, { writeRateLimitPerMinute: LIMIT });
    base = await listenApi(app, '127.0.0.1', 0);
  });
  afterAll(async () => {
    await app?.close();
    await ledger?.close();
    dir.remove();
  });

  it('answers the write after the limit 429 with Retry-After, and leaves another key alone', async () => {
    const key = await newKey();
    for (let i = 0; i < LIMIT; i++) {
      const res = await call('POST', '/api/v1/admin/enrollment-codes', key, CODE);
      expect(res.status, JSON.stringify(res.body)).toBe(201);
      expect(res.headers.get('x-ratelimit-remaining')).toBe(String(LIMIT - 1 - i));
    }
    expectTooMany(await call('POST', '/api/v1/admin/enrollment-codes', key, CODE));
    // Still refused: the budget fills again only when the window ends.
    expectTooMany(await call('POST', '/api/v1/admin/enrollment-codes', key, CODE));

    const other = await newKey();
    expect((await call('POST', '/api/v1/admin/enrollment-codes', other, CODE)).status).toBe(201);
  });

  it('counts every write route of a key against one budget, refused input included', async () => {
    const key = await newKey();
    // Valid and invalid writes, on two routes: flooding with junk spends the budget too.
    expect((await call('POST', '/api/v1/admin/enrollment-codes', key, CODE)).status).toBe(201);
    expect((await call('POST', '/api/v1/admin/enrollment-codes', key, { market: TEST_MARKET })).status).toBe(400);
    expect((await call('POST', '/api/v1/admin/gateways/gw-nosuch/revoke', key, {})).status).toBe(404);
    expect((await call('POST', '/api/v1/admin/gateways/gw-nosuch/revoke', key, {})).status).toBe(404);
    expect((await call('POST', '/api/v1/admin/enrollment-codes', key, CODE)).status).toBe(201);
    expectTooMany(await call('POST', '/api/v1/admin/gateways/gw-rl/revoke', key, {}));
    // The refused revocation did nothing.
    expect((await ledger.getGateway('gw-rl'))?.status).not.toBe('revoked');
  });

  it('never limits reads, of a key over its write budget or any other', async () => {
    const key = await newKey();
    for (let i = 0; i <= LIMIT; i++) await call('POST', '/api/v1/admin/enrollment-codes', key, CODE);
    expectTooMany(await call('POST', '/api/v1/admin/enrollment-codes', key, CODE));
    const utility = await newKey('utility');
    for (let i = 0; i < 4 * LIMIT; i++) {
      for (const k of [key, utility]) {
        const res = await call('GET', '/api/v1/meters', k);
        expect(res.status).toBe(200);
        expect(res.headers.get('x-ratelimit-limit')).toBeNull();
      }
    }
    for (let i = 0; i < 2 * LIMIT; i++) expect((await call('GET', '/health')).status).toBe(200);
  });

  it('limits gateway enrollment (no key: the installer code is the credential) per address', async () => {
    const guess = (code: string, ip: string) =>
      app.inject({
        method: 'POST',
        url: '/api/v1/enrollments',
        remoteAddress: ip,
        payload: { code, gateway: 'gw-guess', publicKeyPem: generateGatewayKeyPair().publicKeyPem, meters: [{ id: 'm-guess', model: 'eastron-sdm120', role: 'consumption', ratedPowerW: 9000 }] },
      });
    for (let i = 0; i < LIMIT; i++) {
      const res = await guess(`WRONG-${i}`, '198.51.100.7');
      expect(res.statusCode, res.body).not.toBe(429);
      expect(res.statusCode).toBeGreaterThanOrEqual(400);
    }
    const refused = await guess('WRONG-X', '198.51.100.7');
    expectTooMany({ status: refused.statusCode, headers: new Headers(refused.headers as Record<string, string>), body: refused.json() });
    // Another address has its own budget: a real code still enrolls from there.
    const admin = await newKey();
    const { code } = (await call('POST', '/api/v1/admin/enrollment-codes', admin, CODE)).body as { code: string };
    expect((await guess(code, '203.0.113.9')).statusCode).toBe(201);
  });

  it('counts an IPv6 /64 as one address, and an IPv4-mapped address as its IPv4 one', async () => {
    const post = (ip: string) => app.inject({ method: 'POST', url: '/api/v1/enrollments', remoteAddress: ip, payload: {} });
    for (let i = 0; i < LIMIT; i++) expect((await post(`2001:db8:aa:bb::${i + 1}`)).statusCode).toBe(400);
    expect((await post('2001:db8:aa:bb:ffff:1:2:3')).statusCode).toBe(429);
    expect((await post('2001:db8:aa:bc::1')).statusCode).toBe(400);

    expect(addressKey('2001:db8:aa:bb::1')).toBe('2001:db8:aa:bb::/64');
    expect(addressKey('2001:0db8:00aa:00bb:1:2:3:4')).toBe('2001:db8:aa:bb::/64');
    expect(addressKey('::1')).toBe('0:0:0:0::/64');
    expect(addressKey('fe80::')).toBe('fe80:0:0:0::/64');
    expect(addressKey('::ffff:192.0.2.1')).toBe('192.0.2.1');
    expect(addressKey('1::3:4:5:6:192.0.2.1')).toBe('1:0:3:4::/64');
    expect(addressKey('1:2:3:4:5:6:192.0.2.1')).toBe('1:2:3:4::/64');
    expect(addressKey('192.0.2.1')).toBe('192.0.2.1');
  });

  it('documents the 429 on the limited routes', async () => {
    const doc = (await (await fetch(`${base}/docs/json`)).json()) as { paths: Record<string, Record<string, { responses: Record<string, { headers?: object }> }>> };
    expect(doc.paths['/api/v1/admin/enrollment-codes']?.post?.responses['429']?.headers).toHaveProperty('retry-after');
    expect(doc.paths['/api/v1/enrollments']?.post?.responses['429']).toBeDefined();
    expect(doc.paths['/api/v1/meters']?.get?.responses['429']).toBeUndefined();
  });
});

describe('write rate limit off', () => {
  const dir = tempDir('gtx-api-rate-limit-off-');
  let ledger: Ledger;
  beforeAll(async () => {
    ledger = await openLedger({ sqlitePath: join(dir.path, 'ledger.sqlite') });
    await enrollTestGateway(ledger, 'gw-off', generateGatewayKeyPair().publicKeyPem, ['meter-off']);
  });
  afterAll(async () => {
    await ledger?.close();
    dir.remove();
  });

  it.each([['0', 0], ['absent', undefined]])('takes any number of writes when the limit is %s', async (_what, limit) => {
    const store = new ApiKeyStore(ledger.db);
    const key = (await store.create('admin')).key;
    const app = testApi(ledger, store, limit === undefined ? {} : { writeRateLimitPerMinute: limit });
    try {
      for (let i = 0; i < 3 * LIMIT; i++) {
        const res = await app.inject({ method: 'POST', url: '/api/v1/admin/enrollment-codes', headers: { authorization: `Bearer ${key}` }, payload: CODE });
        expect(res.statusCode).toBe(201);
        expect(res.headers['x-ratelimit-limit']).toBeUndefined();
      }
      const doc = (await app.inject({ method: 'GET', url: '/docs/json' })).json<{ paths: Record<string, Record<string, { responses: object }>> }>();
      expect(doc.paths['/api/v1/admin/enrollment-codes']?.post?.responses).not.toHaveProperty('429');
    } finally {
      await app.close();
    }
  });
});

describe('[http] write_rate_limit_per_minute', () => {
  const dir = tempDir('gtx-rate-limit-config-');
  afterAll(() => dir.remove());
  const load = (text: string) => {
    const path = join(dir.path, `settlement-${Math.random().toString(36).slice(2)}.toml`);
    writeFileSync(path, text);
    return loadSettlementConfig(path);
  };

  it('defaults to 120, takes 0 (off) and whole numbers, and refuses anything else', () => {
    expect(defaultSettlementConfig().writeRateLimitPerMinute).toBe(120);
    expect(load('').writeRateLimitPerMinute).toBe(120);
    expect(load('[http]\nwrite_rate_limit_per_minute = 30\n').writeRateLimitPerMinute).toBe(30);
    expect(load('[http]\nwrite_rate_limit_per_minute = 0\n').writeRateLimitPerMinute).toBe(0);
    for (const bad of ['-1', '2.5', '"120"']) {
      expect(() => load(`[http]\nwrite_rate_limit_per_minute = ${bad}\n`)).toThrow(ConfigError);
      expect(() => load(`[http]\nwrite_rate_limit_per_minute = ${bad}\n`)).toThrow(/\[http\]: write_rate_limit_per_minute must be an integer ≥ 0/);
    }
    // The example file documents the default.
    expect(loadSettlementConfig(join(ROOT, 'config/settlement.toml')).writeRateLimitPerMinute).toBe(120);
  });

  it('is what the running settlement limits writes to', async () => {
    const cfg = settlementConfig(join(dir.path, 'run'));
    cfg.writeRateLimitPerMinute = 2;
    cfg.adminKey = 'rate-limit-test-admin-key-0123456789abcdef';
    const settlement = await startSettlement(cfg, { log: testLog('settlement') });
    try {
      const post = () =>
        fetch(`${settlement.httpUrl}/api/v1/admin/enrollment-codes`, {
          method: 'POST',
          headers: { authorization: `Bearer ${cfg.adminKey}`, 'content-type': 'application/json' },
          body: JSON.stringify({ market: 'thailand_central', owner: 'alice' }),
        });
      expect((await post()).status).toBe(201);
      expect((await post()).status).toBe(201);
      const refused = await post();
      expect(refused.status).toBe(429);
      expect(await refused.json()).toMatchObject({ code: 'too_many_requests' });
    } finally {
      await settlement.stop();
    }
  });
});
