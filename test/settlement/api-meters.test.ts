import type { FastifyInstance } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { topics, type Reading } from '../../protocol/index.ts';
import { verifyMeter } from '../../settlement/audit/verify.ts';
import { verifyMeterWindow } from '../../settlement/audit/verify-window.ts';
import { recordRejections } from '../../settlement/ledger/rejection-store.ts';
import { ApiKeyStore } from '../../settlement/registry/api-keys.ts';
import { MeterStore } from '../../settlement/store/meter-store.ts';
import { EnvelopeFactory, verifiedEnvelope } from '../support/envelopes.ts';
import { fullApi } from '../support/full-api.ts';
import { engines, type OpenedLedger } from '../support/ledgers.ts';
import { TEST_MARKET, enrollTestGateway } from '../support/registry.ts';

/**
 * GET /meters, a meter's readings and rejections, and the verify action, on the real fastify
 * server over each engine: what they answer, their bounds and their errors. Who may call them
 * is api-roles.test.ts.
 */

const CONTEXT = { ratedPowerW: 100_000, market: TEST_MARKET, timeZone: 'Asia/Bangkok', intervalMs: 900_000 };
const MIN = 60_000;
/** Two hours ago, whole minutes: inside the verify action's default 24 hours. */
const T0 = Math.floor((Date.now() - 2 * 3600_000) / MIN) * MIN;
const iso = (ms: number) => new Date(ms).toISOString();

for (const engine of engines) {
  describe.skipIf(engine.skip)(`meter routes on ${engine.name}`, () => {
    let opened: OpenedLedger;
    let app: FastifyInstance;
    let utility: string;
    /** Every reading of m-home-1, as signed (seq 1..30, one a minute from T0). */
    const home: Reading[] = [];
    /** Readings of m-gappy stored: seqs 1..5 and 9..12 (6..8 never arrived), one a minute from T0. */
    const gappy: Reading[] = [];

    const get = (url: string, key = utility) => app.inject({ method: 'GET', url, headers: { authorization: `Bearer ${key}` } });
    const post = (url: string, key = utility) => app.inject({ method: 'POST', url, headers: { authorization: `Bearer ${key}` } });

    beforeAll(async () => {
      opened = await engine.open();
      const { ledger } = opened;
      const f = new EnvelopeFactory('gw-m-home');
      await enrollTestGateway(ledger, 'gw-m-home', f.publicKeyPem, ['m-home-1', 'm-home-2', 'm-gappy', 'm-idle']);
      const other = new EnvelopeFactory('gw-m-other');
      await enrollTestGateway(ledger, 'gw-m-other', other.publicKeyPem, ['m-other-1']);
      const envelopes = [];
      for (let batch = 0; batch < 3; batch++) {
        const rs: Reading[] = [];
        for (let i = 0; i < 10; i++) {
          const n = batch * 10 + i;
          const r = f.nextReading('m-home-1', n % 2 === 0 ? { voltageMilliV: 230_100 + n } : {}, T0 + n * MIN);
          f.advance(r);
          rs.push(r);
        }
        home.push(...rs);
        envelopes.push(verifiedEnvelope(f.sign(rs), CONTEXT));
      }
      const all: Reading[] = [];
      for (let n = 0; n < 12; n++) {
        const r = f.nextReading('m-gappy', {}, T0 + n * MIN);
        f.advance(r);
        all.push(r);
      }
      gappy.push(...all.slice(0, 5), ...all.slice(8));
      envelopes.push(verifiedEnvelope(f.sign(all.slice(0, 5)), CONTEXT), verifiedEnvelope(f.sign(all.slice(8)), CONTEXT));
      envelopes.push(verifiedEnvelope(other.next('m-other-1', 2), CONTEXT));
      const outcomes = await ledger.commitEnvelopes(envelopes);
      expect(outcomes.map((o) => o.status)).toEqual(envelopes.map(() => 'accepted'));
      const store = new ApiKeyStore(ledger.db);
      utility = (await store.create('utility')).key;
      ({ app } = await fullApi(ledger, store));
      await app.ready();
    });
    afterAll(async () => {
      await app?.close();
      await opened?.cleanup();
    });

    it('GET /meters: owner, gateway and the last verified reading of each, in pages', async () => {
      const res = await get('/api/v1/meters');
      expect(res.statusCode, res.body).toBe(200);
      const meters = res.json<Array<Record<string, unknown>>>();
      expect(meters.map((m) => m.meter)).toEqual(['m-gappy', 'm-home-1', 'm-home-2', 'm-idle', 'm-other-1']);
      const last = home.at(-1)!;
      expect(meters[1]).toEqual({
        meter: 'm-home-1',
        gateway: 'gw-m-home',
        owner: 'owner-gw-m-home',
        market: TEST_MARKET,
        role: 'bidirectional',
        model: 'eastron-sdm120',
        readings: 30,
        lastSeq: 30,
        lastReading: { seq: 30, ts: last.ts, importWh: last.importWh, exportWh: last.exportWh, powerW: last.powerW, receivedAt: expect.stringMatching(/Z$/) },
      });
      expect(meters[0]).toMatchObject({ meter: 'm-gappy', readings: 9, lastSeq: 12 });
      expect(meters[3]).toMatchObject({ meter: 'm-idle', readings: 0, lastSeq: 0, lastReading: null });
      expect(meters[4]).toMatchObject({ meter: 'm-other-1', owner: 'owner-gw-m-other', gateway: 'gw-m-other' });

      const page1 = (await get('/api/v1/meters?limit=2')).json<Array<{ meter: string }>>().map((m) => m.meter);
      const page2 = (await get(`/api/v1/meters?limit=2&after=${page1.at(-1)}`)).json<Array<{ meter: string }>>().map((m) => m.meter);
      expect([...page1, ...page2]).toEqual(['m-gappy', 'm-home-1', 'm-home-2', 'm-idle']);
      expect((await get('/api/v1/meters?gateway=gw-m-other')).json<Array<{ meter: string }>>().map((m) => m.meter)).toEqual(['m-other-1']);
      expect((await get('/api/v1/meters?account=owner-gw-m-other')).json<Array<{ meter: string }>>().map((m) => m.meter)).toEqual(['m-other-1']);
      expect((await get('/api/v1/meters?limit=2001')).json()).toMatchObject({ code: 'bad_request', message: expect.stringContaining('limit') });
    });

    it('GET /meters/:id/readings: verified readings newest first, with their envelope; limit', async () => {
      const rows = (await get('/api/v1/meters/m-home-1/readings')).json<Array<Record<string, unknown>>>();
      expect(rows.map((r) => r.seq)).toEqual(home.map((r) => r.seq).reverse());
      const newest = home.at(-1)!;
      expect(rows[0]).toEqual({
        seq: 30,
        ts: newest.ts,
        importWh: newest.importWh,
        exportWh: newest.exportWh,
        powerW: newest.powerW,
        envelopeId: expect.stringMatching(/^[0-9a-f]{64}$/),
        gateway: 'gw-m-home',
        receivedAt: expect.stringMatching(/Z$/),
      });
      expect(rows[1]).toMatchObject({ seq: 29, voltageMilliV: 230_128 });
      expect((await get('/api/v1/meters/m-home-1/readings?limit=5')).json<Array<{ seq: number }>>().map((r) => r.seq)).toEqual([30, 29, 28, 27, 26]);
      expect((await get('/api/v1/meters/m-idle/readings')).json()).toEqual([]);
    });

    it('GET /meters/:id/readings?from&to: exactly the readings with from <= ts < to, across gaps too', async () => {
      // Every pair of bounds around and between the readings, against the readings filtered by hand.
      for (const [meter, stored] of [
        ['m-home-1', home],
        ['m-gappy', gappy],
      ] as const) {
        const bounds = [T0 - MIN, T0, T0 + 30_000, T0 + 4 * MIN, T0 + 6 * MIN, T0 + 7 * MIN + 1, T0 + 9 * MIN, T0 + 11 * MIN, T0 + 29 * MIN, T0 + 40 * MIN];
        for (const from of bounds) {
          for (const to of bounds.filter((b) => b > from)) {
            const expected = stored.filter((r) => Date.parse(r.ts) >= from && Date.parse(r.ts) < to).map((r) => r.seq).reverse();
            const res = await get(`/api/v1/meters/${meter}/readings?from=${iso(from)}&to=${iso(to)}&limit=1000`);
            expect([meter, iso(from), iso(to), res.json<Array<{ seq: number }>>().map((r) => r.seq)]).toEqual([meter, iso(from), iso(to), expected]);
          }
        }
      }
      // Offsets as the interval routes take them.
      const local = new Date(T0 + 7 * 3600_000 + 10 * MIN).toISOString().replace('.000Z', '%2B07:00');
      expect((await get(`/api/v1/meters/m-home-1/readings?to=${local}&limit=3`)).json<Array<{ seq: number }>>().map((r) => r.seq)).toEqual([10, 9, 8]);
    });

    it('GET /meters/:id/readings refuses a bad range or limit with 400', async () => {
      expect((await get('/api/v1/meters/m-home-1/readings?from=yesterday')).json()).toMatchObject({ code: 'bad_request' });
      expect((await get('/api/v1/meters/m-home-1/readings?from=2026-02-30')).json()).toMatchObject({ code: 'bad_request', message: expect.stringContaining('"from"') });
      expect((await get('/api/v1/meters/m-home-1/readings?from=2026-11-02&to=2026-11-01')).json()).toMatchObject({ code: 'bad_range' });
      expect((await get('/api/v1/meters/m-home-1/readings?limit=1001')).statusCode).toBe(400);
      expect((await get('/api/v1/meters/m-home-1/readings?limit=0')).statusCode).toBe(400);
      expect((await get('/api/v1/meters/no-such/readings')).json()).toMatchObject({ code: 'unknown_meter' });
    });

    it('GET /meters/:id/rejections: refusals of its gateways whose payload names it, newest first', async () => {
      const { ledger } = opened;
      const at = Date.now();
      const sample = (gateway: string, reason: 'bad_signature' | 'invalid_json' | 'broken_chain', payload: string, i: number) => ({
        receivedAtMs: at + i,
        topic: topics.readings(gateway),
        gateway,
        envelopeId: null,
        reason,
        detail: `sample ${i}`,
        payload: Buffer.from(payload),
        payloadBytes: payload.length,
        payloadSha256: '0'.repeat(64),
      });
      const naming = (meter: string) => JSON.stringify({ v: 1, gateway: 'gw-m-home', readings: [{ meter, seq: 99 }], sig: 'AA' });
      await recordRejections(
        ledger.db,
        {
          counts: [],
          samples: [
            sample('gw-m-home', 'bad_signature', naming('m-home-1'), 0),
            sample('gw-m-home', 'bad_signature', naming('m-home-2'), 1),
            sample('gw-m-home', 'invalid_json', 'not json at all', 2),
            // Another gateway naming this meter: not this meter's gateway, so not its rejection.
            sample('gw-m-other', 'bad_signature', naming('m-home-1'), 3),
            // Whitespace the canonical form never has: found by parsing.
            sample('gw-m-home', 'broken_chain', '{ "readings": [ { "meter" : "m-home-1", "seq": 7 } ] }', 4),
          ],
        },
        65_536,
      );
      const rows = (await get('/api/v1/meters/m-home-1/rejections')).json<Array<Record<string, unknown>>>();
      expect(rows.map((r) => [r.reason, r.detail, r.gateway])).toEqual([
        ['broken_chain', 'sample 4', 'gw-m-home'],
        ['bad_signature', 'sample 0', 'gw-m-home'],
      ]);
      expect(rows[0]).toEqual({ id: expect.any(Number), reason: 'broken_chain', detail: 'sample 4', at: iso(at + 4), envelopeId: null, gateway: 'gw-m-home' });
      expect((await get('/api/v1/meters/m-home-1/rejections?limit=1')).json()).toHaveLength(1);
      expect((await get('/api/v1/meters/m-home-2/rejections')).json<Array<{ detail: string }>>().map((r) => r.detail)).toEqual(['sample 1']);
      expect((await get('/api/v1/meters/m-home-1/rejections?limit=201')).statusCode).toBe(400);
    });

    it('POST /meters/:id/verify re-checks the chain as gtx audit verify does, and finds an edited reading', async () => {
      const range = `from=${iso(T0)}&to=${iso(T0 + 60 * MIN)}`;
      const ok = await post(`/api/v1/meters/m-home-1/verify?${range}`);
      expect(ok.statusCode, ok.body).toBe(200);
      expect(ok.json()).toEqual({
        meter: 'm-home-1',
        ok: true,
        complete: true,
        from: iso(T0),
        to: iso(T0 + 60 * MIN),
        readingsChecked: 30,
        envelopesChecked: 3,
        firstSeq: 1,
        lastSeq: 30,
        gaps: 0,
        problems: 0,
        firstProblem: null,
        details: [],
      });
      // The default range, the last 24 hours, holds them all too.
      expect((await post('/api/v1/meters/m-home-1/verify')).json()).toMatchObject({ ok: true, readingsChecked: 30 });
      expect((await post(`/api/v1/meters/m-gappy/verify?${range}`)).json()).toMatchObject({ ok: true, readingsChecked: 9, gaps: 1 });

      // An edited counter, behind the ledger's back: the signed original says otherwise.
      await opened.ledger.db.updateTable('readings').set({ import_wh: home[14]!.importWh + 1 }).where('meter', '=', 'm-home-1').where('seq', '=', 15).execute();
      try {
        const bad = (await post(`/api/v1/meters/m-home-1/verify?${range}`)).json<{ ok: boolean; problems: number; firstProblem: { kind: string; seq: number } }>();
        expect(bad.ok).toBe(false);
        expect(bad.firstProblem).toMatchObject({ kind: 'row_mismatch', seq: 15, detail: expect.stringContaining('importWh') });
        // Outside the range the edit is not looked at.
        expect((await post(`/api/v1/meters/m-home-1/verify?from=${iso(T0 + 20 * MIN)}&to=${iso(T0 + 60 * MIN)}`)).json()).toMatchObject({ ok: true, readingsChecked: 10 });
      } finally {
        await opened.ledger.db.updateTable('readings').set({ import_wh: home[14]!.importWh }).where('meter', '=', 'm-home-1').where('seq', '=', 15).execute();
      }

      expect((await post('/api/v1/meters/m-home-1/verify?from=2026-01-01&to=2026-03-01')).json()).toMatchObject({ code: 'bad_range' });
      expect((await post('/api/v1/meters/no-such/verify')).json()).toMatchObject({ code: 'unknown_meter' });
    });

    it('bounds the work: a window of the newest readings, checked exactly as the whole meter is', async () => {
      const { ledger } = opened;
      const all = await verifyMeter(ledger, 'm-home-1', { fromMs: T0 + 20 * MIN, toMs: T0 + 60 * MIN });
      const windowed = await verifyMeterWindow(ledger, 'm-home-1', { fromMs: T0 + 20 * MIN, toMs: T0 + 60 * MIN, maxReadings: 100 });
      expect(windowed.complete).toBe(true);
      const { readingsInLedger: _all, ...sameAsFull } = all;
      const { readingsInLedger: _window, ...fromWindow } = windowed.report;
      expect(fromWindow).toEqual(sameAsFull);

      const capped = await verifyMeterWindow(ledger, 'm-home-1', { fromMs: T0, toMs: T0 + 60 * MIN, maxReadings: 10 });
      expect(capped).toMatchObject({ complete: false, fromMs: T0 + 20 * MIN, toMs: T0 + 60 * MIN });
      expect(capped.report).toMatchObject({ ok: true, readingsChecked: 10, firstSeq: 21, lastSeq: 30 });
      // Its chain rules reached the stored neighbour below the window (seq 20 → 21).
      expect(capped.report.chainRules.pairsChecked).toBe(10);

      // The seq window the readings route and the verify action share, found with index seeks.
      expect(await new MeterStore(ledger.db).seqWindow('m-gappy', T0 + 5 * MIN, T0 + 9 * MIN)).toEqual({ fromSeq: 6, toSeq: 10 });
      expect(await new MeterStore(ledger.db).seqWindow('m-idle', 0, Date.now())).toBeUndefined();
    });
  });
}
