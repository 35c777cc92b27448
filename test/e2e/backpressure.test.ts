import Database from 'better-sqlite3';
import mqtt, { type MqttClient } from 'mqtt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { encodeEnvelope, envelopeIdOf, parseAck, parseRejection, signedBytes, topics } from '../../protocol/index.ts';
import { startSettlement, type Settlement } from '../../settlement/main.ts';
import { EnvelopeFactory } from '../support/envelopes.ts';
import { enrollTestGateway } from '../support/registry.ts';
import { settlementConfig, testLog } from '../support/stack.ts';
import { tempDir } from '../support/tmp.ts';
import { waitFor } from '../support/wait.ts';

/**
 * Bounded intake: while the ledger is slow, the settlement holds at most its intake limit (plus
 * one message per publishing connection, each taken before the limit was seen) and the broker
 * stops reading the senders, instead of the queue growing without bound. Once the ledger is back,
 * everything that was held is committed and acked exactly once.
 */

const LIMIT = 8;
const GATEWAYS = 4;
const PER_GATEWAY = 60;
/** Queue samples taken at the limit before the ledger is released: the hold outlasts the first arrivals. */
const SAMPLES_AT_LIMIT = 100;

describe('back-pressure from a slow ledger', () => {
  const dir = tempDir('gtx-backpressure-');
  let settlement: Settlement;
  let sqlitePath = '';
  const clients: MqttClient[] = [];

  beforeAll(async () => {
    const cfg = settlementConfig(dir.path);
    cfg.ingest.maxQueuedEnvelopes = LIMIT;
    // The held write lock is the ledger being slow, not stuck: no watchdog stall.
    cfg.ingest.commitTimeoutMs = 60_000;
    sqlitePath = cfg.ledger.sqlitePath;
    settlement = await startSettlement(cfg, { log: testLog('settlement') });
  });

  afterAll(async () => {
    await Promise.all(clients.map((c) => c.endAsync(true).catch(() => undefined)));
    await settlement?.stop();
    dir.remove();
  });

  /** What the scenario saw; each `it` below checks one property of it. */
  const seen = {
    gateways: [] as Array<{ id: string; meter: string; answers: Map<string, string[]>; ids: string[] }>,
    depths: [] as number[],
    /** Intake while the ledger was held, after it had filled up. */
    held: { envelopes: 0, bytes: 0, peakEnvelopes: 0 },
    /** gtx_intake_queued_envelopes on /metrics at that moment. */
    metric: NaN,
    final: { envelopes: 0, bytes: 0, peakEnvelopes: 0 },
  };

  beforeAll(async () => {
    const gateways = await Promise.all(
      Array.from({ length: GATEWAYS }, async (_, g) => {
        const id = `gw-bp-${g}`;
        const factory = new EnvelopeFactory(id);
        await enrollTestGateway(settlement.ledger, id, factory.publicKeyPem, [`m-bp-${g}`]);
        const client = await mqtt.connectAsync(settlement.brokerUrl, { clientId: `bp-${g}`, reconnectPeriod: 0 });
        clients.push(client);
        const answers = new Map<string, string[]>();
        client.on('message', (topic, payload) => {
          const answer = topic === topics.ack(id) ? parseAck(payload) : parseRejection(payload);
          const key = answer.id ?? 'null';
          answers.set(key, [...(answers.get(key) ?? []), 'status' in answer ? answer.status : `rejected:${answer.reason}`]);
        });
        await client.subscribeAsync([topics.ack(id), topics.reject(id)], { qos: 1 });
        const envelopes = Array.from({ length: PER_GATEWAY }, () => factory.next(`m-bp-${g}`));
        return { id, meter: `m-bp-${g}`, client, answers, envelopes, ids: envelopes.map((e) => envelopeIdOf(signedBytes(e))) };
      }),
    );
    seen.gateways = gateways;

    // Samples the queue on every timer turn of the event loop that also runs the settlement
    // (intakeQueue().peakEnvelopes is the exact maximum, taken on every message).
    let sampling = true;
    const sampler = (async () => {
      while (sampling) {
        seen.depths.push(settlement.intakeQueue().envelopes);
        await new Promise((r) => setTimeout(r, 0));
      }
    })();

    // Another connection holds the write lock: commits wait (within the writer's 5 s busy timeout).
    const holder = new Database(sqlitePath);
    holder.exec('BEGIN IMMEDIATE');
    let published: Array<Promise<unknown>> = [];
    try {
      // Every gateway sends all its envelopes at once, QoS 1, pipelined as a gateway's outbox does.
      published = gateways.flatMap((g) => g.envelopes.map((env) => g.client.publishAsync(topics.readings(g.id), encodeEnvelope(env), { qos: 1 })));
      await waitFor(() => settlement.intakeQueue().envelopes >= LIMIT, 'intake to fill up to its limit');
      await waitFor(() => seen.depths.filter((d) => d >= LIMIT).length >= SAMPLES_AT_LIMIT, 'the queue to stay at its limit for a while');
      // While the ledger is held nothing leaves intake: what is in it is all that came in.
      seen.held = settlement.intakeQueue();
      const metrics = await (await fetch(`${settlement.httpUrl}/metrics`)).text();
      seen.metric = Number(/^gtx_intake_queued_envelopes (\d+)$/m.exec(metrics)?.[1]);
    } finally {
      if (holder.inTransaction) holder.exec('ROLLBACK');
      holder.close();
    }
    await Promise.all(published);
    for (const g of gateways) {
      await waitFor(() => g.ids.every((id) => g.answers.has(id)), `an answer to every envelope of ${g.id}`, 30_000);
    }
    await settlement.idle();
    sampling = false;
    await sampler;
    seen.final = settlement.intakeQueue();
  }, 60_000);

  it('takes envelopes while the ledger is slow only up to its limit, the rest waits with the senders', () => {
    expect(seen.held.envelopes).toBeGreaterThanOrEqual(LIMIT);
    expect(seen.held.envelopes).toBeLessThan(GATEWAYS * PER_GATEWAY);
    expect(seen.final.peakEnvelopes).toBeGreaterThanOrEqual(LIMIT);
  });

  it('never holds more than the limit plus one message per publishing connection', () => {
    expect(Math.max(...seen.depths)).toBeLessThanOrEqual(LIMIT + GATEWAYS);
    expect(seen.final.peakEnvelopes).toBeLessThanOrEqual(LIMIT + GATEWAYS);
  });

  it('shows the queue as gtx_intake_queued_envelopes', () => {
    expect(seen.metric).toBe(seen.held.envelopes);
  });

  it('acks every envelope exactly once after the ledger is back, and stores each once', async () => {
    expect(seen.final).toMatchObject({ envelopes: 0, bytes: 0 });
    for (const g of seen.gateways) {
      expect(g.ids.map((id) => g.answers.get(id))).toEqual(g.ids.map(() => ['accepted']));
      expect((await settlement.ledger.readings(g.meter)).map((r) => r.seq)).toEqual(g.ids.map((_, i) => i + 1));
    }
    expect(settlement.stats.envelopesAccepted).toBe(GATEWAYS * PER_GATEWAY);
    expect(settlement.stats.rejected).toEqual({});
  });
});
