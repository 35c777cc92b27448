import { randomBytes } from 'node:crypto';
import { existsSync, statSync } from 'node:fs';
import mqtt, { type MqttClient } from 'mqtt';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { encodeEnvelope, envelopeIdOf, parseAck, parseRejection, signedBytes, topics, type Envelope, type RejectReason } from '../../protocol/index.ts';
import { rejectionCounts } from '../../settlement/ledger/rejection-store.ts';
import { startSettlement, type Settlement } from '../../settlement/main.ts';
import { EnvelopeFactory } from '../support/envelopes.ts';
import { enrollTestGateway } from '../support/registry.ts';
import { settlementConfig } from '../support/stack.ts';
import { tempDir } from '../support/tmp.ts';
import { waitFor } from '../support/wait.ts';

/**
 * A flood of bad messages from one client must not hurt anyone else (the issue: 20,000 bad
 * messages in 10 s locked the database under the commit thread, left other gateways' envelopes
 * unanswered and grew the ledger by ~6 MB/s). Refusals are counted, their payloads sampled at a
 * bounded rate, and written in batches through the one ledger writer.
 */

const FLOOD = 20_000;
const FLOODER = 'gw-flood';
const GOOD = 'gw-good';
/** At least this many good envelopes go through, most of them during the flood. */
const MIN_GOOD = 40;
const SAMPLES_PER_MINUTE = 5;
/** Per gateway and reason: a burst, then one a minute (ingest/rejection-recorder.ts). */
const SAMPLE_BURST = 3;
/** Published without waiting for the broker between messages, in chunks of this many. */
const CHUNK = 250;

type LogLine = Record<string, unknown> & { msg: string; level: number };

describe('a flood of bad messages from one client', () => {
  const dir = tempDir('gtx-flood-');
  const logLines: LogLine[] = [];
  const log = pino({ level: 'info' }, { write: (s: string) => void logLines.push(JSON.parse(s) as LogLine) });
  let settlement: Settlement;
  let sqlitePath = '';
  const clients: MqttClient[] = [];

  beforeAll(async () => {
    const cfg = settlementConfig(dir.path); // embedded broker, auth off: the flooder publishes as it likes
    cfg.ingest.rejectionSamplesPerMinute = SAMPLES_PER_MINUTE;
    sqlitePath = cfg.ledger.sqlitePath;
    settlement = await startSettlement(cfg, { log });
  });

  afterAll(async () => {
    await Promise.all(clients.map((c) => c.endAsync(true).catch(() => undefined)));
    await settlement?.stop();
    dir.remove();
  });

  const ledgerBytes = () => [sqlitePath, `${sqlitePath}-wal`].filter(existsSync).reduce((n, f) => n + statSync(f).size, 0);

  it('counts every bad message, samples a few, keeps the ledger small, and answers every good envelope of another gateway', async () => {
    // The flooder is enrolled (so a bad signature is checked against a real key), with a key it does not have.
    const enrolledKey = new EnvelopeFactory(FLOODER);
    await enrollTestGateway(settlement.ledger, FLOODER, enrolledKey.publicKeyPem, ['m-flood']);
    const good = new EnvelopeFactory(GOOD);
    await enrollTestGateway(settlement.ledger, GOOD, good.publicKeyPem, ['m-good']);
    await settlement.recorder.flush();
    const bytesBefore = ledgerBytes();

    // The bad messages: a mix of what a broken or hostile client sends.
    const impostor = new EnvelopeFactory(FLOODER);
    const forged = encodeEnvelope(impostor.next('m-flood'));
    const garbage = randomBytes(60 * 1024);
    garbage[0] = 0xff; // never the start of JSON
    const kinds: Array<{ reason: RejectReason; payload: (i: number) => string | Buffer }> = [
      { reason: 'invalid_json', payload: (i) => `{"v":1,"gateway":"${FLOODER}","readings":[${i}` },
      { reason: 'schema', payload: (i) => JSON.stringify({ v: 1, gateway: FLOODER, readings: [{ meter: 'm-flood', seq: `x${i}` }], sig: 'AA' }) },
      { reason: 'bad_signature', payload: () => forged },
      { reason: 'invalid_json', payload: () => garbage },
    ];
    const sent: Partial<Record<RejectReason, number>> = {};
    let floodBytes = 0;

    const flooder = await mqtt.connectAsync(settlement.brokerUrl, { clientId: 'flooder', reconnectPeriod: 0 });
    clients.push(flooder);
    const gw = await mqtt.connectAsync(settlement.brokerUrl, { clientId: 'good-gateway', reconnectPeriod: 0 });
    clients.push(gw);
    const answers = new Map<string, string[]>();
    gw.on('message', (topic, payload) => {
      const answer = topic === topics.ack(GOOD) ? parseAck(payload) : parseRejection(payload);
      const id = answer.id ?? 'null';
      answers.set(id, [...(answers.get(id) ?? []), 'status' in answer ? answer.status : `rejected:${answer.reason}`]);
    });
    await gw.subscribeAsync([topics.ack(GOOD), topics.reject(GOOD)], { qos: 1 });

    // The good gateway publishes one envelope at a time (each after the broker took the last),
    // readings stamped now, for as long as the flood lasts.
    let flooding = true;
    const goodIds: string[] = [];
    let lastTs = 0;
    const goodGateway = (async () => {
      while (flooding || goodIds.length < MIN_GOOD) {
        lastTs = Math.max(Date.now(), lastTs + 1);
        const r = good.nextReading('m-good', {}, lastTs);
        good.advance(r);
        const env: Envelope = good.sign([r]);
        goodIds.push(envelopeIdOf(signedBytes(env)));
        await gw.publishAsync(topics.readings(GOOD), encodeEnvelope(env), { qos: 1 });
      }
    })();

    const floodStartedAt = Date.now();
    // As fast as the client and broker take them: QoS 0, a chunk at a time so the socket's own
    // back-pressure (and the settlement's, through the broker) applies.
    for (let i = 0; i < FLOOD; i += CHUNK) {
      const chunk: Array<Promise<unknown>> = [];
      for (let j = i; j < Math.min(FLOOD, i + CHUNK); j++) {
        const kind = kinds[j % kinds.length]!;
        const payload = kind.payload(j);
        sent[kind.reason] = (sent[kind.reason] ?? 0) + 1;
        floodBytes += Buffer.byteLength(payload);
        chunk.push(flooder.publishAsync(topics.readings(FLOODER), payload, { qos: 0 }));
      }
      await Promise.all(chunk);
    }
    flooding = false;
    const rejectedSoFar = () => Object.values(settlement.stats.rejected).reduce((a, b) => a + b, 0);
    await waitFor(() => rejectedSoFar() >= FLOOD, `all ${FLOOD} bad messages handled (so far ${rejectedSoFar()})`, 60_000);
    await goodGateway;
    await waitFor(() => goodIds.every((id) => answers.has(id)), 'an answer to every good envelope', 30_000);
    await settlement.idle();

    // Every good envelope answered once, accepted: none unanswered, none commit_failed.
    expect(goodIds.length).toBeGreaterThanOrEqual(MIN_GOOD);
    expect(goodIds.map((id) => answers.get(id))).toEqual(goodIds.map(() => ['accepted']));
    expect(await settlement.ledger.readings('m-good')).toHaveLength(goodIds.length);

    // Every bad message counted, exactly, under its reason.
    expect(settlement.stats.rejected).toEqual(sent);
    await settlement.recorder.flush();
    expect((await settlement.ledger.counts()).rejections).toBe(FLOOD);
    const counted = await rejectionCounts(settlement.ledger.db, { gateway: FLOODER });
    expect(Object.fromEntries(counted.map((c) => [c.reason, c.count]))).toEqual(sent);

    // Payloads only as samples, within the rates: all gateways per minute, and per gateway and reason.
    const samples = await settlement.ledger.rejections(10_000);
    // Sample windows that can have opened since the flood began.
    const minutes = 1 + Math.floor((Date.now() - floodStartedAt) / 60_000);
    expect(samples.length).toBeGreaterThan(0);
    expect(samples.length).toBeLessThanOrEqual(SAMPLES_PER_MINUTE * minutes);
    for (const reason of new Set(samples.map((s) => s.reason))) {
      expect(samples.filter((s) => s.reason === reason && s.gateway === FLOODER).length).toBeLessThanOrEqual(SAMPLE_BURST + minutes);
    }
    expect(samples.every((s) => s.gateway === FLOODER)).toBe(true);
    expect(settlement.recorder.samplesDropped).toBe(FLOOD - samples.length);

    // The ledger grew by the good readings, a few count rows and samples: not by the flood's bytes.
    const grown = ledgerBytes() - bytesBefore;
    expect(floodBytes).toBeGreaterThan(100 * 1024 * 1024);
    expect(grown).toBeLessThan(4 * 1024 * 1024);

    // One writer of the file: no lock errors, no commit failures, nothing lost for lack of a lock.
    const text = JSON.stringify(logLines);
    expect(text).not.toMatch(/database is locked|SQLITE_BUSY/);
    expect(logLines.filter((l) => l.level >= 50).map((l) => l.msg)).toEqual([]);
  }, 120_000);
});
