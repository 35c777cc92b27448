import type { FastifyInstance } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { listenApi } from '../../settlement/api/server.ts';
import { API_ROLES, ApiKeyStore, type ApiRole } from '../../settlement/registry/api-keys.ts';
import { EnvelopeFactory, verifiedEnvelope } from '../support/envelopes.ts';
import { fullApi } from '../support/full-api.ts';
import { engines, type OpenedLedger } from '../support/ledgers.ts';
import { TEST_MARKET, enrollTestGateway } from '../support/registry.ts';

/**
 * The role matrix, on the real fastify server with every optional part on, over each engine.
 * Every route the app registers is found as it is registered (an onRoute hook: routes other
 * parts add are covered without a list here): without a key each route with roles answers 401
 * `unauthorized`, with a key of each role not in its list 403 `forbidden`, and a role in its list
 * gets past the check. Then what each key may see: a prosumer only its own account's data, an
 * installer only its customers', whatever the request names.
 */

const HOME = 'owner-gw-roles-home';
const OTHER = 'owner-gw-roles-other';
const HOME_METER = 'roles-home-1';
const OTHER_METER = 'roles-other-1';
const CONTEXT = { ratedPowerW: 100_000, market: TEST_MARKET, timeZone: 'Asia/Bangkok', intervalMs: 900_000 };

interface RouteSeen {
  method: string;
  url: string;
  roles: readonly ApiRole[] | undefined;
  open: string | undefined;
}

/** A URL for a route pattern: each parameter and wildcard filled with an id nothing has. */
const urlOf = (pattern: string) => pattern.replace(/:[A-Za-z0-9_]+/g, 'x-nosuch').replace(/\*$/, 'x-nosuch');

for (const engine of engines) {
  describe.skipIf(engine.skip)(`API roles on ${engine.name}`, () => {
    let opened: OpenedLedger;
    let app: FastifyInstance;
    let baseUrl: string;
    const routes: RouteSeen[] = [];
    const keys = {} as Record<ApiRole | 'otherProsumer', string>;
    let installerId: string;

    const inject = (method: string, url: string, key?: string, payload?: object) =>
      app.inject({
        method: method as 'GET',
        url,
        headers: key ? { authorization: `Bearer ${key}` } : {},
        ...(payload === undefined ? {} : { payload }),
      });

    beforeAll(async () => {
      opened = await engine.open();
      const { ledger } = opened;
      for (const [gateway, meter] of [
        ['gw-roles-home', HOME_METER],
        ['gw-roles-other', OTHER_METER],
      ] as const) {
        const f = new EnvelopeFactory(gateway);
        await enrollTestGateway(ledger, gateway, f.publicKeyPem, [meter]);
        const outcomes = await ledger.commitEnvelopes([verifiedEnvelope(f.next(meter, 3), CONTEXT)]);
        expect(outcomes.map((o) => o.status)).toEqual(['accepted']);
      }
      const store = new ApiKeyStore(ledger.db);
      keys.admin = (await store.create('admin')).key;
      keys.utility = (await store.create('utility')).key;
      const installer = await store.create('installer', 'Acme Solar', null, [HOME, 'not-enrolled-yet']);
      keys.installer = installer.key;
      installerId = installer.record.id;
      keys.prosumer = (await store.create('prosumer', 'home', HOME)).key;
      keys.otherProsumer = (await store.create('prosumer', 'neighbour', OTHER)).key;
      ({ app } = await fullApi(ledger, store));
      app.addHook('onRoute', (r) => {
        for (const method of [r.method].flat()) routes.push({ method, url: r.url, roles: r.config?.roles, open: r.config?.public });
      });
      baseUrl = await listenApi(app, '127.0.0.1', 0);
    });
    afterAll(async () => {
      await app?.close();
      await opened?.cleanup();
    });

    /** Routes with roles, as registered; HEAD mirrors its GET. */
    const guarded = () => routes.filter((r) => r.roles !== undefined && r.method !== 'HEAD');

    it('every route declares roles or why it is open, and the routes of every part are there', () => {
      expect(routes.length).toBeGreaterThan(0);
      for (const r of routes) expect([r.method, r.url, r.roles !== undefined || r.open !== undefined]).toEqual([r.method, r.url, true]);
      for (const r of guarded()) for (const role of r.roles!) expect(API_ROLES).toContain(role);
      const seen = new Set(guarded().map((r) => `${r.method} ${r.url}`));
      for (const expected of [
        'GET /api/v1/accounts',
        'GET /api/v1/meters',
        'GET /api/v1/meters/:meter/readings',
        'GET /api/v1/meters/:meter/rejections',
        'POST /api/v1/meters/:meter/verify',
        'GET /api/v1/meters/:meter/intervals',
        'GET /api/v1/gateways',
        'GET /api/v1/enrollment-codes',
        'POST /api/v1/enrollment-codes',
        'POST /api/v1/admin/enrollment-codes',
        'GET /api/v1/api-keys',
        'POST /api/v1/api-keys',
        'DELETE /api/v1/api-keys/:id',
        'POST /api/v1/orders',
        'GET /api/v1/markets/:market/price',
        'GET /api/v1/governance/proposals',
        'POST /api/v1/recs/:id/retire',
      ]) {
        expect(seen, expected).toContain(expected);
      }
    });

    it('no key: 401 unauthorized on every route with roles', async () => {
      for (const r of guarded()) {
        const res = await inject(r.method, urlOf(r.url));
        expect([r.method, r.url, res.statusCode]).toEqual([r.method, r.url, 401]);
        expect(res.json()).toMatchObject({ code: 'unauthorized', message: expect.any(String) });
      }
    });

    it('a key of each role a route does not list: 403 forbidden, naming the roles it needs', async () => {
      let refusals = 0;
      for (const r of guarded()) {
        for (const role of API_ROLES.filter((x) => !r.roles!.includes(x))) {
          const res = await inject(r.method, urlOf(r.url), keys[role], r.method === 'GET' ? undefined : {});
          expect([r.method, r.url, role, res.statusCode]).toEqual([r.method, r.url, role, 403]);
          expect(res.json()).toEqual({ code: 'forbidden', message: `a ${role} key may not use this route; it needs ${r.roles!.join(' or ')}` });
          refusals++;
        }
      }
      // Admin-only routes alone refuse three roles each: the matrix is not empty.
      expect(refusals).toBeGreaterThan(30);
    });

    it('a key of each role a route lists gets past the check (no 401, no role refusal)', async () => {
      for (const r of guarded()) {
        for (const role of r.roles!) {
          // Over HTTP, so a stream (GET /events) answers with its headers and is then dropped.
          const res = await fetch(baseUrl + urlOf(r.url), {
            method: r.method,
            headers: { authorization: `Bearer ${keys[role]}`, ...(r.method === 'GET' ? {} : { 'content-type': 'application/json' }) },
            ...(r.method === 'GET' ? {} : { body: '{}' }),
          });
          const text = res.headers.get('content-type')?.startsWith('application/json') ? await res.text() : (await res.body?.cancel(), '');
          expect([r.method, r.url, role, res.status]).not.toEqual([r.method, r.url, role, 401]);
          expect(text, `${r.method} ${r.url} as ${role}`).not.toMatch(/may not use this route/);
        }
      }
    });

    it('a prosumer sees only its own account: other meters are 404, other accounts 403 or left out', async () => {
      const k = keys.prosumer;
      const meters = (await inject('GET', '/api/v1/meters', k)).json<Array<{ meter: string; owner: string }>>();
      expect(meters.map((m) => [m.meter, m.owner])).toEqual([[HOME_METER, HOME]]);
      expect((await inject('GET', `/api/v1/meters?account=${OTHER}`, k)).json()).toMatchObject({ code: 'forbidden' });
      expect((await inject('GET', `/api/v1/meters?gateway=gw-roles-other`, k)).json()).toEqual([]);
      for (const path of ['readings', 'rejections', 'intervals', 'gaps']) {
        const res = await inject('GET', `/api/v1/meters/${OTHER_METER}/${path}`, k);
        expect([path, res.statusCode, res.json().code]).toEqual([path, 404, 'unknown_meter']);
        // Exactly what a meter that does not exist answers: the id cannot be probed.
        const none = await inject('GET', `/api/v1/meters/no-such-meter/${path}`, k);
        expect(res.json().message.replace(OTHER_METER, 'no-such-meter')).toBe(none.json().message);
        expect((await inject('GET', `/api/v1/meters/${HOME_METER}/${path}`, k)).statusCode).toBe(200);
      }
      expect((await inject('GET', `/api/v1/meters/${HOME_METER}/readings`, k)).json()).toHaveLength(3);
      const accounts = (await inject('GET', '/api/v1/accounts', k)).json<Array<{ account: string }>>();
      expect(accounts.map((a) => a.account)).toEqual([HOME]);
      expect((await inject('GET', `/api/v1/accounts?account=${OTHER}`, k)).statusCode).toBe(403);
      for (const url of [`/api/v1/orders?account=${OTHER}`, `/api/v1/balances?account=${OTHER}`, `/api/v1/trades?account=${OTHER}`]) {
        expect([url, (await inject('GET', url, k)).statusCode]).toEqual([url, 403]);
      }
      // The neighbour's orders never show in the prosumer's list.
      const placed = await inject('POST', '/api/v1/orders', keys.otherProsumer, { market: TEST_MARKET, side: 'sell', energyKwh: '1' });
      expect([201, 422]).toContain(placed.statusCode);
      const own = (await inject('GET', '/api/v1/orders', k)).json<Array<{ account: string }>>();
      expect(own.every((o) => o.account === HOME)).toBe(true);
    });

    it('an installer sees only its customers: their meters and gateways, codes only for them', async () => {
      const k = keys.installer;
      expect((await inject('GET', '/api/v1/meters', k)).json<Array<{ owner: string }>>().map((m) => m.owner)).toEqual([HOME]);
      expect((await inject('GET', `/api/v1/meters/${OTHER_METER}/readings`, k)).statusCode).toBe(404);
      expect((await inject('GET', `/api/v1/meters/${HOME_METER}/readings`, k)).statusCode).toBe(200);
      expect((await inject('GET', '/api/v1/gateways', k)).json<Array<{ id: string }>>().map((g) => g.id)).toEqual(['gw-roles-home']);
      expect((await inject('GET', `/api/v1/gateways?account=${OTHER}`, k)).statusCode).toBe(403);
      expect((await inject('GET', '/api/v1/accounts', k)).json<Array<{ account: string }>>().map((a) => a.account)).toEqual([HOME]);

      const refused = await inject('POST', '/api/v1/enrollment-codes', k, { owner: OTHER });
      expect(refused.statusCode).toBe(403);
      expect(refused.json()).toEqual({ code: 'forbidden', message: expect.stringContaining(`"${OTHER}" is not a customer of this installer key`) });
      const issued = await inject('POST', '/api/v1/enrollment-codes', k, { owner: 'not-enrolled-yet', ttlHours: 2 });
      expect(issued.statusCode, issued.body).toBe(201);
      expect(issued.json()).toMatchObject({ owner: 'not-enrolled-yet', market: TEST_MARKET, issuedBy: installerId, code: expect.stringMatching(/^GTX-/) });
      // An admin's code is not the installer's to list; its own is, without the code.
      expect((await inject('POST', '/api/v1/enrollment-codes', keys.admin, { owner: OTHER })).statusCode).toBe(201);
      const listed = (await inject('GET', '/api/v1/enrollment-codes', k)).json<Array<{ id: string; owner: string }>>();
      expect(listed.map((c) => [c.id, c.owner])).toEqual([[issued.json().id, 'not-enrolled-yet']]);
      expect(JSON.stringify(listed)).not.toContain(issued.json().code);
      expect((await inject('GET', '/api/v1/enrollment-codes', keys.admin)).json<unknown[]>().length).toBeGreaterThanOrEqual(2);
      // Nothing of the market's money: orders and balances are not an installer's.
      expect((await inject('GET', '/api/v1/orders', k)).statusCode).toBe(403);
    });
  });
}
