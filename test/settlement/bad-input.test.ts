import mqtt, { type MqttClient } from 'mqtt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { encodeEnvelope, envelopeIdOf, payloadOf, signedBytes, topics, type Envelope, type RejectReason } from '../../protocol/index.ts';
import { rejectionCounts } from '../../settlement/ledger/rejection-store.ts';
import type { Settlement } from '../../settlement/main.ts';
import { EnvelopeFactory } from '../support/envelopes.ts';
import { enrollTestGateway } from '../support/registry.ts';
import { startTestSettlement } from '../support/stack.ts';
import { tempDir } from '../support/tmp.ts';
import { waitFor } from '../support/wait.ts';

const GW = 'gw-bad-input';

describe('bad input on the readings topic', () => {
  const dir = tempDir();
  let settlement: Settlement;
  let client: MqttClient;
  const factory = new EnvelopeFactory(GW);
  const received: Array<{ topic: string; body: { id: string | null; reason?: RejectReason; status?: string; retryable?: boolean } }> = [];

  beforeAll(async () => {
    settlement = await startTestSettlement(dir.path);
    await enrollTestGateway(settlement.ledger, GW, factory.publicKeyPem, ['m-1']);
    client = await mqtt.connectAsync(settlement.brokerUrl, { clientId: 'bad-input-test' });
    client.on('message', (topic, payload) => received.push({ topic, body: JSON.parse(payload.toString()) }));
    await client.subscribeAsync([topics.ack(GW), topics.reject(GW), topics.reject('gw-unknown')], { qos: 1 });
  });

  afterAll(async () => {
    await client?.endAsync();
    await settlement?.stop();
    dir.remove();
  });

  const idOf = (env: Envelope) => envelopeIdOf(signedBytes(env));

  async function publish(payload: string | Buffer, topic = topics.readings(GW)): Promise<void> {
    await client.publishAsync(topic, payload, { qos: 1 });
    await new Promise((r) => setTimeout(r, 20));
    await settlement.idle();
  }

  /** Publishes a good envelope and waits for its ack: the settlement still serves. */
  async function expectStillServing(): Promise<void> {
    const env = factory.next('m-1');
    await publish(encodeEnvelope(env));
    await waitFor(() => received.find((m) => m.body.id === idOf(env) && m.body.status === 'accepted'), 'ack of the next good envelope');
  }

  /** Every refusal is counted; its payload is sampled (a duplicate is only counted). */
  async function expectRejected(payload: string | Buffer, reason: RejectReason, topic?: string, sampled = reason !== 'duplicate'): Promise<void> {
    await settlement.recorder.flush();
    const before = await settlement.ledger.counts();
    const samplesBefore = (await settlement.ledger.rejections(1))[0]?.id ?? 0;
    await publish(payload, topic);
    await settlement.recorder.flush();
    const after = await settlement.ledger.counts();
    expect(after.readings).toBe(before.readings);
    expect(after.envelopes).toBe(before.envelopes);
    expect(after.rejections).toBe(before.rejections + 1);
    const [sample] = await settlement.ledger.rejections(1);
    if (!sampled) {
      expect(sample?.id ?? 0).toBe(samplesBefore);
    } else {
      expect(sample).toMatchObject({ reason, payloadBytes: Buffer.byteLength(payload) });
      expect(sample!.id).toBeGreaterThan(samplesBefore);
      expect(sample!.detail.length).toBeGreaterThan(0);
    }
    await expectStillServing();
  }

  it('accepts a good envelope first', async () => {
    await expectStillServing();
  });

  it('invalid JSON', async () => {
    await expectRejected('{"v":1,"gateway":', 'invalid_json');
  });

  it('wrong types', async () => {
    const env = factory.sign([factory.nextReading('m-1')]) as unknown as Record<string, unknown>;
    const readings = env.readings as Array<Record<string, unknown>>;
    readings[0]!.importWh = '1234';
    await expectRejected(encodeEnvelope(env as unknown as Envelope), "schema");
    const r = (await settlement.ledger.rejections(1))[0]!;
    expect(r.detail).toMatch(/importWh/);
  });

  it('a 1 MB payload', async () => {
    await expectRejected(Buffer.alloc(1024 * 1024, 0x20), 'too_large');
  });

  it('a bad signature', async () => {
    const env = factory.sign([factory.nextReading('m-1')]);
    const tampered = { ...env, readings: [{ ...env.readings[0]!, importWh: env.readings[0]!.importWh + 1000 }] };
    await expectRejected(encodeEnvelope(tampered), 'bad_signature');
    expect(received.some((m) => m.topic === topics.reject(GW) && m.body.reason === 'bad_signature')).toBe(true);
  });

  it('an unknown gateway', async () => {
    const stranger = new EnvelopeFactory('gw-unknown');
    await expectRejected(encodeEnvelope(stranger.next('m-x')), 'unknown_gateway', topics.readings('gw-unknown'));
  });

  it("an envelope on another gateway's topic", async () => {
    const stranger = new EnvelopeFactory('gw-unknown');
    await expectRejected(encodeEnvelope(stranger.next('m-x')), 'topic_mismatch');
  });

  it('a replayed envelope', async () => {
    const env = factory.next('m-1');
    await publish(encodeEnvelope(env));
    await waitFor(() => received.find((m) => m.body.id === idOf(env) && m.body.status === 'accepted'), 'first ack');
    await expectRejected(encodeEnvelope(env), 'duplicate');
    // The gateway is told it is safe to drop it.
    expect(received.filter((m) => m.body.id === idOf(env)).map((m) => m.body.status)).toEqual(['accepted', 'duplicate']);
  });

  it('seq going backwards', async () => {
    const r = factory.nextReading('m-1', { seq: 1, importWh: 1 });
    await expectRejected(encodeEnvelope(factory.sign([{ ...r, prev: '0'.repeat(64) }])), 'seq_regression');
    const back = factory.nextReading('m-1', { seq: 2, powerW: 1 });
    await expectRejected(encodeEnvelope(factory.sign([back])), 'seq_regression');
  });

  it('a broken prev chain', async () => {
    const r = factory.nextReading('m-1', { prev: 'ab'.repeat(32) });
    await expectRejected(encodeEnvelope(factory.sign([r])), 'broken_chain');
  });

  it('a timestamp far in the future', async () => {
    const r = factory.nextReading('m-1', {}, Date.now() + 24 * 3600_000);
    await expectRejected(encodeEnvelope(factory.sign([r])), 'future_timestamp');
  });

  it('an envelope with one bad reading among good ones is refused whole', async () => {
    const good = factory.nextReading('m-1');
    const bad = { ...factory.nextReading('m-1'), seq: good.seq + 1, prev: 'cd'.repeat(32) };
    await expectRejected(encodeEnvelope(factory.sign([good, bad])), 'broken_chain');
  });

  it('accepts only the canonical bytes: whitespace, key order, number spelling or a duplicate key are non_canonical', async () => {
    const env = factory.sign([factory.nextReading('m-1')]);
    const canonical = encodeEnvelope(env);
    const r = env.readings[0]!;
    const variants = [
      JSON.stringify(env), // the member order of the object, not RFC 8785's
      canonical.replace('{"gateway"', '{ "gateway"'),
      canonical.replace(`"importWh":${r.importWh}`, `"importWh":${r.importWh}.0`),
      canonical.replace(`"exportWh":${r.exportWh}`, `"exportWh":${r.exportWh === 0 ? '0e0' : `${r.exportWh / 1000}e3`}`),
      // The archive reader that keeps the first key would see 999999999; JSON.parse keeps the last.
      canonical.replace(`"importWh":${r.importWh}`, `"importWh":999999999,"importWh":${r.importWh}`),
      canonical.replace('"gw-bad-input"', '"\\u0067w-bad-input"'),
    ];
    for (const [i, v] of variants.entries()) {
      expect(v).not.toBe(canonical);
      // Payload samples per gateway and reason: a burst of three, then one a minute; all are counted.
      await expectRejected(v, 'non_canonical', undefined, i < 3);
    }
    const reply = received.filter((m) => m.topic === topics.reject(GW) && m.body.reason === 'non_canonical').at(-1);
    expect(reply?.body).toMatchObject({ id: idOf(env), retryable: false });
    // The same envelope in its canonical bytes is accepted, and exactly those bytes are kept.
    await publish(canonical);
    await waitFor(() => received.find((m) => m.body.id === idOf(env) && m.body.status === 'accepted'), 'ack of the canonical envelope');
    const stored = (await settlement.ledger.envelopesWithMeter('m-1')).find((e) => e.id === idOf(env))!;
    expect(stored.signed).toBe(signedBytes(env).toString('utf8'));
    expect(stored.sig.toString('base64')).toBe(env.sig);
    expect(payloadOf(stored.signed, stored.sig.toString('base64'))).toBe(canonical);
  });

  it('a reading stamped 1970 (a gateway booted without a clock) is too_old, and says so at once', async () => {
    const r = factory.nextReading('m-1', {}, 0);
    await expectRejected(encodeEnvelope(factory.sign([r])), 'too_old');
    const reply = received.filter((m) => m.topic === topics.reject(GW) && m.body.reason === 'too_old').at(-1);
    expect(reply?.body).toMatchObject({ retryable: false });
  });

  it('tells the gateway which refusals may pass later (retryable) and which are final', async () => {
    const last = (reason: RejectReason) => received.filter((m) => m.topic === topics.reject(GW) && m.body.reason === reason).at(-1)?.body;
    expect(last('future_timestamp')).toMatchObject({ retryable: true });
    expect(last('bad_signature')).toMatchObject({ retryable: false });
    expect(last('broken_chain')).toMatchObject({ retryable: false });
  });

  it('keeps every refusal with its reason', async () => {
    await settlement.recorder.flush();
    const reasons = (await settlement.ledger.rejections(100)).map((r) => r.reason).sort();
    const expected = ['invalid_json', 'schema', 'too_large', 'bad_signature', 'unknown_gateway', 'topic_mismatch', 'seq_regression', 'broken_chain', 'future_timestamp', 'non_canonical', 'too_old'];
    expect(new Set(reasons)).toEqual(new Set(expected));
    // Counted: every one of them, the duplicate too.
    const counted = new Set((await rejectionCounts(settlement.ledger.db)).map((c) => c.reason));
    expect(counted).toEqual(new Set([...expected, 'duplicate']));
    const readings = await settlement.ledger.readings('m-1');
    expect(readings.map((r) => r.seq)).toEqual(readings.map((_, i) => i + 1));
  });
});
