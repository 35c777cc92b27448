import { randomBytes } from 'node:crypto';
import mqtt, { type MqttClient } from 'mqtt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { encodeEnvelope, envelopeIdOf, signedBytes, topics, type Envelope } from '../../protocol/index.ts';
import { startSettlement, type Settlement } from '../../settlement/main.ts';
import { EnvelopeFactory } from '../support/envelopes.ts';
import { enrollTestGateway } from '../support/registry.ts';
import { freshPostgresSchema, mosquittoUrl, postgresUrl, requireOrSkip } from '../support/services.ts';
import { settlementConfig, testLog } from '../support/stack.ts';
import { tempDir } from '../support/tmp.ts';
import { waitFor } from '../support/wait.ts';

const pg = await postgresUrl();
const broker = await mosquittoUrl();
const skip =
  requireOrSkip('scale-out (PostgreSQL)', !!pg, 'no PostgreSQL at 127.0.0.1:5432') ||
  requireOrSkip('scale-out (Mosquitto)', !!broker, 'no Mosquitto at 127.0.0.1:1883');

const GATEWAYS = 6;
const ENVELOPES_PER_GATEWAY = 40;
const READINGS_PER_ENVELOPE = 4;

describe.skipIf(skip)('two settlement workers on one Mosquitto and one PostgreSQL', () => {
  const dir = tempDir();
  const run = randomBytes(4).toString('hex');
  const workers: Settlement[] = [];
  let db: Awaited<ReturnType<typeof freshPostgresSchema>>;
  let client: MqttClient;
  const acked = new Map<string, string>();

  beforeAll(async () => {
    db = await freshPostgresSchema(pg!);
    for (const n of [1, 2]) {
      const cfg = settlementConfig(`${dir.path}/w${n}`);
      cfg.ledger.databaseUrl = db.url;
      cfg.http = null;
      cfg.mqtt = { mode: 'external', url: broker!, clientId: `gtx-scale-${run}-w${n}`, sharedGroup: `gtx-scale-${run}` };
      workers.push(await startSettlement(cfg, { log: testLog(`worker-${n}`) }));
    }
    client = await mqtt.connectAsync(broker!, { clientId: `gtx-scale-${run}-load` });
    client.on('message', (topic, payload) => {
      const body = JSON.parse(payload.toString()) as { id: string; status?: string; reason?: string };
      acked.set(body.id, body.status ?? `rejected:${body.reason}`);
    });
  });

  afterAll(async () => {
    await client?.endAsync();
    for (const w of workers) await w.stop();
    await db?.drop();
    dir.remove();
  });

  it('shares the readings, counts none twice, and keeps every chain and interval total exact', async () => {
    const factories = Array.from({ length: GATEWAYS }, (_, g) => new EnvelopeFactory(`gw-scale-${run}-${g}`));
    for (const f of factories) await enrollTestGateway(workers[0]!.ledger, f.gateway, f.publicKeyPem, [`${f.gateway}-m`]);
    await client.subscribeAsync(factories.map((f) => topics.ack(f.gateway)).concat(factories.map((f) => topics.reject(f.gateway))), { qos: 1 });

    const start = Date.parse('2026-11-25T00:00:00Z');
    const sent: Envelope[] = [];
    for (let i = 0; i < ENVELOPES_PER_GATEWAY; i++) {
      for (const f of factories) {
        const rs = [];
        for (let k = 0; k < READINGS_PER_ENVELOPE; k++) {
          // A reading a minute, 10 Wh each: intervals of 15 min get 150 Wh once all pairs are in.
          const seq = i * READINGS_PER_ENVELOPE + k + 1;
          const r = f.nextReading(`${f.gateway}-m`, { importWh: 1000 + seq * 10 }, start + seq * 60_000);
          f.advance(r);
          rs.push(r);
        }
        const env = f.sign(rs);
        sent.push(env);
        await client.publishAsync(topics.readings(f.gateway), encodeEnvelope(env), { qos: 1 });
      }
    }
    const ids = sent.map((e) => envelopeIdOf(signedBytes(e)));
    await waitFor(() => ids.every((id) => acked.has(id)), 'an ack for every envelope', 60_000);
    expect([...new Set(ids.map((id) => acked.get(id)))]).toEqual(['accepted']);

    for (const w of workers) await w.idle();
    const counts = await workers[0]!.ledger.counts();
    expect(counts.readings).toBe(GATEWAYS * ENVELOPES_PER_GATEWAY * READINGS_PER_ENVELOPE);
    expect(counts.envelopes).toBe(GATEWAYS * ENVELOPES_PER_GATEWAY);
    // Both workers took a share.
    const shares = workers.map((w) => w.stats.envelopesAccepted);
    expect(shares[0]! + shares[1]!).toBe(GATEWAYS * ENVELOPES_PER_GATEWAY);
    expect(Math.min(...shares)).toBeGreaterThan(0);

    for (const f of factories) {
      const meter = `${f.gateway}-m`;
      const rs = await workers[1]!.ledger.readings(meter);
      expect(rs.map((r) => r.seq)).toEqual(rs.map((_, i) => i + 1));
      for (let i = 1; i < rs.length; i++) expect(rs[i]!.prev).toBe(rs[i - 1]!.hash);
      // Envelopes of one meter landed on both workers out of order; every consecutive pair
      // still counted exactly once.
      const intervals = await workers[0]!.ledger.intervalEnergy(meter, start, start + 24 * 3600_000);
      const total = intervals.reduce((a, x) => a + x.importWh, 0);
      expect(total).toBe(rs.at(-1)!.importWh - rs[0]!.importWh);
      expect(await workers[0]!.ledger.gaps(meter)).toEqual([]);
    }
    const market = await workers[0]!.ledger.marketIntervals('thailand_central', start, start + 24 * 3600_000);
    expect(market.reduce((a, x) => a + x.demandWh, 0)).toBe(GATEWAYS * (ENVELOPES_PER_GATEWAY * READINGS_PER_ENVELOPE - 1) * 10);
  });

  it('runs a singleton job on exactly one worker at a time', async () => {
    let running = 0;
    let maxRunning = 0;
    const job = async () => {
      running++;
      maxRunning = Math.max(maxRunning, running);
      await new Promise((r) => setTimeout(r, 200));
      running--;
      return 'done';
    };
    const results = await Promise.all(workers.map((w) => w.ledger.withAdvisoryLock('auction:thailand_central', job)));
    expect(results.filter((r) => r === 'done')).toHaveLength(1);
    expect(results.filter((r) => r === undefined)).toHaveLength(1);
    expect(maxRunning).toBe(1);
  });
});
