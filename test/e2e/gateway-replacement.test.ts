import { afterEach, describe, expect, it } from 'vitest';
import { enroll } from '../../gateway/enroll.ts';
import { startGateway } from '../../gateway/main.ts';
import { Outbox } from '../../gateway/outbox.ts';
import { verifyMeter } from '../../settlement/audit/verify.ts';
import { HandoverStore } from '../../settlement/registry/handovers.ts';
import { TEST_MARKET } from '../support/registry.ts';
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
});
