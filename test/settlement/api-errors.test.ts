import { connect } from 'node:net';
import { join } from 'node:path';
import type { FastifyInstance, LightMyRequestResponse } from 'fastify';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Reading } from '../../protocol/index.ts';
import type { Ledger, MeterContext } from '../../settlement/ledger/ledger.ts';
import { openLedger } from '../../settlement/ledger/open.ts';
import { buildApi, listenApi } from '../../settlement/api/server.ts';
import { parseInstant } from '../../settlement/api/routes/energy.ts';
import { createMetrics } from '../../settlement/metrics.ts';
import { ApiKeyStore } from '../../settlement/registry/api-keys.ts';
import { Enrollment } from '../../settlement/registry/enrollment.ts';
import { EnvelopeFactory, verifiedEnvelope } from '../support/envelopes.ts';
import { TEST_MARKET, enrollTestGateway } from '../support/registry.ts';
import { testLog } from '../support/stack.ts';
import { tempDir } from '../support/tmp.ts';

/**
 * Every non-2xx answer of the REST API is `{"code","message"}` with the right status, on the real
 * fastify server over a real SQLite ledger; and the interval routes' from/to forms and defaults.
 */

const ADMIN_KEY = 'tests-admin-key-Zm9vYmFyYmF6cXV4cXV1eA=='; // ≥ 32 characters
const CONTEXT: MeterContext = { ratedPowerW: 100_000, market: TEST_MARKET, timeZone: 'Asia/Bangkok', intervalMs: 900_000 };
const MIN = 60_000;
const HOUR = 3_600_000;
/** 2026-11-01 05:00 UTC (12:00 in Bangkok). */
const T0 = Date.UTC(2026, 10, 1, 5, 0);

/** Exactly the error shape, with this status and code; returns the message. */
function expectError(res: LightMyRequestResponse | { statusCode: number; headers: Record<string, unknown>; body: string }, status: number, code: string): string {
  expect([res.statusCode, res.body]).toEqual([status, expect.any(String)]);
  expect(String(res.headers['content-type'])).toMatch(/^application\/json/);
  const body = JSON.parse(res.body) as Record<string, unknown>;
  expect(Object.keys(body).sort(), res.body).toEqual(['code', 'message']);
  expect(body.code, res.body).toBe(code);
  expect(body.message).toEqual(expect.any(String));
  return body.message as string;
}

describe('REST API errors and interval ranges', () => {
  const dir = tempDir('gtx-api-errors-');
  let ledger: Ledger;
  let app: FastifyInstance;
  let utilityKey: string;
  const logLines: string[] = [];

  const get = (url: string, headers: Record<string, string> = { authorization: `Bearer ${utilityKey}` }) => app.inject({ method: 'GET', url, headers });
  const rows = async (url: string) => {
    const res = await get(url);
    expect(res.statusCode, res.body).toBe(200);
    return res.json<Array<{ start: string; importWh?: number; supplyWh?: number }>>();
  };

  beforeAll(async () => {
    ledger = await openLedger({ sqlitePath: join(dir.path, 'ledger.sqlite') });
    const f = new EnvelopeFactory('gw-api');
    await enrollTestGateway(ledger, 'gw-api', f.publicKeyPem, ['meter-a', 'meter-now', 'meter-idle']);
    const commit = async (meter: string, points: Array<[number, number]>, nowMs: number) => {
      const rs: Reading[] = points.map(([at, importWh]) => {
        const r = f.nextReading(meter, { importWh, exportWh: 0 }, at);
        f.advance(r);
        return r;
      });
      const [outcome] = await ledger.commitEnvelopes([verifiedEnvelope(f.sign(rs), CONTEXT)], { nowMs });
      expect(outcome?.status).toBe('accepted');
    };
    // meter-a: a reading every 15 minutes from 12:00 to 15:00 Bangkok on 2026-11-01, 100 Wh each.
    await commit('meter-a', Array.from({ length: 13 }, (_, i): [number, number] => [T0 + i * 15 * MIN, 1000 + i * 100]), T0 + 4 * HOUR);
    // meter-now: 500 Wh 30 hours ago (outside the default 24 h), 60 Wh two hours ago (inside).
    const now = Date.now();
    await commit('meter-now', [[now - 30 * HOUR, 1000], [now - 30 * HOUR + 10 * MIN, 1500]], now);
    await commit('meter-now', [[now - 2 * HOUR, 1500], [now - 2 * HOUR + 10 * MIN, 1560]], now);

    utilityKey = (await new ApiKeyStore(ledger.db).create('utility', 'api errors test')).key;
    const log = pino({ level: 'info' }, { write: (line: string) => void logLines.push(line) });
    app = buildApi({
      ledger,
      metrics: createMetrics(),
      log,
      enrollment: new Enrollment(ledger, { now: Date.now, mqttUrl: () => 'mqtt://unused' }),
      apiKeys: new ApiKeyStore(ledger.db),
      adminKey: ADMIN_KEY,
      codeTtlMs: 3600_000,
      onRevoke: () => undefined,
    });
    await app.ready();
  });

  afterAll(async () => {
    await app?.close();
    await ledger?.close();
    dir.remove();
  });

  describe('one error shape', () => {
    it('an unknown route: 404 not_found naming the method and path (not the query)', async () => {
      let message = expectError(await get('/api/v1/nope?secret=1', {}), 404, 'not_found');
      expect(message).toContain('GET /api/v1/nope');
      expect(message).not.toContain('secret');
      message = expectError(await app.inject({ method: 'POST', url: '/api/v2/meters', payload: { a: 1 } }), 404, 'not_found');
      expect(message).toContain('POST /api/v2/meters');
      // Too many or too few segments for any route.
      expectError(await get('/api/v1/meters/meter-a/intervals/extra'), 404, 'not_found');
      expectError(await get('/api/v1'), 404, 'not_found');
    });

    it('a method a route does not take: 405 method_not_allowed with Allow', async () => {
      let res = await app.inject({ method: 'DELETE', url: '/api/v1/meters' });
      let message = expectError(res, 405, 'method_not_allowed');
      expect(res.headers.allow).toBe('GET, HEAD');
      expect(message).toMatch(/DELETE is not allowed on \/api\/v1\/meters; it takes GET, HEAD/);
      res = await app.inject({ method: 'PUT', url: '/api/v1/meters/meter-a/intervals?from=2026-11-01' });
      expectError(res, 405, 'method_not_allowed');
      res = await app.inject({ method: 'GET', url: '/api/v1/admin/gateways/gw-api/revoke' });
      message = expectError(res, 405, 'method_not_allowed');
      expect(res.headers.allow).toBe('POST');
      expect(message).toContain('/api/v1/admin/gateways/gw-api/revoke');
    });

    it('a bad query value: 400 bad_request naming the field and the accepted forms', async () => {
      let message = expectError(await get('/api/v1/meters/meter-a/intervals?from=yesterday'), 400, 'bad_request');
      expect(message).toBe('query parameter "from" is "yesterday": expected a value like 2026-11-01, 2026-11-01T06:00:00Z or 2026-11-01T13:00:00+07:00');
      // A local time without Z or an offset is ambiguous.
      message = expectError(await get('/api/v1/markets/thailand_central/intervals?to=2026-11-01T06:00:00'), 400, 'bad_request');
      expect(message).toMatch(/^query parameter "to" is "2026-11-01T06:00:00"/);
      // The right form, but no such day.
      message = expectError(await get('/api/v1/meters/meter-a/intervals?from=2026-02-30&to=2026-03-02'), 400, 'bad_request');
      expect(message).toBe('query parameter "from" is "2026-02-30", which is not a calendar date and time');
      expectError(await get('/api/v1/meters/meter-a/intervals?from=2026-11-01T24:00:00Z'), 400, 'bad_request');
    });

    it('a body that fails its schema: 400 bad_request naming the field', async () => {
      const admin = { authorization: `Bearer ${ADMIN_KEY}` };
      let res = await app.inject({ method: 'POST', url: '/api/v1/admin/enrollment-codes', headers: admin, payload: { market: TEST_MARKET } });
      expect(expectError(res, 400, 'bad_request')).toBe('body field "owner" is missing');
      res = await app.inject({ method: 'POST', url: '/api/v1/admin/enrollment-codes', headers: admin, payload: { market: TEST_MARKET, owner: 'al ice' } });
      expect(expectError(res, 400, 'bad_request')).toMatch(/^body field "owner" must match pattern/);
      res = await app.inject({ method: 'POST', url: '/api/v1/admin/enrollment-codes', headers: admin, payload: { market: TEST_MARKET, owner: 'alice', ttlHours: 0 } });
      expect(expectError(res, 400, 'bad_request')).toBe('body field "ttlHours" must be >= 1');
      res = await app.inject({ method: 'POST', url: '/api/v1/enrollments', payload: [1, 2] });
      expect(expectError(res, 400, 'bad_request')).toBe('the body must be object');
      // An unknown market in a valid body is the route's own 404.
      res = await app.inject({ method: 'POST', url: '/api/v1/admin/enrollment-codes', headers: admin, payload: { market: 'atlantis', owner: 'alice' } });
      expect(res.statusCode).toBe(404);
      expect(Object.keys(res.json()).sort()).toEqual(['code', 'message']);
    });

    it('a malformed or empty JSON body: 400 bad_request; a body that is not JSON: 415 unsupported_media_type', async () => {
      const post = (payload: string, contentType: string) =>
        app.inject({ method: 'POST', url: '/api/v1/enrollments', headers: { 'content-type': contentType }, payload });
      expect(expectError(await post('{"code": "abc", ', 'application/json'), 400, 'bad_request')).toMatch(/not valid JSON/);
      expect(expectError(await post('', 'application/json'), 400, 'bad_request')).toMatch(/body is empty/);
      expect(expectError(await post('<code>abc</code>', 'application/xml'), 415, 'unsupported_media_type')).toMatch(/application\/json/);
    });

    it('an oversize body: 413 body_too_large, over inject and over a real socket', async () => {
      const limit = app.initialConfig.bodyLimit!;
      const big = JSON.stringify({ code: 'x'.repeat(limit) });
      let res = await app.inject({ method: 'POST', url: '/api/v1/enrollments', headers: { 'content-type': 'application/json' }, payload: big });
      expect(expectError(res, 413, 'body_too_large')).toBe(`the body is larger than ${limit} bytes, the most this API takes`);

      // Over HTTP, where the declared content-length alone is refused before the body is read.
      const listening = buildApiForSocket();
      const base = await listenApi(listening, '127.0.0.1', 0);
      try {
        const r = await fetch(`${base}/api/v1/enrollments`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: big });
        expectError({ statusCode: r.status, headers: { 'content-type': r.headers.get('content-type') }, body: await r.text() }, 413, 'body_too_large');
      } finally {
        await listening.close();
      }
    });

    it('requests Node refuses before routing (an unknown method, a broken request line) get the shape too', async () => {
      const listening = buildApiForSocket();
      const base = await listenApi(listening, '127.0.0.1', 0);
      const port = Number(new URL(base).port);
      const raw = (text: string) =>
        new Promise<string>((resolve, reject) => {
          const chunks: Buffer[] = [];
          const s = connect(port, '127.0.0.1', () => s.write(text));
          s.on('data', (c: Buffer) => chunks.push(c));
          s.on('error', reject);
          s.on('close', () => resolve(Buffer.concat(chunks).toString('utf8')));
        });
      const parse = (answer: string) => {
        const [head = '', body = ''] = answer.split('\r\n\r\n');
        const status = Number(/^HTTP\/1\.1 (\d{3})/.exec(head)?.[1]);
        const contentType = /^content-type: (.*)$/im.exec(head)?.[1] ?? '';
        return { statusCode: status, headers: { 'content-type': contentType }, body };
      };
      try {
        expectError(parse(await raw('BREW /health HTTP/1.1\r\nHost: x\r\n\r\n')), 501, 'not_implemented');
        expectError(parse(await raw('GET /health HTTP/1.1\r\nthis is no header\r\n\r\n')), 400, 'bad_request');
      } finally {
        await listening.close();
      }
    });

    it('an unknown meter: 404 unknown_meter on intervals and gaps; a known meter without readings: 200 []', async () => {
      let message = expectError(await get('/api/v1/meters/no-such-meter/intervals?from=2026-11-01&to=2026-11-02'), 404, 'unknown_meter');
      expect(message).toContain('"no-such-meter"');
      message = expectError(await get('/api/v1/meters/no-such-meter/gaps'), 404, 'unknown_meter');
      expect(message).toContain('"no-such-meter"');
      expect(await rows('/api/v1/meters/meter-idle/intervals?from=2026-11-01&to=2026-11-02')).toEqual([]);
      expect(await rows('/api/v1/meters/meter-idle/gaps')).toEqual([]);
    });

    it('an unknown market: 404 unknown_market', async () => {
      const message = expectError(await get('/api/v1/markets/atlantis/intervals?from=2026-11-01&to=2026-11-02'), 404, 'unknown_market');
      expect(message).toContain('"atlantis"');
    });

    it('a bad range: 400 bad_range for from at or after to, and for more than 31 days', async () => {
      for (const url of [
        '/api/v1/meters/meter-a/intervals?from=2026-11-02&to=2026-11-01',
        '/api/v1/meters/meter-a/intervals?from=2026-11-01&to=2026-11-01T00:00:00Z',
        // 07:00 in Bangkok is midnight UTC: the same instant.
        '/api/v1/meters/meter-a/intervals?from=2026-11-01&to=2026-11-01T07:00:00%2B07:00',
        '/api/v1/markets/thailand_central/intervals?from=2026-11-01&to=2026-10-31',
      ]) {
        expect(expectError(await get(url), 400, 'bad_range')).toMatch(/must be before to/);
      }
      expect(expectError(await get('/api/v1/meters/meter-a/intervals?from=2026-10-01&to=2026-11-01T00:00:01Z'), 400, 'bad_range')).toMatch(/at most 31 days/);
      expect(expectError(await get('/api/v1/markets/thailand_central/intervals?from=2026-10-01&to=2026-11-02'), 400, 'bad_range')).toMatch(/at most 31 days/);
      // `to` defaults to now: a `from` long ago is too wide; a `from` in the future is after `to`.
      expectError(await get('/api/v1/meters/meter-a/intervals?from=2020-01-01'), 400, 'bad_range');
      expectError(await get('/api/v1/meters/meter-a/intervals?from=2999-01-01'), 400, 'bad_range');
      // Exactly 31 days is allowed.
      expect(await rows('/api/v1/meters/meter-a/intervals?from=2026-10-02&to=2026-11-02')).toHaveLength(12);
    });

    it('an unexpected failure: 500 internal_error with a generic message; the error is logged', async () => {
      const brokenDir = tempDir('gtx-api-broken-');
      const broken = await openLedger({ sqlitePath: join(brokenDir.path, 'l.sqlite') });
      const lines: string[] = [];
      const api = buildApi({
        ledger: broken,
        metrics: createMetrics(),
        log: pino({ level: 'info' }, { write: (line: string) => void lines.push(line) }),
        enrollment: new Enrollment(broken, { now: Date.now, mqttUrl: () => 'mqtt://unused' }),
        apiKeys: new ApiKeyStore(broken.db),
        adminKey: ADMIN_KEY,
        codeTtlMs: 3600_000,
        onRevoke: () => undefined,
      });
      try {
        await api.ready();
        // The configured admin key needs no ledger lookup, so the route itself meets the closed ledger.
        await broken.close();
        const res = await api.inject({ method: 'GET', url: '/api/v1/meters', headers: { authorization: `Bearer ${ADMIN_KEY}` } });
        const message = expectError(res, 500, 'internal_error');
        expect(message).toMatch(/^the server could not answer this request; the error is in the settlement's log \(request .+\)$/);
        expect(message).not.toMatch(/database|sqlite|closed|open/i);
        const logged = lines.map((l) => JSON.parse(l) as { level: number; msg: string; err?: { message?: string }; url?: string });
        const entry = logged.find((l) => l.msg === 'API request failed');
        expect(entry).toMatchObject({ level: 50, url: '/api/v1/meters', err: { message: expect.any(String) } });
        expect(message).toContain(String((entry as { reqId?: string }).reqId));
      } finally {
        await api.close();
        brokenDir.remove();
      }
    });

    it('documents 400 and 500 in the schema of every route that validates input', async () => {
      const routes: Array<{ url: string; response?: Record<string, unknown> }> = [];
      const probe = buildApiForSocket((a) =>
        a.addHook('onRoute', (r) => void routes.push({ url: r.url, response: r.schema?.response as Record<string, unknown> | undefined })),
      );
      await probe.ready();
      await probe.close();
      const intervals = routes.find((r) => r.url === '/api/v1/meters/:meter/intervals');
      expect(Object.keys(intervals?.response ?? {}).sort()).toEqual(['200', '400', '401', '403', '404', '500']);
      for (const r of routes.filter((x) => x.response)) expect(r.response, r.url).toHaveProperty('500');
    });
  });

  describe('interval ranges: ISO-8601 dates and date-times, defaults of the last 24 hours', () => {
    it('reads a date as UTC midnight and a date-time with Z or any offset as that instant', async () => {
      const byDate = await rows('/api/v1/meters/meter-a/intervals?from=2026-11-01&to=2026-11-02');
      expect(byDate).toHaveLength(12);
      expect(byDate[0]).toMatchObject({ start: '2026-11-01T05:00:00.000Z', importWh: 100 });
      for (const q of [
        'from=2026-11-01T00:00:00Z&to=2026-11-02T00:00:00Z',
        'from=2026-11-01T00:00:00.000Z&to=2026-11-02T00:00Z',
        'from=2026-11-01T07:00:00%2B07:00&to=2026-11-02T07:00:00%2B07:00',
        // An unencoded + arrives as a space, and is read as +.
        'from=2026-11-01T07:00:00+07:00&to=2026-11-02T07:00:00+07:00',
        'from=2026-10-31T19:00:00-05:00&to=2026-11-01T19:00:00-05:00',
      ]) {
        expect(await rows(`/api/v1/meters/meter-a/intervals?${q}`), q).toEqual(byDate);
      }
      // 13:00 to 14:00 in Bangkok is 06:00 to 07:00 UTC: four quarter hours.
      const hour = await rows('/api/v1/meters/meter-a/intervals?from=2026-11-01T13:00:00%2B07:00&to=2026-11-01T14:00:00%2B07:00');
      expect(hour.map((r) => r.start)).toEqual(['06:00', '06:15', '06:30', '06:45'].map((t) => `2026-11-01T${t}:00.000Z`));
      const market = await rows('/api/v1/markets/thailand_central/intervals?from=2026-11-01T13:00:00%2B07:00&to=2026-11-01T14:00:00%2B07:00');
      expect(market.map((r) => [r.start, r.supplyWh])).toEqual(hour.map((r) => [r.start, 0]));
    });

    it('parses each accepted form to the instant it names', () => {
      expect(parseInstant('2026-11-01')).toBe(Date.UTC(2026, 10, 1));
      expect(parseInstant('2026-11-01T06:00:00Z')).toBe(Date.UTC(2026, 10, 1, 6));
      expect(parseInstant('2026-11-01T13:00:00+07:00')).toBe(Date.UTC(2026, 10, 1, 6));
      expect(parseInstant('2026-11-01T13:00:00 07:00')).toBe(Date.UTC(2026, 10, 1, 6));
      expect(parseInstant('2026-11-01T00:30:00-05:30')).toBe(Date.UTC(2026, 10, 1, 6));
      expect(parseInstant('2026-11-01T06:00:00.123456Z')).toBe(Date.UTC(2026, 10, 1, 6, 0, 0, 123));
      expect(parseInstant('2028-02-29')).toBe(Date.UTC(2028, 1, 29));
      for (const bad of ['2026-02-29', '2026-13-01', '2026-11-01T06:00:00', '2026-11-01T06:60:00Z', '2026-11-01 06:00:00Z', '20261101', '2026-11-01T06:00:00+7:00']) {
        expect(parseInstant(bad), bad).toBeUndefined();
      }
    });

    it('without from and to answers the last 24 hours; with one of them, 24 hours before to or up to now', async () => {
      const window = async (fn: () => Promise<unknown>) => {
        const before = Date.now();
        const got = await fn();
        const after = Date.now();
        return { got, before, after };
      };
      const asJson = (r: Array<{ startMs: number; importWh: number }>) => r.map((x) => [new Date(x.startMs).toISOString(), x.importWh]);

      const { got, before, after } = await window(() => rows('/api/v1/meters/meter-now/intervals'));
      const answered = (got as Array<{ start: string; importWh?: number }>).map((r) => [r.start, r.importWh]);
      // The same rows as an explicit [now − 24 h, now), for a `now` during the call.
      const candidates = await Promise.all([before, after].map(async (t) => asJson(await ledger.intervalEnergy('meter-now', t - 24 * HOUR, t))));
      expect(candidates).toContainEqual(answered);
      // The recent 60 Wh are in, the 500 Wh of 30 hours ago are not.
      expect(answered.reduce((n, [, wh]) => n + Number(wh), 0)).toBeLessThan(500);
      expect(answered.some(([, wh]) => Number(wh) >= 30)).toBe(true);
      const wider = await rows(`/api/v1/meters/meter-now/intervals?from=${new Date(Date.now() - 31 * HOUR).toISOString()}`);
      expect(wider.reduce((n, r) => n + (r.importWh ?? 0), 0)).toBe(560);

      // The market route has the same defaults.
      const m = await window(() => rows('/api/v1/markets/thailand_central/intervals'));
      const marketRows = (m.got as Array<{ start: string; demandWh?: number }>).map((r) => [r.start, r.demandWh]);
      const marketCandidates = await Promise.all(
        [m.before, m.after].map(async (t) => (await ledger.marketIntervals(TEST_MARKET, t - 24 * HOUR, t)).map((x) => [new Date(x.startMs).toISOString(), x.demandWh])),
      );
      expect(marketCandidates).toContainEqual(marketRows);

      // Only `to`: the 24 hours before it.
      const day = await rows('/api/v1/meters/meter-a/intervals?to=2026-11-02');
      expect(day).toEqual(await rows('/api/v1/meters/meter-a/intervals?from=2026-11-01&to=2026-11-02'));
      expect(await rows('/api/v1/meters/meter-a/intervals?to=2026-11-01T06:00:00Z')).toHaveLength(4);
      // Only `from`: up to now.
      const recent = await rows(`/api/v1/meters/meter-now/intervals?from=${new Date(Date.now() - 3 * HOUR).toISOString()}`);
      expect(recent.reduce((n, r) => n + (r.importWh ?? 0), 0)).toBe(60);
    });
  });

  /** Another API over the same ledger, for tests that listen on a socket or watch routes being added. */
  function buildApiForSocket(before?: (app: FastifyInstance) => void): FastifyInstance {
    const a = buildApi({
      ledger,
      metrics: createMetrics(),
      log: testLog('api'),
      enrollment: new Enrollment(ledger, { now: Date.now, mqttUrl: () => 'mqtt://unused' }),
      apiKeys: new ApiKeyStore(ledger.db),
      adminKey: ADMIN_KEY,
      codeTtlMs: 3600_000,
      onRevoke: () => undefined,
    });
    before?.(a);
    return a;
  }
});
