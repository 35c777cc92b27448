import type { FastifyInstance } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { GENESIS_PREV, meterId, readingHash, type Reading } from '../../../protocol/index.ts';
import { RecMinter } from '../../../settlement/recs/minting.ts';
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
    const call = (method: 'GET' | 'POST', url: string, key?: string, payload?: object) =>
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
      app = testApi(ledger, store, { recs: minter });
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
  });
}
