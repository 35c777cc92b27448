import mqtt, { type MqttClient } from 'mqtt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { encodeEnvelope, envelopeIdOf, signedBytes, topics, type Envelope, type RejectReason } from '../../protocol/index.ts';
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
  const received: Array<{ topic: string; body: { id: string | null; reason?: RejectReason; status?: string } }> = [];

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

  async function expectRejected(payload: string | Buffer, reason: RejectReason, topic?: string): Promise<void> {
    const before = await settlement.ledger.counts();
    await publish(payload, topic);
    const rejection = await waitFor(
      async () => (await settlement.ledger.rejections(1)).find((r) => r.id > 0 && r.reason === reason && r.receivedAtMs > 0),
      `a recorded ${reason} rejection`,
    );
    const after = await settlement.ledger.counts();
    expect(after.readings).toBe(before.readings);
    expect(after.envelopes).toBe(before.envelopes);
    expect(after.rejections).toBe(before.rejections + 1);
    expect(rejection.payloadBytes).toBe(Buffer.byteLength(payload));
    expect(rejection.detail.length).toBeGreaterThan(0);
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

  it('keeps every refusal with its reason', async () => {
    const reasons = (await settlement.ledger.rejections(100)).map((r) => r.reason).sort();
    expect(new Set(reasons)).toEqual(
      new Set(['invalid_json', 'schema', 'too_large', 'bad_signature', 'unknown_gateway', 'topic_mismatch', 'duplicate', 'seq_regression', 'broken_chain', 'future_timestamp']),
    );
    const readings = await settlement.ledger.readings('m-1');
    expect(readings.map((r) => r.seq)).toEqual(readings.map((_, i) => i + 1));
  });
});
