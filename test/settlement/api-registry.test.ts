import type { FastifyInstance } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { generateGatewayKeyPair, topics } from '../../protocol/index.ts';
import { StatusHandler } from '../../settlement/ingest/status-handler.ts';
import type { MarketService } from '../../settlement/market/market.ts';
import { ApiKeyStore } from '../../settlement/registry/api-keys.ts';
import { codeHash } from '../../settlement/registry/enrollment.ts';
import type { AccountId, MarketId } from '../../settlement/registry/registry.ts';
import { NRG_UNIT, NrgToken } from '../../settlement/tokens/nrg.ts';
import { Staking } from '../../settlement/governance/governance.ts';
import { defaultSettlementConfig } from '../../settlement/config.ts';
import { EnvelopeFactory, verifiedEnvelope } from '../support/envelopes.ts';
import { fullApi } from '../support/full-api.ts';
import { engines, type OpenedLedger } from '../support/ledgers.ts';
import { TEST_MARKET, enrollTestGateway } from '../support/registry.ts';
import { testLog } from '../support/stack.ts';

/**
 * Gateways and their status, accounts and balances, enrollment codes and API keys, on the real
 * fastify server over each engine. Who may call them is api-roles.test.ts.
 */

const CONTEXT = { ratedPowerW: 100_000, market: TEST_MARKET, timeZone: 'Asia/Bangkok', intervalMs: 900_000 };
/** 10:05 in Bangkok: the market is open for orders. */
const T = Date.parse('2026-11-30T03:05:00Z');
const HOME = 'owner-gw-r-home';

for (const engine of engines) {
  describe.skipIf(engine.skip)(`registry routes on ${engine.name}`, () => {
    let opened: OpenedLedger;
    let app: FastifyInstance;
    let market: MarketService;
    const keys = {} as Record<'admin' | 'installer' | 'prosumer', string>;
    let adminId: string;
    const status = new StatusHandler(testLog('status'));

    const call = (method: 'GET' | 'POST' | 'DELETE', url: string, key: string, payload?: object) =>
      app.inject({ method, url, headers: { authorization: `Bearer ${key}` }, ...(payload ? { payload } : {}) });

    beforeAll(async () => {
      opened = await engine.open();
      const { ledger } = opened;
      const now = Date.now();
      // Each gateway reports one meter, read at `readAt` (none for gw-r-none).
      for (const [gw, readAt] of [
        ['gw-r-home', now],
        ['gw-r-lwt', now],
        ['gw-r-quiet', now - 10 * 60_000],
        ['gw-r-fresh', now],
        ['gw-r-gone', now],
        ['gw-r-none', null],
      ] as const) {
        const f = new EnvelopeFactory(gw);
        await enrollTestGateway(ledger, gw, f.publicKeyPem, [`${gw}-m1`]);
        if (readAt !== null) expect((await ledger.commitEnvelopes([verifiedEnvelope(f.next(`${gw}-m1`), CONTEXT, readAt)]))[0]!.status).toBe('accepted');
      }
      await ledger.setGatewayStatus('gw-r-gone', 'revoked', now);
      status.handle(topics.status('gw-r-home'), Buffer.from(JSON.stringify({ v: 1, state: 'online', ts: new Date().toISOString(), outbox: 3 })));
      status.handle(topics.status('gw-r-lwt'), Buffer.from(JSON.stringify({ v: 1, state: 'online', ts: new Date().toISOString() })));
      // Its last will, published by the broker when the connection dropped.
      status.handle(topics.status('gw-r-lwt'), Buffer.from(JSON.stringify({ v: 1, state: 'offline', ts: new Date().toISOString() })));

      const store = new ApiKeyStore(ledger.db);
      const admin = await store.create('admin', 'ops');
      keys.admin = admin.key;
      adminId = admin.record.id;
      keys.installer = (await store.create('installer', 'Acme', null, [HOME])).key;
      keys.prosumer = (await store.create('prosumer', 'home', HOME)).key;
      ({ app, market } = await fullApi(ledger, store, { gatewayPresence: (id) => status.presence(id) }, () => T));
      await app.ready();
    });
    afterAll(async () => {
      await app?.close();
      await opened?.cleanup();
    });

    it('GET /gateways: owner, meters, online/offline from status messages and readings, revoked, lastSeen', async () => {
      const res = await call('GET', '/api/v1/gateways', keys.admin);
      expect(res.statusCode, res.body).toBe(200);
      const byId = Object.fromEntries(res.json<Array<Record<string, unknown> & { id: string }>>().map((g) => [g.id, g]));
      expect(Object.keys(byId)).toEqual(['gw-r-fresh', 'gw-r-gone', 'gw-r-home', 'gw-r-lwt', 'gw-r-none', 'gw-r-quiet']);
      expect(byId['gw-r-home']).toEqual({
        id: 'gw-r-home',
        owner: HOME,
        status: 'online',
        lastSeen: expect.stringMatching(/Z$/),
        meters: ['gw-r-home-m1'],
        outbox: 3,
        enrolledAt: expect.stringMatching(/Z$/),
        revokedAt: null,
      });
      // The last will wins over a recent reading; without a status message, readings decide.
      expect(byId['gw-r-lwt']).toMatchObject({ status: 'offline' });
      expect(byId['gw-r-lwt']).not.toHaveProperty('outbox');
      expect(byId['gw-r-fresh']).toMatchObject({ status: 'online' });
      expect(byId['gw-r-quiet']).toMatchObject({ status: 'offline', lastSeen: expect.stringMatching(/Z$/) });
      expect(byId['gw-r-none']).toMatchObject({ status: 'offline', lastSeen: null, owner: 'owner-gw-r-none' });
      expect(byId['gw-r-gone']).toMatchObject({ status: 'revoked', revokedAt: expect.stringMatching(/Z$/) });

      const page = (await call('GET', '/api/v1/gateways?limit=2&after=gw-r-gone', keys.admin)).json<Array<{ id: string }>>();
      expect(page.map((g) => g.id)).toEqual(['gw-r-home', 'gw-r-lwt']);
      expect((await call('GET', '/api/v1/gateways', keys.installer)).json<Array<{ id: string }>>().map((g) => g.id)).toEqual(['gw-r-home']);
    });

    it('GET /accounts: available and held per currency (escrow of open orders, staked NRG), as decimal strings', async () => {
      await market.deposit(HOME, 'THB', 10_000n);
      const placed = await market.placeOrder(HOME, TEST_MARKET, { side: 'buy', energyWh: 1000, limit: 420n });
      expect(placed.ok ? placed.order.status : placed.refusal).toBe('open');
      const cfg = defaultSettlementConfig();
      await new NrgToken(market.money, cfg.governance.supply, () => T).grant(HOME, 1000n * NRG_UNIT);
      await new Staking(opened.ledger.db, market.money, cfg.governance.rules, () => T).stake(HOME, 150n * NRG_UNIT, 90);

      const own = (await call('GET', '/api/v1/accounts', keys.prosumer)).json();
      expect(own).toEqual([
        {
          account: HOME,
          name: HOME,
          balances: [
            { currency: 'NRG', available: '850.000000000000000000', held: '150.000000000000000000' },
            { currency: 'THB', available: '95.80', held: '4.20' },
          ],
        },
      ]);
      const all = (await call('GET', '/api/v1/accounts', keys.admin)).json<Array<{ account: string; balances: unknown[] }>>();
      expect(all.map((a) => a.account)).toEqual(['owner-gw-r-fresh', 'owner-gw-r-gone', HOME, 'owner-gw-r-lwt', 'owner-gw-r-none', 'owner-gw-r-quiet']);
      expect(all.find((a) => a.account === 'owner-gw-r-none')!.balances).toEqual([]);
      expect((await call('GET', '/api/v1/accounts?limit=1&after=owner-gw-r-gone', keys.admin)).json<Array<{ account: string }>>().map((a) => a.account)).toEqual([HOME]);
      expect((await call('GET', `/api/v1/accounts?account=${HOME}`, keys.installer)).json<Array<{ account: string }>>().map((a) => a.account)).toEqual([HOME]);
      expect((await call('GET', '/api/v1/accounts?limit=1001', keys.admin)).statusCode).toBe(400);
    });

    it('enrollment codes: issued once, listed without the code, open → used with the gateway; the old admin route still answers', async () => {
      const issued = await call('POST', '/api/v1/enrollment-codes', keys.admin, { owner: 'new-home', ttlHours: 4 });
      expect(issued.statusCode, issued.body).toBe(201);
      const code = issued.json<{ id: string; code: string; market: string; owner: string; expiresAt: string; issuedBy: string }>();
      expect(code).toEqual({ id: codeHash(code.code).slice(0, 16), code: expect.stringMatching(/^GTX-/), market: TEST_MARKET, owner: 'new-home', expiresAt: expect.any(String), issuedBy: adminId });

      const listed = () => call('GET', '/api/v1/enrollment-codes', keys.admin).then((r) => r.json<Array<Record<string, unknown>>>());
      expect((await listed()).find((c) => c.id === code.id)).toEqual({
        id: code.id,
        owner: 'new-home',
        market: TEST_MARKET,
        createdAt: expect.any(String),
        expiresAt: code.expiresAt,
        status: 'open',
        usedAt: null,
        gateway: null,
        issuedBy: adminId,
      });
      expect(JSON.stringify(await listed())).not.toContain(code.code);

      const enrolled = await app.inject({
        method: 'POST',
        url: '/api/v1/enrollments',
        payload: { code: code.code, gateway: 'gw-r-new', publicKeyPem: generateGatewayKeyPair().publicKeyPem, meters: [{ id: 'gw-r-new-m1', model: 'eastron-sdm120', role: 'consumption', ratedPowerW: 9000 }] },
      });
      expect(enrolled.statusCode, enrolled.body).toBe(201);
      expect((await listed()).find((c) => c.id === code.id)).toMatchObject({ status: 'used', gateway: 'gw-r-new', usedAt: expect.any(String) });

      // A code from the CLI (no issuer) that ran out.
      await opened.ledger.putEnrollmentCode({ codeHash: codeHash('GTX-OLD0-OLD0-OLD0'), market: TEST_MARKET as MarketId, owner: HOME as AccountId, createdAtMs: 1, expiresAtMs: 2, usedAtMs: null, usedBy: null });
      expect((await listed()).find((c) => c.id === codeHash('GTX-OLD0-OLD0-OLD0').slice(0, 16))).toMatchObject({ status: 'expired', issuedBy: null });

      const old = await call('POST', '/api/v1/admin/enrollment-codes', keys.admin, { market: TEST_MARKET, owner: 'old-style' });
      expect(old.statusCode, old.body).toBe(201);
      expect(Object.keys(old.json()).sort()).toEqual(['code', 'expiresAt', 'market', 'owner']);
      expect((await call('POST', '/api/v1/enrollment-codes', keys.admin, { owner: 'x', market: 'atlantis' })).json()).toMatchObject({ code: 'unknown_market' });
      expect((await call('POST', '/api/v1/enrollment-codes', keys.admin, { owner: 'no spaces' })).statusCode).toBe(400);
      expect((await call('GET', '/api/v1/enrollment-codes?limit=2', keys.admin)).json()).toHaveLength(2);
    });

    it('API keys: created once, listed without key or hash, revoked at once', async () => {
      const created = await call('POST', '/api/v1/api-keys', keys.admin, { role: 'utility', label: 'grid operator' });
      expect(created.statusCode, created.body).toBe(201);
      const k = created.json<{ key: string; id: string }>();
      expect(created.json()).toEqual({ key: expect.stringMatching(/^gtx_/), id: expect.stringMatching(/^[a-z2-9]{10}$/), role: 'utility', label: 'grid operator', account: null, createdAt: expect.any(String), revokedAt: null });
      expect((await call('GET', '/api/v1/meters', k.key)).statusCode).toBe(200);

      const installer = await call('POST', '/api/v1/api-keys', keys.admin, { role: 'installer', label: 'Volt', customers: ['zeta', 'alpha', 'zeta'] });
      expect(installer.json()).toMatchObject({ role: 'installer', customers: ['alpha', 'zeta'], account: null });
      const prosumer = await call('POST', '/api/v1/api-keys', keys.admin, { role: 'prosumer', account: HOME });
      expect(prosumer.json()).toMatchObject({ role: 'prosumer', account: HOME });

      const refusals: Array<[object, number, string, RegExp]> = [
        [{ role: 'installer' }, 400, 'bad_request', /needs the customer accounts/],
        [{ role: 'installer', customers: [] }, 400, 'bad_request', /customers/],
        [{ role: 'utility', customers: ['a'] }, 400, 'bad_request', /only installer keys are/],
        [{ role: 'prosumer' }, 400, 'bad_request', /needs the account/],
        [{ role: 'prosumer', account: 'nobody' }, 404, 'unknown_account', /no account nobody/],
        [{ role: 'root' }, 400, 'bad_request', /role/],
        [{ role: 'installer', customers: ['bad/id'] }, 400, 'bad_request', /customers/],
      ];
      for (const [body, status, code, message] of refusals) {
        const res = await call('POST', '/api/v1/api-keys', keys.admin, body);
        expect([JSON.stringify(body), res.statusCode, res.json().code]).toEqual([JSON.stringify(body), status, code]);
        expect(res.json().message).toMatch(message);
      }

      const listed = await call('GET', '/api/v1/api-keys', keys.admin);
      const rows = listed.json<Array<Record<string, unknown>>>();
      expect(rows.find((r) => r.id === k.id)).toEqual({ id: k.id, role: 'utility', label: 'grid operator', account: null, createdAt: expect.any(String), revokedAt: null });
      expect(rows.find((r) => r.label === 'Acme')).toMatchObject({ role: 'installer', customers: [HOME] });
      const hashes = (await opened.ledger.db.selectFrom('api_keys').select('key_hash').execute()).map((r) => r.key_hash);
      for (const h of hashes) expect(listed.body).not.toContain(h);
      expect(listed.body).not.toContain(k.key.slice(4));

      const revoked = await call('DELETE', `/api/v1/api-keys/${k.id}`, keys.admin);
      expect(revoked.json()).toMatchObject({ id: k.id, revokedAt: expect.stringMatching(/Z$/) });
      expect((await call('GET', '/api/v1/meters', k.key)).statusCode).toBe(401);
      expect((await call('DELETE', `/api/v1/api-keys/${k.id}`, keys.admin)).json()).toEqual(revoked.json());
      expect((await call('DELETE', '/api/v1/api-keys/nosuchkey1', keys.admin)).json()).toMatchObject({ code: 'unknown_key' });
    });

    it('a second market: a code must name its market', async () => {
      await opened.ledger.putMarket({ id: 'second_market' as MarketId, name: 'Second', timeZone: 'Asia/Bangkok', intervalMinutes: 15 });
      const res = await call('POST', '/api/v1/enrollment-codes', keys.installer, { owner: HOME });
      expect(res.statusCode).toBe(400);
      expect(res.json().message).toMatch(/name the market: body field "market" is one of second_market, thailand_central|thailand_central, second_market/);
      expect((await call('POST', '/api/v1/enrollment-codes', keys.installer, { owner: HOME, market: 'second_market' })).statusCode).toBe(201);
    });
  });
}
