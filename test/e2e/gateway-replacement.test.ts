import mqtt from 'mqtt';
import { afterEach, describe, expect, it } from 'vitest';
import { enroll } from '../../gateway/enroll.ts';
import { startGateway } from '../../gateway/main.ts';
import { Outbox } from '../../gateway/outbox.ts';
import { verifyMeter } from '../../settlement/audit/verify.ts';
import { HandoverStore } from '../../settlement/registry/handovers.ts';
import { encodeEnvelope, envelopeIdOf, signedBytes, topics, type Envelope } from '../../protocol/index.ts';
import { EnvelopeFactory } from '../support/envelopes.ts';
import { TEST_MARKET, enrollTestGateway } from '../support/registry.ts';
import { gatewayConfig, startRegisteredGateway, startSimulator, startTestSettlement, testLog } from '../support/stack.ts';
import { tempDir } from '../support/tmp.ts';
import { waitFor } from '../support/wait.ts';

const METER = 'home-r-main';

describe('replacing a broken gateway', () => {
  const cleanups: Array<() => Promise<unknown> | unknown> = [];
  afterEach(async () => {
    for (const c of cleanups.reverse()) await c();
    cleanups.length = 0;
  });

  it('lets the new gateway continue the meter chain after the old one is revoked', async () => {
    const dir = tempDir('gtx-replace-');
    cleanups.push(() => dir.remove());
    const settlement = await startTestSettlement(dir.path, 0, true);
    cleanups.push(() => settlement.stop());
    const sim = await startSimulator('sdm120', 'prosumer', 21);
    cleanups.push(() => sim.sim.stop());
    const meters = [{ id: METER, model: 'sdm120', port: sim.port }];

    // Gateway A runs for a while and gets readings accepted.
    const cfgA = gatewayConfig(dir.path, 'gw-old', settlement.brokerUrl, meters);
    const a = await startRegisteredGateway(settlement, cfgA);
    let aStopped = false;
    cleanups.push(() => (aStopped ? undefined : a.stop()));
    await waitFor(async () => (await settlement.ledger.readings(METER)).length >= 6, 'readings from the old gateway');
    // It breaks (stops where it stands) and the operator revokes it.
    await a.stop();
    aStopped = true;
    expect(await settlement.revokeGateway('gw-old')).toBe(true);
    await settlement.idle();
    const before = await settlement.ledger.readings(METER);
    const head = before.at(-1)!;

    // Gateway B: a new key, the same meter, enrolled through the real HTTP API. Its config names
    // no broker: it uses the one settlement returns.
    const cfgB = gatewayConfig(dir.path, 'gw-new', settlement.brokerUrl, meters);
    cfgB.mqtt = { ackTimeoutMs: cfgB.mqtt.ackTimeoutMs, maxInFlight: cfgB.mqtt.maxInFlight };
    const { code } = await settlement.enrollment.issueCode({ market: TEST_MARKET, owner: 'owner-gw-old', ttlMs: 600_000 });
    const enrolled = await enroll(cfgB, settlement.httpUrl!, code);
    expect(enrolled.chainHeads).toEqual([{ meter: METER, seq: head.seq, hash: head.hash }]);
    expect(enrolled.heads).toEqual([
      { meter: METER, action: 'raised', localSeq: null, ledgerSeq: head.seq, unsent: { envelopes: 0, fromSeq: null, toSeq: null } },
    ]);
    expect(enrolled.brokerUrl).toBe(settlement.brokerUrl);
    const ob = new Outbox(cfgB.outboxFile);
    expect(ob.meterHeads()).toEqual([{ meter: METER, seq: head.seq, hash: head.hash, tsMs: null }]);
    ob.close();

    const b = await startGateway(cfgB, { log: testLog('gateway') });
    cleanups.push(() => b.stop());
    expect(b.brokerUrl).toBe(settlement.brokerUrl);
    await waitFor(async () => (await settlement.ledger.readings(METER)).length >= before.length + 6, 'readings from the new gateway', 20_000);
    await waitFor(() => b.outboxDepth() === 0 && b.stats().inFlight === 0, "the new gateway's outbox drained");
    await settlement.idle();

    // One chain across the hand-over: seq 1..n, each reading linking to the one before.
    const rs = await settlement.ledger.readings(METER);
    expect(rs.map((r) => r.seq)).toEqual(rs.map((_, i) => i + 1));
    for (let i = 1; i < rs.length; i++) expect(rs[i]!.prev).toBe(rs[i - 1]!.hash);
    expect(b.stats()).toMatchObject({ rejected: 0, deferred: 0 });
    const reasons = new Set((await settlement.ledger.rejections(1000)).map((r) => r.reason));
    reasons.delete('duplicate');
    expect([...reasons]).toEqual([]);
    // A second connection to b's outbox (WAL): nothing was set aside.
    const ob2 = new Outbox(cfgB.outboxFile);
    expect(ob2.deadLetters()).toBe(0);
    ob2.close();

    // The audit re-verifies every envelope with the key of the gateway that signed it.
    const report = await verifyMeter(settlement.ledger, METER);
    expect(report.failures).toEqual([]);
    expect(report.ok).toBe(true);
    expect(report.gateways.map((g) => [g.id, g.status])).toEqual(
      expect.arrayContaining([
        ['gw-old', 'revoked'],
        ['gw-new', 'active'],
      ]),
    );

    const handovers = await new HandoverStore(settlement.ledger.db).forMeter(METER);
    expect(handovers).toEqual([{ meter: METER, oldGateway: 'gw-old', newGateway: 'gw-new', fromSeq: head.seq + 1, atMs: expect.any(Number) }]);
  });

  it("refuses the new gateway's readings below its hand-over seq: the old chain is not its to fill", async () => {
    const dir = tempDir('gtx-replace-gap-');
    cleanups.push(() => dir.remove());
    const settlement = await startTestSettlement(dir.path);
    cleanups.push(() => settlement.stop());
    const oldGw = new EnvelopeFactory('gw-a');
    await enrollTestGateway(settlement.ledger, 'gw-a', oldGw.publicKeyPem, ['m-h']);
    const client = await mqtt.connectAsync(settlement.brokerUrl, { clientId: 'replacement-gap-test' });
    cleanups.push(() => client.endAsync());
    const replies: Array<{ id: string | null; status?: string; reason?: string }> = [];
    client.on('message', (_t, p) => replies.push(JSON.parse(p.toString()) as { id: string | null }));
    await client.subscribeAsync(['gw-a', 'gw-b'].flatMap((g) => [topics.ack(g), topics.reject(g)]));
    const send = async (gw: string, env: Envelope) => {
      await client.publishAsync(topics.readings(gw), encodeEnvelope(env), { qos: 1 });
      const id = envelopeIdOf(signedBytes(env));
      return waitFor(() => replies.find((r) => r.id === id), `an answer to ${id.slice(0, 8)}`);
    };
    // The old gateway's seqs 1, 2 and 5 are stored: 3 and 4 are a gap.
    const rs = [1, 2, 3, 4, 5].map(() => {
      const r = oldGw.nextReading('m-h');
      oldGw.advance(r);
      return r;
    });
    expect((await send('gw-a', oldGw.sign(rs.slice(0, 2)))).status).toBe('accepted');
    expect((await send('gw-a', oldGw.sign([rs[4]!]))).status).toBe('accepted');
    expect(await settlement.revokeGateway('gw-a')).toBe(true);

    const newGw = new EnvelopeFactory('gw-b');
    const { chainHeads } = await enrollTestGateway(settlement.ledger, 'gw-b', newGw.publicKeyPem, ['m-h']);
    expect(chainHeads.map((h) => h.seq)).toEqual([5]);
    // A reading that would fit the old gateway's gap, signed by the new one.
    const splice = newGw.nextReading('m-h', { seq: 3, prev: '1'.repeat(64), importWh: rs[2]!.importWh }, Date.parse(rs[2]!.ts));
    expect(await send('gw-b', newGw.sign([splice]))).toMatchObject({ reason: 'seq_regression', retryable: false });
    // Its own chain, from the head on, is welcome.
    const next = newGw.nextReading('m-h', { seq: 6, prev: chainHeads[0]!.hash, importWh: rs[4]!.importWh + 10 }, Date.parse(rs[4]!.ts) + 10_000);
    expect((await send('gw-b', newGw.sign([next]))).status).toBe('accepted');
    expect((await settlement.ledger.readings('m-h')).map((r) => r.seq)).toEqual([1, 2, 5, 6]);
  });
});
