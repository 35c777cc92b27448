import { afterEach, describe, expect, it } from 'vitest';
import { BusSimulator } from '../../devices/bus-simulator.ts';
import { getDefinition } from '../../devices/catalog.ts';
import { MeterSimulator } from '../../devices/simulator.ts';
import { gatewayDefaults } from '../../gateway/config.ts';
import { meterId } from '../../protocol/index.ts';
import type { Settlement } from '../../settlement/main.ts';
import { freePort } from '../support/ports.ts';
import { PtyPair, SOCAT } from '../support/pty.ts';
import { requireOrSkip } from '../support/services.ts';
import { startRegisteredGateway, startTestSettlement } from '../support/stack.ts';
import { tempDir } from '../support/tmp.ts';
import { waitFor } from '../support/wait.ts';

/**
 * From RS-485 meters to the ledger: a gateway reads three meters on one RTU line (a socat
 * pseudo-terminal pair, so its real serial code path) and one on a TCP bridge, through a
 * silent meter, an unplugged adapter and a settlement outage; afterwards every reading it
 * sealed is in the ledger exactly once, with seqs 1..n and the chain unbroken.
 */
const noSocat = requireOrSkip('RTU end-to-end test', !!SOCAT, 'socat is not installed (apt-get install socat)');

describe.skipIf(noSocat)('RS-485 meters to the ledger', { timeout: 120_000 }, () => {
  const cleanups: Array<() => Promise<void> | void> = [];
  afterEach(async () => {
    for (const c of cleanups.reverse()) await c();
    cleanups.length = 0;
  });

  it('delivers every reading exactly once through a dead meter, an unplugged adapter and a settlement outage', async () => {
    const dir = tempDir('gtx-rtu-e2e-');
    cleanups.push(() => dir.remove());
    const port = await freePort();
    let settlement: Settlement | undefined = await startTestSettlement(dir.path, port, true);
    cleanups.push(() => settlement?.stop());

    const sim = (model: string, seed: number) => new MeterSimulator({ definition: getDefinition(model), profile: 'prosumer', seed });
    const pty = new PtyPair(dir.path);
    await pty.plug();
    const line = new BusSimulator(new Map([[1, sim('sdm120', 1)], [2, sim('sdm630', 2)], [3, sim('sdm120', 3)]]));
    await line.openSerial({ path: pty.deviceEnd, baudRate: 9600 });
    const bridge = new BusSimulator(new Map([[4, sim('sdm630', 4)]]));
    const bridgePort = await bridge.listenTcp();
    cleanups.push(async () => {
      await line.close();
      await bridge.close();
      await pty.unplug();
    });

    const cfg = gatewayDefaults('gw-rtu', `${dir.path}/gw-rtu`);
    cfg.pollIntervalMs = 300;
    cfg.batchMaxReadings = 4;
    cfg.batchMaxAgeMs = 500;
    cfg.mqtt = { url: settlement.brokerUrl, ackTimeoutMs: 2_000, maxInFlight: 8 };
    cfg.buses = [
      { kind: 'rtu', name: 'rs485', path: pty.gatewayEnd, baudRate: 9600, parity: 'none', dataBits: 8, stopBits: 1 },
      { kind: 'tcp', name: 'bridge', host: '127.0.0.1', port: bridgePort, connectTimeoutMs: 1_000 },
    ];
    const m = (id: string, model: string, bus: string, unitId: number) => ({
      id: meterId(id),
      definition: getDefinition(model),
      bus,
      unitId,
      timeoutMs: 400,
      role: 'bidirectional' as const,
      ratedPowerW: getDefinition(model).maxPowerW,
      energySource: 'Solar' as const,
    });
    cfg.meters = [m('rtu-1', 'sdm120', 'rs485', 1), m('rtu-2', 'sdm630', 'rs485', 2), m('rtu-3', 'sdm120', 'rs485', 3), m('tcp-4', 'sdm630', 'bridge', 4)];
    const gw = await startRegisteredGateway(settlement, cfg);
    let gwStopped = false;
    cleanups.push(() => (gwStopped ? undefined : gw.stop()));
    const inLedger = async (id: string) => (await settlement!.ledger.readings(id)).length;

    await waitFor(async () => (await Promise.all(cfg.meters.map((x) => inLedger(x.id)))).every((n) => n >= 3), 'readings of every meter');
    // A meter goes silent; the others go on.
    line.silence(2);
    const before = await inLedger('rtu-1');
    await waitFor(async () => (await inLedger('rtu-1')) >= before + 5, 'the live meters going on past a silent one');
    line.silence(2, false);
    // The adapter is pulled out and put back.
    await line.closeSerial();
    await pty.unplug();
    await waitFor(() => gw.meters().filter((x) => x.bus === 'rs485').every((x) => x.state === 'failing'), 'the RTU meters failing while unplugged');
    await pty.plug();
    await line.openSerial({ path: pty.deviceEnd, baudRate: 9600 });
    await waitFor(() => gw.meters().every((x) => x.state === 'ok'), 'every meter read again after the adapter is back', 30_000);
    // Settlement goes away and comes back.
    await settlement.stop();
    settlement = undefined;
    await waitFor(() => gw.outboxDepth() >= 3, 'the outbox filling while settlement is down');
    settlement = await startTestSettlement(dir.path, port, true);
    await waitFor(() => gw.outboxDepth() === 0 && gw.stats().inFlight === 0, 'the outbox draining', 30_000);
    await gw.stop({ drainMs: 10_000 });
    gwStopped = true;
    await settlement.idle();

    let total = 0;
    for (const meter of cfg.meters) {
      const rs = await settlement.ledger.readings(meter.id);
      expect(rs.map((r) => r.seq), meter.id).toEqual(rs.map((_, i) => i + 1));
      for (let i = 1; i < rs.length; i++) expect(rs[i]!.prev).toBe(rs[i - 1]!.hash);
      total += rs.length;
    }
    expect(total).toBe(gw.stats().sealed);
    const reasons = new Set((await settlement.ledger.rejections(1000)).map((r) => r.reason));
    reasons.delete('duplicate'); // a resend whose ack was lost in the outage is answered as a duplicate
    expect([...reasons]).toEqual([]);
  });
});
