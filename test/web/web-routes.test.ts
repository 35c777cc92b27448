import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { FastifyInstance } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CONTENT_SECURITY_POLICY, WEB_ROOT } from '../../settlement/api/routes/web.ts';
import { ApiKeyStore } from '../../settlement/registry/api-keys.ts';
import { testApi } from '../support/api.ts';
import { engines, type OpenedLedger } from '../support/ledgers.ts';
import { TEST_MARKET, enrollTestGateway } from '../support/registry.ts';
import { generateGatewayKeyPair } from '../../protocol/index.ts';

/**
 * The web pages' routes on the real API over a real ledger: what is served and with which
 * headers, that nothing outside the known files is, and GET /api/v1/me (what the pages ask first).
 * The pages in a browser: pages.test.ts.
 */
const sqlite = engines.find((e) => e.name === 'sqlite')!;

describe('web page routes and GET /api/v1/me', () => {
  let opened: OpenedLedger;
  let app: FastifyInstance;
  const keys = {} as Record<'admin' | 'utility' | 'installer' | 'prosumer', string>;

  beforeAll(async () => {
    opened = await sqlite.open();
    await enrollTestGateway(opened.ledger, 'gw-web-1', generateGatewayKeyPair().publicKeyPem, ['web-m-1']);
    const store = new ApiKeyStore(opened.ledger.db);
    keys.admin = (await store.create('admin')).key;
    keys.utility = (await store.create('utility')).key;
    keys.installer = (await store.create('installer', 'Acme', null, ['owner-gw-web-1', 'someone-else'])).key;
    keys.prosumer = (await store.create('prosumer', '', 'owner-gw-web-1')).key;
    app = testApi(opened.ledger, store);
    await app.ready();
  });
  afterAll(async () => {
    await app?.close();
    await opened?.cleanup();
  });

  it('serves the sign-in page and its assets without a key, with their content types and a strict CSP', async () => {
    const index = await app.inject({ method: 'GET', url: '/' });
    expect(index.statusCode).toBe(200);
    expect(index.headers['content-type']).toBe('text/html; charset=utf-8');
    expect(index.headers['content-security-policy']).toBe(CONTENT_SECURITY_POLICY);
    expect(CONTENT_SECURITY_POLICY).toContain("script-src 'self'");
    expect(CONTENT_SECURITY_POLICY).not.toMatch(/unsafe-inline|unsafe-eval/);
    expect(index.headers['x-content-type-options']).toBe('nosniff');
    expect(index.headers['x-frame-options']).toBe('DENY');
    expect(index.headers['referrer-policy']).toBe('no-referrer');
    expect(index.body).toContain('id="sign-in-form"');
    for (const [url, type] of [
      ['/assets/app.js', 'text/javascript; charset=utf-8'],
      ['/assets/views/prosumer.js', 'text/javascript; charset=utf-8'],
      ['/assets/app.css', 'text/css; charset=utf-8'],
      ['/assets/icon.svg', 'image/svg+xml'],
      ['/assets/vendor/uPlot.iife.min.js', 'text/javascript; charset=utf-8'],
      ['/assets/vendor/uPlot.min.css', 'text/css; charset=utf-8'],
    ] as const) {
      const res = await app.inject({ method: 'GET', url });
      expect([url, res.statusCode, res.headers['content-type']]).toEqual([url, 200, type]);
      expect(res.headers['content-security-policy']).toBe(CONTENT_SECURITY_POLICY);
    }
    expect((await app.inject({ method: 'GET', url: '/assets/vendor/uPlot.iife.min.js' })).body).toContain('uPlot');
  });

  it('has no inline script or style, and never writes markup from data (no innerHTML) — what the CSP relies on', () => {
    const html = readFileSync(join(WEB_ROOT, 'index.html'), 'utf8');
    const scripts = [...html.matchAll(/<script\b([^>]*)>([\s\S]*?)<\/script>/g)];
    expect(scripts.length).toBeGreaterThan(0);
    for (const [, attrs, body] of scripts) {
      expect(attrs).toMatch(/\bsrc="\/assets\//);
      expect(body!.trim()).toBe('');
    }
    expect(html).not.toMatch(/<style\b|\sstyle=|\son[a-z]+=/i);
    const sources = (dir: string): string[] =>
      readdirSync(dir, { withFileTypes: true }).flatMap((e) => (e.isDirectory() ? sources(join(dir, e.name)) : e.name.endsWith('.js') ? [join(dir, e.name)] : []));
    for (const file of sources(WEB_ROOT)) {
      const text = readFileSync(file, 'utf8').replace(/\/\/.*$/gm, '');
      expect([file, /\.innerHTML|outerHTML|insertAdjacentHTML|document\.write|\beval\(|new Function/.test(text)]).toEqual([file, false]);
    }
  });

  it('answers 304 to a revalidation with the same ETag', async () => {
    const first = await app.inject({ method: 'GET', url: '/assets/app.js' });
    const etag = first.headers.etag as string;
    expect(etag).toMatch(/^"[\w-]+"$/);
    const again = await app.inject({ method: 'GET', url: '/assets/app.js', headers: { 'if-none-match': etag } });
    expect(again.statusCode).toBe(304);
    expect(again.body).toBe('');
  });

  it('serves only the files it knows: no path traversal, no dotfiles, no sources', async () => {
    for (const url of [
      '/assets/../package.json',
      '/assets/%2e%2e/package.json',
      '/assets/..%2fpackage.json',
      '/assets/%2e%2e%2f%2e%2e%2fpackage.json',
      '/assets/views/../../api/server.ts',
      '/assets/index.html',
      '/assets/.hidden',
      '/assets/',
      '/assets/vendor/uPlot.cjs.js',
      '/assets/app.js%00.png',
      '/index.html',
    ]) {
      const res = await app.inject({ method: 'GET', url });
      expect([url, res.statusCode]).toEqual([url, 404]);
      expect(Object.keys(res.json()).sort()).toEqual(['code', 'message']);
      expect(res.body).not.toContain('"name": "gridtokenx"');
    }
  });

  it('GET /api/v1/me tells each key its role and what it is bound to, never the key', async () => {
    expect((await app.inject({ method: 'GET', url: '/api/v1/me' })).statusCode).toBe(401);
    expect((await app.inject({ method: 'GET', url: '/api/v1/me', headers: { authorization: 'Bearer gtx_nope' } })).statusCode).toBe(401);
    const me = async (key: string) => {
      const res = await app.inject({ method: 'GET', url: '/api/v1/me', headers: { authorization: `Bearer ${key}` } });
      expect(res.statusCode, res.body).toBe(200);
      expect(res.body).not.toContain(key);
      return res.json();
    };
    const market = { id: TEST_MARKET, name: TEST_MARKET, timeZone: 'Asia/Bangkok', intervalMinutes: 15 };
    expect(await me(keys.prosumer)).toEqual({ keyId: expect.any(String), role: 'prosumer', account: 'owner-gw-web-1', markets: [market] });
    expect(await me(keys.installer)).toEqual({ keyId: expect.any(String), role: 'installer', customers: ['owner-gw-web-1', 'someone-else'], markets: [market] });
    expect(await me(keys.utility)).toEqual({ keyId: expect.any(String), role: 'utility', markets: [market] });
    expect(await me(keys.admin)).toMatchObject({ role: 'admin' });
    // Nothing to choose: a query never makes it answer about another account.
    const probe = await app.inject({ method: 'GET', url: '/api/v1/me?account=someone-else', headers: { authorization: `Bearer ${keys.prosumer}` } });
    expect(probe.body).not.toContain('someone-else');
  });
});
