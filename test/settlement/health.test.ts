import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import mqtt from 'mqtt';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { encodeEnvelope, topics } from '../../protocol/index.ts';
import { upsertPasswordFile, writeMosquittoFiles } from '../../settlement/broker/mosquitto.ts';
import { startSettlement, type Settlement } from '../../settlement/main.ts';
import { mosquittoUser, startMosquitto, type MosquittoProcess } from '../support/mosquitto.ts';
import { EnvelopeFactory } from '../support/envelopes.ts';
import { freePort } from '../support/ports.ts';
import { enrollTestGateway } from '../support/registry.ts';
import { findBinary, requireOrSkip } from '../support/services.ts';
import { jobCheck } from '../../settlement/api/routes/health.ts';
import { settlementConfig, startTestSettlement, testLog } from '../support/stack.ts';
import { tempDir } from '../support/tmp.ts';
import { waitFor } from '../support/wait.ts';

/**
 * GET /health (liveness, from memory) and GET /health/ready (broker, writer, ledger required;
 * InfluxDB and the market services' jobs shown) on a real settlement.
 */

type CheckName = 'broker' | 'writer' | 'ledger' | 'influxdb' | 'pricingService' | 'auctionScheduler' | 'governanceServices';
interface CheckBody {
  status: 'ok' | 'down' | 'off';
  lastSuccess: string | null;
  lastError: string | null;
  [k: string]: unknown;
}
interface ReadyBody {
  status: 'ready' | 'not_ready';
  checks: Record<CheckName, CheckBody>;
}

const MOSQUITTO = findBinary('mosquitto');
/** Waits that span a few of the settlement's reconnect backoff steps (1 s, 2 s, 4 s …). */
const BACKOFF_WAIT_MS = 40_000;

async function ready(s: Settlement): Promise<{ code: number; body: ReadyBody }> {
  const res = await fetch(`${s.httpUrl}/health/ready`);
  return { code: res.status, body: (await res.json()) as ReadyBody };
}

/** Polls /health/ready until `want` holds for its answer. */
function readyWhen(s: Settlement, want: (r: { code: number; body: ReadyBody }) => boolean, what: string, timeoutMs?: number) {
  return waitFor(async () => {
    const r = await ready(s);
    return want(r) ? r : undefined;
  }, what, timeoutMs);
}

describe('health and readiness', () => {
  const dirs: Array<ReturnType<typeof tempDir>> = [];
  const running: Settlement[] = [];
  const mosquittos: MosquittoProcess[] = [];
  const dir = () => {
    const d = tempDir('gtx-health-');
    dirs.push(d);
    return d.path;
  };

  afterEach(async () => {
    for (const s of running.splice(0)) await s.stop();
    for (const m of mosquittos.splice(0)) await m.stop();
  });
  afterAll(() => {
    for (const d of dirs) d.remove();
  });

  it('is ready with the embedded broker; /health answers from memory, without the ledger', async () => {
    const s = await startTestSettlement(dir());
    running.push(s);
    const { code, body } = await ready(s);
    expect(code).toBe(200);
    expect(body.status).toBe('ready');
    expect(body.checks.broker).toMatchObject({ status: 'ok', connected: true, subscribed: true, lastError: null });
    expect(Date.parse(body.checks.broker.lastSuccess!)).toBeGreaterThan(0);
    expect(body.checks.writer).toMatchObject({ status: 'ok', restarts: 0 });
    expect(body.checks.ledger).toMatchObject({ status: 'ok', engine: 'sqlite', lastError: null });
    expect(Date.parse(body.checks.ledger.lastSuccess!)).toBeGreaterThan(0);
    expect(body.checks.influxdb).toMatchObject({ status: 'off', configured: false, lastSuccess: null, backlog: 0 });
    // Which checks decide the answer, in the answer itself.
    expect(Object.fromEntries(Object.entries(body.checks).map(([k, c]) => [k, c.required]))).toEqual({
      broker: true,
      writer: true,
      ledger: true,
      influxdb: false,
      pricingService: false,
      auctionScheduler: false,
      governanceServices: false,
    });
    // The market services: the first price is computed at start; the others have not had their turn yet.
    const priced = await readyWhen(s, (r) => r.body.checks.pricingService.lastSuccess !== null, 'the first price signal in the pricing check');
    expect(priced.body.checks.pricingService).toMatchObject({
      status: 'ok',
      lastError: null,
      everyS: 300,
      markets: [{ market: 'thailand_central', status: 'ok', lastSuccess: priced.body.checks.pricingService.lastSuccess, lastError: null }],
    });
    expect(body.checks.auctionScheduler).toMatchObject({ status: 'ok', lastSuccess: null, lastError: null, everyS: 30 });
    expect(body.checks.governanceServices).toMatchObject({ status: 'ok', lastSuccess: null, lastError: null, everyS: 60 });

    // Liveness must cost no ledger work: a counting ledger would fail the request.
    const ledger = s.ledger as { counts: () => Promise<unknown>; meters: () => Promise<unknown> };
    const [counts, meters] = [ledger.counts, ledger.meters];
    let ledgerCalls = 0;
    ledger.counts = () => (ledgerCalls++, counts.call(s.ledger));
    ledger.meters = () => (ledgerCalls++, meters.call(s.ledger));
    for (let i = 0; i < 20; i++) {
      const res = await fetch(`${s.httpUrl}/health`);
      expect(res.status).toBe(200);
      expect(await res.json()).toEqual({ status: 'ok', ledger: 'sqlite' });
    }
    expect((await ready(s)).code).toBe(200);
    expect(ledgerCalls).toBe(0);
    ledger.counts = counts;
    ledger.meters = meters;

    // The new gauges are on /metrics.
    const metrics = await (await fetch(`${s.httpUrl}/metrics`)).text();
    expect(metrics).toMatch(/^gtx_intake_queued_envelopes 0$/m);
    expect(metrics).toMatch(/^gtx_rejection_samples_dropped_total 0$/m);
    expect(metrics).toMatch(/^gtx_ledger_writer_restarts_total 0$/m);
  });

  it('is not ready while the ledger does not answer, and says why', async () => {
    const s = await startTestSettlement(dir());
    running.push(s);
    // The API's connection to the ledger is gone (what a vanished file or a dead pool looks like).
    await s.ledger.close();
    const { code, body } = await ready(s);
    expect(code).toBe(503);
    expect(body.status).toBe('not_ready');
    expect(body.checks.ledger.status).toBe('down');
    expect(body.checks.ledger.lastError).toMatch(/not open/i);
    expect(body.checks.broker.status).toBe('ok');
    // Liveness is about the process, not its parts.
    expect((await fetch(`${s.httpUrl}/health`)).status).toBe(200);
  });

  it('shows failing market services as down, stays ready, and shows them recover', async () => {
    const cfg = settlementConfig(dir());
    const s = await startSettlement(cfg, { log: testLog('settlement') });
    running.push(s);
    await readyWhen(s, (r) => r.body.checks.pricingService.lastSuccess !== null, 'the first price signal');
    // Behind the settlement's back, the tables the jobs need go away (what a broken migration or a bug looks like).
    const other = new Database(cfg.ledger.sqlitePath);
    try {
      other.exec('ALTER TABLE price_signals RENAME TO price_signals_away; ALTER TABLE proposals RENAME TO proposals_away; ALTER TABLE orders RENAME TO orders_away');
      await s.pricing[0]!.runOnce();
      await s.jobs.governance.runOnce();
      await s.jobs.auctions.runOnce();
      const { code, body } = await ready(s);
      // Shown, not required: the API stays in service (orders can still be cancelled, trades read).
      expect(code).toBe(200);
      expect(body.status).toBe('ready');
      expect(body.checks.pricingService).toMatchObject({ status: 'down', lastError: expect.stringMatching(/price_signals/) });
      expect(body.checks.pricingService.markets).toEqual([expect.objectContaining({ market: 'thailand_central', status: 'down', lastError: expect.stringMatching(/price_signals/) })]);
      expect(body.checks.governanceServices).toMatchObject({ status: 'down', lastSuccess: null, lastError: expect.stringMatching(/proposals/) });
      // While the market is open the auction reads the price first, otherwise the order book.
      expect(body.checks.auctionScheduler).toMatchObject({ status: 'down', lastSuccess: null, lastError: expect.stringMatching(/no such table: (price_signals|orders)/) });

      other.exec('ALTER TABLE price_signals_away RENAME TO price_signals; ALTER TABLE proposals_away RENAME TO proposals; ALTER TABLE orders_away RENAME TO orders');
      await s.pricing[0]!.runOnce();
      await s.jobs.governance.runOnce();
      await s.jobs.auctions.runOnce();
      const up = await ready(s);
      expect(up.body.checks.pricingService.status).toBe('ok');
      expect(up.body.checks.governanceServices.status).toBe('ok');
      expect(up.body.checks.auctionScheduler.status).toBe('ok');
      expect(Date.parse(up.body.checks.governanceServices.lastSuccess!)).toBeGreaterThan(0);
      // The latest error stays in view after the recovery, like the other checks'.
      expect(up.body.checks.governanceServices.lastError).toMatch(/proposals/);
    } finally {
      other.close();
    }
  });

  it('counts a job as down when it has not succeeded for two periods and a minute, and off when not started', () => {
    const job = { name: 'auctions', started: true, everyMs: 30_000, lastSuccessAtMs: Date.parse('2026-11-01T08:00:00Z'), failing: false, lastError: null };
    expect(jobCheck({ ...job, sinceSuccessMs: 119_000 })).toMatchObject({ status: 'ok', lastError: null, everyS: 30 });
    expect(jobCheck({ ...job, sinceSuccessMs: 121_000 })).toEqual({
      status: 'down',
      lastSuccess: '2026-11-01T08:00:00.000Z',
      lastError: 'no successful run for 121 s; it runs every 30 s',
      required: false,
      everyS: 30,
    });
    expect(jobCheck({ ...job, started: false, sinceSuccessMs: null })).toMatchObject({ status: 'off', everyS: null });
    expect(jobCheck(undefined)).toMatchObject({ status: 'off', lastSuccess: null, lastError: null });
  });

  it('is not ready while the ledger writer is stalled, and ready again once it answers', async () => {
    const cfg = settlementConfig(dir());
    cfg.ingest.commitTimeoutMs = 300;
    const s = await startSettlement(cfg, { log: testLog('settlement') });
    running.push(s);
    const factory = new EnvelopeFactory('gw-health');
    await enrollTestGateway(s.ledger, 'gw-health', factory.publicKeyPem, ['m-health']);
    expect((await ready(s)).code).toBe(200);

    // Another connection holds the write lock: the next commit waits past the watchdog's 300 ms.
    const holder = new Database(cfg.ledger.sqlitePath);
    holder.exec('BEGIN IMMEDIATE');
    const gw = await mqtt.connectAsync(s.brokerUrl, { clientId: 'health-gw' });
    try {
      await gw.publishAsync(topics.readings('gw-health'), encodeEnvelope(factory.next('m-health')), { qos: 1 });
      const down = await readyWhen(s, (r) => r.code === 503, 'readiness to drop while the writer is stalled');
      expect(down.body.status).toBe('not_ready');
      expect(down.body.checks.writer.status).toBe('down');
      expect(down.body.checks.writer.lastError).toMatch(/did not finish a commit of 1 envelope\(s\) within 300 ms/);
      expect(down.body.checks.broker.status).toBe('ok');
      expect(down.body.checks.ledger.status).toBe('ok');
      expect((await fetch(`${s.httpUrl}/health`)).status).toBe(200);

      holder.exec('ROLLBACK');
      const up = await readyWhen(s, (r) => r.code === 200, 'readiness once the writer answers again');
      expect(up.body.checks.writer.status).toBe('ok');
      // The stalled commit finished once the lock was free.
      expect((await s.ledger.readings('m-health')).map((r) => r.seq)).toEqual([1]);
    } finally {
      if (holder.inTransaction) holder.exec('ROLLBACK');
      holder.close();
      await gw.endAsync();
    }
  });

  it('is not ready while an external broker is unreachable', async () => {
    const cfg = settlementConfig(dir());
    // Nothing listens there.
    cfg.mqtt = { mode: 'external', url: `mqtt://127.0.0.1:${await freePort()}`, clientId: 'gtx-settlement-health-closed' };
    const s = await startSettlement(cfg, { log: testLog('settlement') });
    running.push(s);
    const r = await readyWhen(s, (x) => /ECONNREFUSED/.test(x.body.checks.broker.lastError ?? ''), 'the refused connection in the broker check');
    expect(r.code).toBe(503);
    expect(r.body.status).toBe('not_ready');
    expect(r.body.checks.broker).toMatchObject({ status: 'down', connected: false, subscribed: false, lastSuccess: null });
    expect(r.body.checks.writer.status).toBe('ok');
    expect(r.body.checks.ledger.status).toBe('ok');
  });

  it.skipIf(requireOrSkip('readiness against a real Mosquitto', !!MOSQUITTO, 'no mosquitto binary (Debian package "mosquitto")'))(
    'is not ready while Mosquitto refuses the login, and becomes ready once the password file is fixed',
    async () => {
      const d = dir();
      const port = await freePort();
      const files = writeMosquittoFiles({ dir: join(d, 'mosquitto'), port, host: '127.0.0.1', user: mosquittoUser() });
      const password = 'not-in-the-password-file-yet';
      const cfg = settlementConfig(d);
      cfg.mqtt = { mode: 'external', url: `mqtt://127.0.0.1:${port}`, clientId: 'gtx-settlement-health', username: 'gtx-settlement', password };
      const m = await startMosquitto(MOSQUITTO!, files.conf, port);
      mosquittos.push(m);
      const s = await startSettlement(cfg, { log: testLog('settlement') });
      running.push(s);

      const refused = await readyWhen(s, (x) => /CONNACK 5/.test(x.body.checks.broker.lastError ?? ''), 'the refused login in the broker check', BACKOFF_WAIT_MS);
      expect(refused.code).toBe(503);
      expect(refused.body.checks.broker).toMatchObject({ status: 'down', connected: false, lastSuccess: null });
      expect(refused.body.checks.broker.lastError).toMatch(/login refused by the broker/);

      writeFileSync(files.passwd, upsertPasswordFile(readFileSync(files.passwd, 'utf8'), [{ username: 'gtx-settlement', secret: password }]));
      m.reload();
      const up = await readyWhen(s, (x) => x.code === 200, 'readiness once the login is accepted', BACKOFF_WAIT_MS);
      expect(up.body.status).toBe('ready');
      expect(up.body.checks.broker).toMatchObject({ status: 'ok', connected: true, subscribed: true, lastError: null });
      expect(Date.parse(up.body.checks.broker.lastSuccess!)).toBeGreaterThan(0);
    },
    90_000,
  );
});
