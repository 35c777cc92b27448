import type { FastifyInstance } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { GENESIS_PREV, meterId, readingHash, type Reading } from '../../../protocol/index.ts';
import { RecMinter } from '../../../settlement/recs/minting.ts';
import { RecLifecycle } from '../../../settlement/recs/lifecycle.ts';
import { MarketService } from '../../../settlement/market/market.ts';
import { defaultSettlementConfig } from '../../../settlement/config.ts';
import { ownerAccount } from '../../../settlement/market/accounts.ts';
import { ApiKeyStore } from '../../../settlement/registry/api-keys.ts';
import { MoneyStore } from '../../../settlement/store/money-store.ts';
import { testApi } from '../../support/api.ts';
import { EnvelopeFactory, verifiedEnvelope } from '../../support/envelopes.ts';
import { engines, type OpenedLedger } from '../../support/ledgers.ts';
import { TEST_MARKET, enrollTestGateway } from '../../support/registry.ts';

/** The certificate routes on the real server over each engine: who may call them, and an admin-triggered minting run. */
const T = Date.parse('2026-11-30T10:00:00Z');
const H = 3_600_000;

for (const engine of engines) {
  describe.skipIf(engine.skip)(`certificate API on ${engine.name}`, () => {
    let opened: OpenedLedger;
    let app: FastifyInstance;
    const keys = {} as Record<'admin' | 'utility' | 'owner' | 'other', string>;
    let market: MarketService;
    const call = (method: 'GET' | 'POST' | 'DELETE', url: string, key?: string, payload?: object) =>
      app.inject({ method, url, headers: key ? { authorization: `Bearer ${key}` } : {}, ...(payload ? { payload } : {}) });

    beforeAll(async () => {
      opened = await engine.open();
      const { ledger } = opened;
      const gw = new EnvelopeFactory('gw-rec');
      await enrollTestGateway(ledger, 'gw-rec', gw.publicKeyPem, ['rec-pv-1']);
      await enrollTestGateway(ledger, 'gw-rec-other', gw.publicKeyPem, ['rec-pv-2']);
      const rs: Reading[] = [];
      for (const [i, m] of [0, 30, 60].entries()) {
        rs.push({ meter: meterId('rec-pv-1'), seq: i + 1, ts: new Date(T + m * 60_000).toISOString(), importWh: 0, exportWh: 500 + m * 20, powerW: -1200, prev: i === 0 ? GENESIS_PREV : readingHash(rs[i - 1]!) });
      }
      await ledger.commitEnvelopes([verifiedEnvelope(gw.sign(rs), { ratedPowerW: 100_000, market: TEST_MARKET, timeZone: 'Asia/Bangkok', intervalMs: 900_000 }, T + H)], { nowMs: T + H });
      const store = new ApiKeyStore(ledger.db);
      keys.admin = (await store.create('admin')).key;
      keys.utility = (await store.create('utility')).key;
      keys.owner = (await store.create('prosumer', '', 'owner-gw-rec')).key;
      keys.other = (await store.create('prosumer', '', 'owner-gw-rec-other')).key;
      const minter = new RecMinter(ledger, new MoneyStore(ledger.db, ledger.engine), { now: () => T + 2 * H, settleMs: 0, lookbackMs: 35 * 24 * H });
      market = new MarketService(ledger, { rules: () => undefined, credits: defaultSettlementConfig().credits, now: Date.now });
      app = testApi(ledger, store, { recs: { minter, lifecycle: new RecLifecycle(minter.recs, market.money, Date.now) } });
      await app.ready();
    });
    afterAll(async () => {
      await app?.close();
      await opened?.cleanup();
    });

    it('401 without a key, 403 for a non-admin mint or another owner’s list', async () => {
      expect((await call('GET', '/api/v1/recs')).statusCode).toBe(401);
      expect((await call('POST', '/api/v1/recs/mint', undefined, {})).statusCode).toBe(401);
      for (const k of [keys.owner, keys.utility]) expect((await call('POST', '/api/v1/recs/mint', k, {})).statusCode).toBe(403);
      expect((await call('GET', '/api/v1/recs?owner=owner-gw-rec', keys.other)).statusCode).toBe(403);
      expect((await call('GET', '/api/v1/recs/marketplace')).statusCode).toBe(401);
      const holderOnly: Array<['POST' | 'DELETE', string, object | undefined]> = [
        ['POST', '/api/v1/recs/rec_x/list', { pricePerKwh: '0.05', currency: 'THB' }],
        ['DELETE', '/api/v1/recs/rec_x/list', undefined],
        ['POST', '/api/v1/recs/rec_x/purchase', undefined],
        ['POST', '/api/v1/recs/rec_x/retire', { reason: 'r', beneficiary: 'b' }],
      ];
      for (const [method, url, body] of holderOnly) {
        expect([url, (await call(method, url, undefined, body)).statusCode]).toEqual([url, 401]);
        for (const k of [keys.admin, keys.utility]) expect([url, (await call(method, url, k, body)).statusCode]).toEqual([url, 403]);
      }
    });

    it('an admin runs the minting job; the owner sees its certificate with provenance, another prosumer sees none', async () => {
      const run = await call('POST', '/api/v1/recs/mint', keys.admin, {});
      expect(run.statusCode, run.body).toBe(200);
      expect(run.json().minted).toEqual([
        expect.objectContaining({ generator: { meter: 'rec-pv-1', owner: 'owner-gw-rec' }, owner: 'owner-gw-rec', energySource: 'Solar', volumeWh: 1200, periodStart: '2026-11-30T10:00:00.000Z', status: 'active', provenance: expect.objectContaining({ firstSeq: 1, lastSeq: 3 }) }),
      ]);
      expect((await call('POST', '/api/v1/recs/mint', keys.admin, {})).json().minted).toEqual([]);
      expect((await call('GET', '/api/v1/recs', keys.owner)).json()).toHaveLength(1);
      expect((await call('GET', '/api/v1/recs', keys.other)).json()).toEqual([]);
      expect((await call('GET', '/api/v1/recs?source=Solar&status=active', keys.utility)).json()).toHaveLength(1);
      expect((await call('POST', '/api/v1/recs/mint', keys.admin, { from: 'yesterday' })).statusCode).toBe(400);
    });

    it('lists, withdraws, sells (payment through the journal, once), retires in part and in whole — final', async () => {
      const [rec] = (await call('GET', '/api/v1/recs', keys.owner)).json() as Array<{ id: string }>;
      const id = rec!.id;
      const list = (key: string, body = { pricePerKwh: '0.05', currency: 'THB' }) => call('POST', `/api/v1/recs/${id}/list`, key, body);
      expect((await list(keys.other)).statusCode).toBe(404); // not the holder's
      expect((await list(keys.owner)).json()).toMatchObject({ status: 'for_sale', listing: { pricePerKwh: '0.05', currency: 'THB' } });
      expect((await call('GET', '/api/v1/recs/marketplace', keys.other)).json().map((r: { id: string }) => r.id)).toEqual([id]);
      expect((await call('DELETE', `/api/v1/recs/${id}/list`, keys.owner)).json()).toMatchObject({ status: 'active', listing: null });
      await list(keys.owner, { pricePerKwh: '0.10', currency: 'THB' });
      // The buyer has no credits yet: refused, nothing moves.
      const broke = await call('POST', `/api/v1/recs/${id}/purchase`, keys.other);
      expect([broke.statusCode, broke.json().code]).toEqual([422, 'insufficient_credits']);
      await market.deposit('owner-gw-rec-other', 'THB', 1_000n);
      expect((await call('POST', `/api/v1/recs/${id}/purchase`, keys.owner)).statusCode).toBe(409); // own
      const bought = await call('POST', `/api/v1/recs/${id}/purchase`, keys.other);
      expect(bought.statusCode, bought.body).toBe(200);
      expect(bought.json()).toMatchObject({ paid: '0.12', currency: 'THB', rec: { owner: 'owner-gw-rec-other', status: 'sold' } }); // 1.2 kWh × 0.10
      expect((await call('POST', `/api/v1/recs/${id}/purchase`, keys.other)).statusCode).toBe(409);
      expect(await market.money.balance(ownerAccount('owner-gw-rec', 'THB'))).toBe(12n);
      expect(await market.money.check()).toEqual([]);
      // The new holder retires 200 Wh (split off, same provenance), then the rest: final.
      const part = await call('POST', `/api/v1/recs/${id}/retire`, keys.other, { reason: 'green tariff 2026', beneficiary: 'Bob', volumeWh: 200 });
      expect(part.json()).toMatchObject({ status: 'retired', volumeWh: 200, parent: id, retirement: { reason: 'green tariff 2026', beneficiary: 'Bob' }, provenance: { firstSeq: 1, lastSeq: 3 } });
      const rest = await call('POST', `/api/v1/recs/${id}/retire`, keys.other, { reason: 'r', beneficiary: 'Bob' });
      expect(rest.json()).toMatchObject({ status: 'retired', volumeWh: 1000 });
      expect((await call('POST', `/api/v1/recs/${id}/retire`, keys.other, { reason: 'r', beneficiary: 'Bob' })).statusCode).toBe(409);
      expect((await call('POST', `/api/v1/recs/${id}/list`, keys.other, { pricePerKwh: '0.05', currency: 'THB' })).statusCode).toBe(409);
      const all = (await call('GET', '/api/v1/recs?generator=rec-pv-1', keys.utility)).json() as Array<{ volumeWh: number }>;
      expect(all.reduce((a, r) => a + r.volumeWh, 0)).toBe(1200); // splitting never adds or loses Wh
    });
  });
}
