import { afterEach, describe, expect, it } from 'vitest';
import type { Settlement } from '../../settlement/main.ts';
import { gatewayConfig, startRegisteredGateway, startSimulator, startTestSettlement } from '../support/stack.ts';
import { freePort } from '../support/ports.ts';
import { tempDir } from '../support/tmp.ts';
import { waitFor } from '../support/wait.ts';

describe('settlement stopped while the gateway runs', () => {
  const cleanups: Array<() => Promise<void> | void> = [];
  afterEach(async () => {
    for (const c of cleanups.reverse()) await c();
    cleanups.length = 0;
  });

  it('keeps readings in the outbox and delivers all of them, in order and exactly once, after it returns', async () => {
    const dir = tempDir();
    cleanups.push(() => dir.remove());
    const port = await freePort();
    let settlement: Settlement | undefined = await startTestSettlement(dir.path, port, true);
    cleanups.push(() => settlement?.stop());
    const sim = await startSimulator('sdm120', 'household', 3);
    cleanups.push(() => sim.sim.stop());

    const cfg = gatewayConfig(dir.path, 'gw-outage', settlement.brokerUrl, [{ id: 'meter-o', model: 'sdm120', port: sim.port }]);
    const gw = await startRegisteredGateway(settlement, cfg);
    let gwStopped = false;
    cleanups.push(() => (gwStopped ? undefined : gw.stop()));

    await waitFor(async () => (await settlement!.ledger.readings('meter-o')).length >= 4, 'first readings');
    await settlement.stop();
    settlement = undefined;

    // The gateway keeps polling and sealing; nothing can be acknowledged now.
    await waitFor(() => gw.outboxDepth() >= 5, 'the outbox to fill while settlement is down');
    expect(gw.stats().pollErrors).toBe(0);

    settlement = await startTestSettlement(dir.path, port, true);
    await waitFor(() => gw.outboxDepth() === 0 && gw.stats().inFlight === 0, 'the outbox to drain after restart', 20_000);
    await gw.stop();
    gwStopped = true;
    await settlement.idle();

    const rs = await settlement.ledger.readings('meter-o');
    // Exactly once: every sealed reading is in the ledger once, the seqs are 1..n without gaps.
    expect(rs.length).toBe(gw.stats().sealed);
    expect(rs.map((r) => r.seq)).toEqual(rs.map((_, i) => i + 1));
    for (let i = 1; i < rs.length; i++) expect(rs[i]!.prev).toBe(rs[i - 1]!.hash);
    // In order: settlement received them in seq order.
    for (let i = 1; i < rs.length; i++) expect(rs[i]!.receivedAtMs).toBeGreaterThanOrEqual(rs[i - 1]!.receivedAtMs);
    const reasons = new Set((await settlement.ledger.rejections(1000)).map((r) => r.reason));
    reasons.delete('duplicate'); // a resend of an envelope whose ack was lost in the shutdown is fine
    expect([...reasons]).toEqual([]);
  });
});
