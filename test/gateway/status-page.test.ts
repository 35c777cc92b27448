import { afterEach, describe, expect, it } from 'vitest';
import { BusSimulator } from '../../devices/bus-simulator.ts';
import { getDefinition } from '../../devices/catalog.ts';
import { MeterSimulator } from '../../devices/simulator.ts';
import { startGateway } from '../../gateway/main.ts';
import { Outbox } from '../../gateway/outbox.ts';
import type { Settlement } from '../../settlement/main.ts';
import { freePort } from '../support/ports.ts';
import { enrollGatewayConfig, gatewayConfig, startTestSettlement, testLog } from '../support/stack.ts';
import { tempDir } from '../support/tmp.ts';
import { waitFor } from '../support/wait.ts';

/**
 * The gateway's local status page, and its outbox cap: while settlement is away the outbox fills
 * to its cap, says so (log state, page, metrics), keeps every envelope waiting and stores no new
 * readings; once settlement is back it drains and stores again.
 */
describe('gateway status page and outbox cap', { timeout: 90_000 }, () => {
  const cleanups: Array<() => Promise<void> | void> = [];
  afterEach(async () => {
    for (const c of cleanups.reverse()) await c();
    cleanups.length = 0;
  });

  it('shows buses, meters, broker and outbox; fills to the cap without deleting anything, then recovers', async () => {
    const dir = tempDir('gtx-status-page-');
    cleanups.push(() => dir.remove());
    const port = await freePort();
    let settlement: Settlement | undefined = await startTestSettlement(dir.path, port, true);
    cleanups.push(() => settlement?.stop());
    const bridge = new BusSimulator(new Map([[1, new MeterSimulator({ definition: getDefinition('sdm630'), profile: 'household' })], [2, new MeterSimulator({ definition: getDefinition('sdm120'), profile: 'pv' })]]));
    const bridgePort = await bridge.listenTcp();
    cleanups.push(() => bridge.close());

    const cfg = gatewayConfig(dir.path, 'gw-page', settlement.brokerUrl, []);
    cfg.buses = [{ kind: 'tcp', name: 'cabinet', host: '127.0.0.1', port: bridgePort, connectTimeoutMs: 1000 }];
    cfg.meters = [1, 2].map((unitId) => ({
      id: `page-${unitId}` as never,
      definition: getDefinition(unitId === 1 ? 'sdm630' : 'sdm120'),
      bus: 'cabinet',
      unitId,
      timeoutMs: 500,
      role: 'bidirectional' as const,
      ratedPowerW: 20_000,
      energySource: 'Solar' as const,
    }));
    cfg.statusListen = { host: '127.0.0.1', port: 0 };
    // Room for a few more pages than the empty outbox takes.
    const empty = new Outbox(cfg.outboxFile);
    cfg.outboxMaxBytes = empty.sizeBytes() + 6 * 4096;
    empty.close();
    await enrollGatewayConfig(settlement, cfg);
    const gw = await startGateway(cfg, { log: testLog('gateway') });
    let stopped = false;
    cleanups.push(() => (stopped ? undefined : gw.stop()));
    const get = async (path: string) => {
      const res = await fetch(`${gw.statusUrl}${path}`);
      return { status: res.status, type: res.headers.get('content-type'), text: await res.text() };
    };

    await waitFor(() => gw.stats().acked >= 2, 'acknowledged readings');
    const html = await get('/');
    expect([html.status, html.type]).toEqual([200, 'text/html; charset=utf-8']);
    expect(html.text).toContain('<h1>Gateway gw-page</h1>');
    expect(html.text).toContain(`cabinet: modbus-tcp://127.0.0.1:${bridgePort}`);
    expect(html.text).toMatch(/<tr class="ok"><td>page-1<\/td><td>cabinet #1<\/td><td>eastron-sdm630<\/td><td>ok<\/td>/);
    expect(html.text).toContain('<b>connected</b>');
    const json = JSON.parse((await get('/status.json')).text) as { meters: Array<{ id: string; state: string }>; broker: { connected: boolean } };
    expect(json.meters.map((m) => [m.id, m.state])).toEqual([
      ['page-1', 'ok'],
      ['page-2', 'ok'],
    ]);
    expect((await get('/metrics')).text).toMatch(/^gtx_gateway_meter_up\{meter="page-1",bus="cabinet"\} 1$/m);
    expect((await fetch(`${gw.statusUrl}/`, { method: 'POST' })).status).toBe(405);

    // Settlement goes away: the outbox fills to its cap and stops storing, deleting nothing.
    await settlement.stop();
    settlement = undefined;
    await waitFor(() => gw.outboxFill().state === 'full', 'the outbox to reach its cap', 60_000);
    const depthAtCap = gw.outboxDepth();
    await waitFor(() => gw.outboxFill().notStored >= 4, 'readings not stored while full');
    expect(gw.outboxDepth()).toBe(depthAtCap);
    expect((await get('/')).text).toContain('FULL: new readings are not stored');
    expect((await get('/metrics')).text).toMatch(/^gtx_gateway_readings_not_stored_total [1-9]\d*$/m);
    expect((await get('/metrics')).text).toMatch(/^gtx_gateway_broker_connected 0$/m);

    // Back: everything waiting is delivered, the outbox has room and stores again.
    settlement = await startTestSettlement(dir.path, port, true);
    await waitFor(() => gw.outboxDepth() === 0, 'the outbox to drain', 30_000);
    await waitFor(() => gw.outboxFill().state === 'ok', 'the outbox below its cap');
    const sealedBefore = gw.stats().sealed;
    await waitFor(() => gw.stats().sealed > sealedBefore, 'new readings stored again');
    await gw.stop({ drainMs: 10_000 });
    stopped = true;
    await settlement.idle();
    for (const id of ['page-1', 'page-2']) {
      const rs = await settlement.ledger.readings(id);
      expect(rs.map((r) => r.seq)).toEqual(rs.map((_, i) => i + 1)); // nothing stored was lost: no gap in any chain
    }
  });
});
