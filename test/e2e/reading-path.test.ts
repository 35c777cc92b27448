import { afterEach, describe, expect, it } from 'vitest';
import type { MeterSimulator } from '../../devices/simulator.ts';
import type { Gateway } from '../../gateway/main.ts';
import type { Settlement } from '../../settlement/main.ts';
import { ApiKeyStore } from '../../settlement/registry/api-keys.ts';
import { gatewayConfig, startRegisteredGateway, startSimulator, startTestSettlement } from '../support/stack.ts';
import { tempDir } from '../support/tmp.ts';
import { waitFor } from '../support/wait.ts';

describe('meter → gateway → MQTT → settlement ledger', () => {
  const cleanups: Array<() => Promise<void> | void> = [];
  afterEach(async () => {
    for (const c of cleanups.reverse()) await c();
    cleanups.length = 0;
  });

  it('stores verified readings equal to the simulator registers and empties the outbox', async () => {
    const dir = tempDir();
    cleanups.push(() => dir.remove());
    const settlement: Settlement = await startTestSettlement(dir.path, 0, true);
    cleanups.push(() => settlement.stop());
    const a = await startSimulator('sdm120', 'household', 7);
    const b = await startSimulator('sdm630', 'prosumer', 8);
    const sims: Record<string, MeterSimulator> = { 'home-a': a.sim, 'home-b': b.sim };
    cleanups.push(() => a.sim.stop(), () => b.sim.stop());

    const cfg = gatewayConfig(dir.path, 'gw-e2e', settlement.brokerUrl, [
      { id: 'home-a', model: 'sdm120', port: a.port },
      { id: 'home-b', model: 'sdm630', port: b.port },
    ]);
    const gw: Gateway = await startRegisteredGateway(settlement, cfg);
    cleanups.push(() => gw.stop());

    await waitFor(async () => (await settlement.ledger.counts()).readings >= 12, '12 readings in the ledger');

    // Freeze the meters, then wait until a reading taken after the freeze is committed.
    for (const s of Object.values(sims)) s.pause();
    const frozenAt = Date.now();
    for (const meter of Object.keys(sims)) {
      await waitFor(async () => {
        const rs = await settlement.ledger.readings(meter);
        return rs.length > 0 && Date.parse(rs.at(-1)!.ts) > frozenAt + 150;
      }, `a post-freeze reading of ${meter}`);
    }
    await waitFor(() => gw.outboxDepth() === 0 && gw.stats().inFlight === 0, 'an empty outbox');

    for (const [meter, sim] of Object.entries(sims)) {
      const rs = await settlement.ledger.readings(meter);
      const last = rs.at(-1)!;
      const expected = sim.decoded();
      expect({
        importWh: last.importWh,
        exportWh: last.exportWh,
        powerW: last.powerW,
        voltageMilliV: last.voltageMilliV,
        frequencyMilliHz: last.frequencyMilliHz,
      }).toEqual({
        importWh: expected.importWh,
        exportWh: expected.exportWh,
        powerW: expected.powerW,
        voltageMilliV: expected.voltageMilliV,
        frequencyMilliHz: expected.frequencyMilliHz,
      });
      // The chain is complete: seq 1..n with no gaps, each linking to the one before.
      expect(rs.map((r) => r.seq)).toEqual(rs.map((_, i) => i + 1));
      for (let i = 1; i < rs.length; i++) expect(rs[i]!.prev).toBe(rs[i - 1]!.hash);
      // Counters only grow.
      for (let i = 1; i < rs.length; i++) {
        expect(rs[i]!.importWh).toBeGreaterThanOrEqual(rs[i - 1]!.importWh);
        expect(rs[i]!.exportWh).toBeGreaterThanOrEqual(rs[i - 1]!.exportWh);
      }
    }
    expect((await settlement.ledger.counts()).rejections).toBe(0);
    expect(settlement.stats.readingsVerified).toBe((await settlement.ledger.counts()).readings);
    expect(gw.stats().acked).toBeGreaterThan(0);

    // Operators see the same through the HTTP API.
    const health = await fetch(`${settlement.httpUrl}/health`);
    expect(await health.json()).toEqual({ status: 'ok', ledger: settlement.ledger.engine });
    const metrics = await (await fetch(`${settlement.httpUrl}/metrics`)).text();
    const verified = (await settlement.ledger.counts()).readings;
    expect(metrics).toContain(`gtx_readings_verified_total ${verified}`);
    expect(metrics).toMatch(/gtx_gateways_connected 1\b/);
    expect(metrics).toMatch(/gtx_ingest_latency_seconds_count \d+/);
    // Per-meter data needs an API key (docs/settlement.md, "API keys").
    const { key } = await new ApiKeyStore(settlement.ledger.db).create('utility');
    const meters = (await (await fetch(`${settlement.httpUrl}/api/v1/meters`, { headers: { authorization: `Bearer ${key}` } })).json()) as Array<{ meter: string }>;
    expect(meters.map((m) => m.meter)).toEqual(['home-a', 'home-b']);
  });
});
