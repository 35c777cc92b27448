import { randomBytes } from 'node:crypto';
import { createServer, type Server, type Socket } from 'node:net';
import { InfluxDB } from 'influx';
import { pino } from 'pino';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { InfluxSink, type SinkReading } from '../../settlement/timeseries/influx-sink.ts';
import { hasInfluxd, influxUrl, startInfluxd, type InfluxdServer } from '../support/influxd.ts';
import { freePort } from '../support/ports.ts';
import { requireOrSkip } from '../support/services.ts';
import { waitFor } from '../support/wait.ts';

const url = await influxUrl();
const skipAll = requireOrSkip(
  'InfluxDB sink tests',
  url !== undefined,
  'no InfluxDB: GTX_INFLUX_URL is unset or does not answer /ping, and there is no influxd on PATH (Debian package influxdb)',
);
// Outages are real: these tests stop and restart an influxd of their own on the same port.
const skipOutage =
  skipAll || requireOrSkip('InfluxDB outage tests', hasInfluxd(), 'no influxd on PATH to stop and restart (Debian package influxdb)');

/** A logger whose lines the test can read. */
function captureLog(): { log: pino.Logger; lines: Array<{ level: number; msg: string }> } {
  const lines: Array<{ level: number; msg: string }> = [];
  const log = pino({ level: 'debug' }, { write: (s: string) => void lines.push(JSON.parse(s)) });
  return { log, lines };
}

const T0 = Date.UTC(2026, 10, 25, 10, 0, 0);

function readings(n: number, from = 0, meter = 'm-1'): SinkReading[] {
  return Array.from({ length: n }, (_, k) => {
    const i = from + k;
    return { meter, gateway: 'gw-1', tsMs: T0 + i * 1000, importWh: 1_000_000 + i, exportWh: i, powerW: 500 };
  });
}

const freshDb = () => `gtx_test_${randomBytes(5).toString('hex')}`;

/** Rows of an InfluxQL query as objects, times as ms epoch numbers. */
async function query(serverUrl: string, database: string, q: string): Promise<Array<Record<string, unknown>>> {
  const u = new URL(serverUrl);
  const client = new InfluxDB({ host: u.hostname, port: Number(u.port), database });
  const raw = await client.queryRaw(q, { precision: 'ms' });
  const out: Array<Record<string, unknown>> = [];
  for (const result of raw.results as Array<{ error?: string; series?: Array<{ columns: string[]; values: unknown[][]; tags?: Record<string, string> }> }>) {
    if (result.error) throw new Error(result.error);
    for (const s of result.series ?? []) {
      for (const v of s.values) out.push({ ...s.tags, ...Object.fromEntries(s.columns.map((c, i) => [c, v[i]])) });
    }
  }
  return out;
}

async function dropDatabase(serverUrl: string, database: string): Promise<void> {
  const u = new URL(serverUrl);
  await new InfluxDB({ host: u.hostname, port: Number(u.port) }).dropDatabase(database).catch(() => undefined);
}

const sinks: InfluxSink[] = [];
const dbs: Array<{ url: string; db: string }> = [];
function sink(opts: Partial<ConstructorParameters<typeof InfluxSink>[0]> & { url: string }): InfluxSink {
  const database = opts.database ?? freshDb();
  dbs.push({ url: opts.url, db: database });
  const s = new InfluxSink({ log: pino({ level: 'silent' }), ...opts, database });
  sinks.push(s);
  return s;
}

afterEach(async () => {
  await Promise.all(sinks.splice(0).map((s) => s.stop()));
});

describe.skipIf(skipAll)('InfluxSink against a real InfluxDB', { timeout: 30_000 }, () => {
  afterAll(async () => {
    for (const { url: u, db } of dbs.splice(0)) await dropDatabase(u, db);
  });

  it('writes price signals, auctions and certificates: integer prices in minor units per kWh, integer Wh', async () => {
    const db = freshDb();
    const s = sink({ url: url!, database: db, flushIntervalMs: 50 });
    await s.start();
    s.price({ market: 'thailand_central', currency: 'THB', computedAtMs: T0, priceMinorPerKwh: 412n, ratio: 0.8 });
    // Beyond 2^53 a bigint price cannot be an exact InfluxDB integer here: the field is left out, not rounded.
    s.price({ market: 'thailand_central', currency: 'THB', computedAtMs: T0 + 1, priceMinorPerKwh: 2n ** 60n, ratio: 1 });
    const auction = { market: 'thailand_central', currency: 'THB', trades: 1, orders: 2 };
    s.auction({ ...auction, auctionId: 'auc_1', deliveryStartMs: T0 + 900_000, clearingPriceMinorPerKwh: 400n, volumeWh: 1_500 });
    s.auction({ ...auction, auctionId: 'auc_2', deliveryStartMs: T0 + 1_800_000, clearingPriceMinorPerKwh: null, volumeWh: 0, trades: 0 });
    // One minting run issues several certificates in the same millisecond: each stays a point.
    for (const [i, source] of ['Solar', 'Solar', 'Wind'].entries()) {
      s.certificate({ market: 'thailand_central', source, certificate: `rec_${i}`, meter: `pv-${i}`, issuedAtMs: T0 + 7, volumeWh: 1_000 + i });
    }
    await waitFor(() => s.stats().backlog === 0 && s.stats().written === 7, 'all points written');
    expect(s.stats()).toMatchObject({ failedWrites: 0, dropped: 0 });

    expect(await query(url!, db, 'SELECT * FROM market_price ORDER BY time')).toEqual([
      { time: T0, market: 'thailand_central', currency: 'THB', price_minor_per_kwh: 412, ratio: 0.8 },
      { time: T0 + 1, market: 'thailand_central', currency: 'THB', price_minor_per_kwh: null, ratio: 1 },
    ]);
    expect(await query(url!, db, 'SELECT * FROM auctions ORDER BY time')).toEqual([
      { time: T0 + 900_000, market: 'thailand_central', currency: 'THB', crossed: 'true', auction_id: 'auc_1', clearing_price_minor_per_kwh: 400, volume_wh: 1_500, trades: 1, orders: 2 },
      { time: T0 + 1_800_000, market: 'thailand_central', currency: 'THB', crossed: 'false', auction_id: 'auc_2', clearing_price_minor_per_kwh: null, volume_wh: 0, trades: 0, orders: 2 },
    ]);
    const certs = await query(url!, db, 'SELECT sum("count") AS n, sum(volume_wh) AS wh FROM certificates GROUP BY source');
    expect(certs.map(({ source, n, wh }) => ({ source, n, wh }))).toEqual([
      { source: 'Solar', n: 2, wh: 2_001 },
      { source: 'Wind', n: 1, wh: 1_002 },
    ]);
    const types = Object.fromEntries((await query(url!, db, 'SHOW FIELD KEYS')).map((r) => [`${String(r.fieldKey)}`, r.fieldType]));
    expect(types).toMatchObject({
      price_minor_per_kwh: 'integer',
      ratio: 'float',
      clearing_price_minor_per_kwh: 'integer',
      volume_wh: 'integer',
      trades: 'integer',
      orders: 'integer',
      auction_id: 'string',
      certificate: 'string',
      meter: 'string',
      count: 'integer',
    });
  });

  it('writes readings, rejections and market intervals with their tags, integer fields and timestamps', async () => {
    const db = freshDb();
    const s = sink({ url: url!, database: db, flushIntervalMs: 50 });
    await s.start();
    s.readingsVerified([
      {
        meter: 'home-1-main',
        gateway: 'gw-home-1',
        market: 'thailand_central',
        model: 'sdm630',
        role: 'prosumer',
        tsMs: T0,
        importWh: 1_234_567,
        exportWh: 89,
        powerW: -420,
        voltageMilliV: 230_100,
        currentMilliA: 1_826,
        frequencyMilliHz: 50_010,
      },
      { meter: 'home-2-main', gateway: 'gw-home-2', tsMs: T0 + 1_500, importWh: 7, exportWh: 0, powerW: 12 },
    ]);
    // Three refusals of one kind in the same millisecond stay three points.
    for (let i = 0; i < 3; i++) s.rejection({ tsMs: T0 + 5, gateway: 'gw-home-1', reason: 'bad_signature', bytes: 300 + i });
    s.rejection({ tsMs: T0 + 5, gateway: null, reason: 'invalid_json', bytes: 17 });
    s.rejection({ tsMs: T0 + 6, gateway: 'evil\ngw,x=1 y', reason: 'unknown_gateway', bytes: 10 });
    s.marketInterval({ market: 'thailand_central', intervalStartMs: T0, supplyWh: 4_200, demandWh: 5_100 });

    await waitFor(() => s.stats().backlog === 0 && s.stats().written === 8, 'all points written');
    expect(s.stats()).toMatchObject({ backlog: 0, written: 8, failedWrites: 0, dropped: 0 });

    const rows = await query(url!, db, 'SELECT * FROM readings ORDER BY time');
    expect(rows).toEqual([
      {
        time: T0,
        meter: 'home-1-main',
        gateway: 'gw-home-1',
        market: 'thailand_central',
        model: 'sdm630',
        role: 'prosumer',
        import_wh: 1_234_567,
        export_wh: 89,
        power_w: -420,
        voltage_v: 230.1,
        current_a: 1.826,
        frequency_hz: 50.01,
      },
      {
        time: T0 + 1_500,
        meter: 'home-2-main',
        gateway: 'gw-home-2',
        market: null,
        model: null,
        role: null,
        import_wh: 7,
        export_wh: 0,
        power_w: 12,
        voltage_v: null,
        current_a: null,
        frequency_hz: null,
      },
    ]);
    // Undefined tags are omitted, not written as empty values.
    const series = await query(url!, db, 'SHOW SERIES FROM readings');
    expect(series.map((r) => r.key).sort()).toEqual([
      'readings,gateway=gw-home-1,market=thailand_central,meter=home-1-main,model=sdm630,role=prosumer',
      'readings,gateway=gw-home-2,meter=home-2-main',
    ]);

    const types = Object.fromEntries(
      (await query(url!, db, 'SHOW FIELD KEYS')).map((r) => [r.fieldKey, r.fieldType]),
    );
    expect(types).toEqual({
      import_wh: 'integer',
      export_wh: 'integer',
      power_w: 'float',
      voltage_v: 'float',
      current_a: 'float',
      frequency_hz: 'float',
      count: 'integer',
      bytes: 'integer',
      supply_wh: 'integer',
      demand_wh: 'integer',
    });

    const rejections = await query(url!, db, 'SELECT sum("count") AS n, sum(bytes) AS bytes FROM rejections GROUP BY reason, gateway');
    expect(rejections.map(({ reason, gateway, n, bytes }) => ({ reason, gateway, n, bytes })).sort((a, b) => String(a.reason).localeCompare(String(b.reason)))).toEqual([
      { reason: 'bad_signature', gateway: 'gw-home-1', n: 3, bytes: 903 },
      { reason: 'invalid_json', gateway: '', n: 1, bytes: 17 },
      // An id no gateway could have (it came from a topic) is not turned into a series of its own.
      { reason: 'unknown_gateway', gateway: '_invalid', n: 1, bytes: 10 },
    ]);
    const rejTimes = await query(url!, db, `SELECT "count" FROM rejections WHERE reason = 'bad_signature'`);
    expect(rejTimes.map((r) => r.time)).toEqual([T0 + 5, T0 + 5, T0 + 5]);

    expect(await query(url!, db, 'SELECT * FROM market_interval')).toEqual([
      { time: T0, market: 'thailand_central', supply_wh: 4_200, demand_wh: 5_100 },
    ]);
  });

  it('sends many points in few write requests: a full batch at once, the rest on the interval', async () => {
    const db = freshDb();
    const s = sink({ url: url!, database: db, flushIntervalMs: 60_000, maxBatchPoints: 5_000 });
    await s.start();
    // 12 000 readings arriving as envelopes of 100.
    for (let i = 0; i < 120; i++) s.readingsVerified(readings(100, i * 100));
    expect(s.stats().backlog).toBeGreaterThan(0); // nothing is written inside the record call

    // Two full batches go out without waiting for the (one minute) interval.
    await waitFor(() => s.stats().written === 10_000, 'two full batches');
    expect(s.stats()).toMatchObject({ written: 10_000, batchesWritten: 2, backlog: 2_000 });

    await s.flush();
    expect(s.stats()).toMatchObject({ written: 12_000, batchesWritten: 3, backlog: 0, failedWrites: 0 });
    const [row] = await query(url!, db, 'SELECT count(import_wh) AS n, min(import_wh) AS lo, max(import_wh) AS hi FROM readings');
    expect(row).toMatchObject({ n: 12_000, lo: 1_000_000, hi: 1_011_999 });
  });

  it('flushes on the interval', async () => {
    const db = freshDb();
    const s = sink({ url: url!, database: db, flushIntervalMs: 100 });
    await s.start();
    s.readingsVerified(readings(3));
    await waitFor(() => s.stats().written === 3, 'the interval flush');
    expect(s.stats().batchesWritten).toBe(1);
  });

  it('does not retry forever what InfluxDB refuses: the rest of the batch is stored, the refused points counted', async () => {
    const db = freshDb();
    const u = new URL(url!);
    const client = new InfluxDB({ host: u.hostname, port: Number(u.port), database: db });
    await client.createDatabase(db);
    // Someone wrote supply_wh as a float before: the sink's integer is a field type conflict.
    await client.writePoints([{ measurement: 'market_interval', tags: { market: 'm' }, fields: { supply_wh: 1.5 }, timestamp: T0 - 60_000 }], { precision: 'ms' });

    const s = sink({ url: url!, database: db, flushIntervalMs: 50 });
    await s.start();
    s.readingsVerified(readings(3));
    s.marketInterval({ market: 'm', intervalStartMs: T0, supplyWh: 10, demandWh: 20 });
    await waitFor(() => s.stats().failedWrites === 1 && s.stats().backlog === 0, 'the refused batch to be settled');
    expect(s.stats()).toMatchObject({ written: 3, dropped: 1, failedWrites: 1 });
    expect(s.stats().lastError).toContain('field type conflict');
    // What comes next is not held up behind it.
    s.readingsVerified(readings(2, 3));
    await waitFor(() => s.stats().written === 5, 'the next batch');
    const [row] = await query(url!, db, 'SELECT count(import_wh) AS n FROM readings');
    expect(row?.n).toBe(5);
  });

  it('creates the database again when InfluxDB lost it', async () => {
    const db = freshDb();
    const s = sink({ url: url!, database: db, flushIntervalMs: 50 });
    await s.start();
    s.readingsVerified(readings(2));
    await waitFor(() => s.stats().written === 2, 'first points');
    await dropDatabase(url!, db);
    s.readingsVerified(readings(2, 2));
    await waitFor(() => s.stats().written === 4, 'points after the database was recreated');
    expect(s.stats().failedWrites).toBe(1); // the one write that met "database not found"
    const [row] = await query(url!, db, 'SELECT count(import_wh) AS n FROM readings');
    expect(row?.n).toBe(2);
  });
});

describe.skipIf(skipOutage)('InfluxSink through a real InfluxDB outage', { timeout: 60_000 }, () => {
  let server: InfluxdServer;

  beforeAll(async () => {
    server = await startInfluxd();
  });
  afterAll(async () => {
    await Promise.all(sinks.splice(0).map((s) => s.stop()));
    await server?.close();
  });
  afterEach(async () => {
    if (!server.running) await server.start();
  });

  it('keeps points while InfluxDB is down and writes each of them once, in order, when it is back', async () => {
    const db = freshDb();
    const { log, lines } = captureLog();
    const s = sink({ url: server.url, database: db, flushIntervalMs: 100, maxBatchPoints: 500, log });
    await s.start();
    s.readingsVerified(readings(1_000));
    await waitFor(() => s.stats().written === 1_000, 'points before the outage');
    expect(s.stats().batchesWritten).toBe(2);

    await server.stop();
    // The ledger goes on; recording must neither throw nor wait.
    s.marketInterval({ market: 'thailand_central', intervalStartMs: T0, supplyWh: 1, demandWh: 1 });
    for (let i = 0; i < 30; i++) s.readingsVerified(readings(100, 1_000 + i * 100));
    // The same interval recomputed later: written after the first one, it must win.
    s.marketInterval({ market: 'thailand_central', intervalStartMs: T0, supplyWh: 2, demandWh: 3 });
    await waitFor(() => s.stats().failedWrites >= 3, 'a few failed attempts');
    expect(s.stats()).toMatchObject({ backlog: 3_002, written: 1_000, dropped: 0 });
    expect(s.stats().lastError).toBeTruthy();
    expect(lines.filter((l) => l.msg.startsWith('InfluxDB write failed')).length).toBe(1); // once per outage

    await server.start();
    await waitFor(() => s.stats().backlog === 0, 'the backlog to drain after InfluxDB is back', 20_000);
    // 3 002 points in batches of 500: 7 more requests, none sent twice.
    expect(s.stats()).toMatchObject({ written: 4_002, batchesWritten: 9, dropped: 0, backlog: 0 });
    expect(lines.some((l) => l.msg === 'InfluxDB writes resumed')).toBe(true);

    const [row] = await query(server.url, db, 'SELECT count(import_wh) AS n, min(import_wh) AS lo, max(import_wh) AS hi FROM readings');
    expect(row).toMatchObject({ n: 4_000, lo: 1_000_000, hi: 1_003_999 });
    expect(await query(server.url, db, 'SELECT supply_wh, demand_wh FROM market_interval')).toEqual([{ time: T0, supply_wh: 2, demand_wh: 3 }]);
  });

  it('bounds the backlog: drops the oldest points, counts them and warns once', async () => {
    await server.stop();
    const db = freshDb();
    const { log, lines } = captureLog();
    const s = sink({ url: server.url, database: db, flushIntervalMs: 50, maxBatchPoints: 40, maxBacklogPoints: 100, log });
    await s.start(); // InfluxDB is down: start() neither throws nor waits for it
    await waitFor(() => s.stats().failedWrites >= 1, 'the first failed attempt');
    for (let i = 0; i < 25; i++) s.readingsVerified(readings(10, i * 10));
    expect(s.stats()).toMatchObject({ backlog: 100, dropped: 150, written: 0 });
    expect(lines.filter((l) => l.msg.startsWith('influx backlog full')).length).toBe(1);

    await server.start();
    await waitFor(() => s.stats().backlog === 0, 'the backlog to drain', 20_000);
    expect(s.stats()).toMatchObject({ written: 100, dropped: 150 });
    const [row] = await query(server.url, db, 'SELECT count(import_wh) AS n, min(import_wh) AS lo, max(import_wh) AS hi FROM readings');
    // The newest 100 of 250 survived.
    expect(row).toMatchObject({ n: 100, lo: 1_000_150, hi: 1_000_249 });
  });

  it('stop() returns promptly when InfluxDB is down, keeping nothing running', async () => {
    await server.stop();
    const s = sink({ url: server.url, flushIntervalMs: 50 });
    await s.start();
    s.readingsVerified(readings(10));
    const t = Date.now();
    await s.stop();
    expect(Date.now() - t).toBeLessThan(1_000);
    expect(s.stats().backlog).toBe(10);
    s.readingsVerified(readings(1, 10)); // after stop: ignored, no throw
    expect(s.stats().backlog).toBe(10);
  });
});

// Needs no InfluxDB: a TCP server that never answers stands for a hung one.
describe('InfluxSink against an InfluxDB that accepts connections and never answers', { timeout: 20_000 }, () => {
  let hung: Server;
  const sockets = new Set<Socket>();
  let hungUrl: string;

  beforeAll(async () => {
    hung = createServer((sock) => {
      sockets.add(sock);
      sock.resume(); // read, so that the client's close is seen
      sock.on('close', () => sockets.delete(sock));
      sock.on('error', () => undefined);
    });
    const port = await freePort();
    await new Promise<void>((resolve) => hung.listen(port, '127.0.0.1', resolve));
    hungUrl = `http://127.0.0.1:${port}`;
  });
  afterAll(async () => {
    for (const sock of sockets) sock.destroy();
    await new Promise((r) => hung.close(r));
  });

  it('start() and stop() are bounded and stop() closes the hanging connection', async () => {
    const s = sink({ url: hungUrl, flushIntervalMs: 50, stopTimeoutMs: 300 });
    let t = Date.now();
    await s.start();
    expect(Date.now() - t).toBeLessThan(1_500);
    s.readingsVerified(readings(5));
    await waitFor(() => sockets.size > 0, 'a connection to the hung server');
    t = Date.now();
    await s.stop();
    expect(Date.now() - t).toBeLessThan(1_500);
    expect(s.stats().backlog).toBe(5);
    await waitFor(() => sockets.size === 0, 'the sink to close its connection', 3_000);
  });
});
