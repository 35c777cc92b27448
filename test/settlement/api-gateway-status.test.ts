import { afterEach, describe, expect, it } from 'vitest';
import { ApiKeyStore } from '../../settlement/registry/api-keys.ts';
import { gatewayConfig, startRegisteredGateway, startSimulator, startTestSettlement } from '../support/stack.ts';
import { tempDir } from '../support/tmp.ts';
import { waitFor } from '../support/wait.ts';

/**
 * GET /api/v1/gateways on a running settlement with a real gateway: its retained status message
 * says online (with its outbox), its clean stop says offline, and an installer key for its owner
 * sees it with its last reading.
 */
describe('gateway status through the running settlement', () => {
  const cleanups: Array<() => Promise<void> | void> = [];
  afterEach(async () => {
    for (const c of cleanups.reverse()) await c();
    cleanups.length = 0;
  });

  it('online while the gateway runs, offline once it stops', async () => {
    const dir = tempDir();
    cleanups.push(() => dir.remove());
    const settlement = await startTestSettlement(dir.path, 0, true);
    cleanups.push(() => settlement.stop());
    const sim = await startSimulator('sdm120', 'household', 3);
    cleanups.push(() => sim.sim.stop());
    const gw = await startRegisteredGateway(settlement, gatewayConfig(dir.path, 'gw-status', settlement.brokerUrl, [{ id: 'status-m1', model: 'sdm120', port: sim.port }]));
    let running = true;
    cleanups.push(() => (running ? gw.stop() : undefined));
    const { key } = await new ApiKeyStore(settlement.ledger.db).create('installer', 'Acme', null, ['owner-gw-status']);

    type GatewayJson = { id: string; status: string; owner: string; outbox?: number; lastSeen: string | null; meters: string[] };
    const gateways = async () => (await (await fetch(`${settlement.httpUrl}/api/v1/gateways`, { headers: { authorization: `Bearer ${key}` } })).json()) as GatewayJson[];
    const online = await waitFor(async () => (await gateways()).find((g) => g.id === 'gw-status' && g.status === 'online' && g.outbox !== undefined), 'gw-status online');
    expect(online).toMatchObject({ owner: 'owner-gw-status', meters: ['status-m1'], lastSeen: expect.stringMatching(/Z$/) });
    const meters = await waitFor(async () => {
      const res = await fetch(`${settlement.httpUrl}/api/v1/meters`, { headers: { authorization: `Bearer ${key}` } });
      const rows = (await res.json()) as Array<{ meter: string; lastReading: { seq: number } | null }>;
      return rows.find((m) => m.meter === 'status-m1' && m.lastReading !== null);
    }, 'a last reading of status-m1');
    expect(meters.lastReading!.seq).toBeGreaterThan(0);

    await gw.stop();
    running = false;
    await waitFor(async () => (await gateways()).find((g) => g.id === 'gw-status' && g.status === 'offline'), 'gw-status offline after its stop');
  });
});
