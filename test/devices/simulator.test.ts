// Real parts only: the simulator on a real loopback TCP port, read by a real modbus-serial client.
import { createServer, type Server } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { getDefinition } from '../../devices/catalog.ts';
import { createSimClock } from '../../devices/clock.ts';
import { decodeRegisters, type DecodedReading } from '../../devices/decoder.ts';
import { pvProfile } from '../../devices/profiles.ts';
import { MeterSimulator } from '../../devices/simulator.ts';
import { modbusError, useModbus, type ModbusClient } from '../support/modbus.ts';

const { serve, connect } = useModbus();
type Client = ModbusClient;

function readOver(client: Client, sim: MeterSimulator): Promise<DecodedReading> {
  return decodeRegisters(sim.definition, async (fc, address, count) =>
    (fc === 4 ? await client.readInputRegisters(address, count) : await client.readHoldingRegisters(address, count)).data,
  );
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const NOON_BANGKOK = Date.UTC(2025, 5, 15, 5, 0);

describe('MeterSimulator over Modbus TCP', () => {
  for (const model of ['sdm120', 'sdm630'] as const) {
    it(`${model}: registers read over TCP decode to the snapshot (float32, converted once)`, async () => {
      const { sim, port } = await serve({
        definition: getDefinition(model),
        profile: 'prosumer',
        seed: 11,
        clock: () => NOON_BANGKOK,
        initialImportKWh: 5432.1234,
        initialExportKWh: 987.6543,
      });
      expect(port).toBeGreaterThan(0);
      const client = await connect(port);
      const snap = sim.snapshot();
      const reading = await readOver(client, sim);

      const once = (x: number, factor: number) => Math.round(Math.fround(x) * factor);
      expect(reading).toEqual({
        importWh: once(snap.importKWh, 1000),
        exportWh: once(snap.exportKWh, 1000),
        powerW: once(snap.powerW, 1),
        voltageMilliV: once(snap.voltageV, 1000),
        ...(model === 'sdm630' ? { voltageL2MilliV: once(snap.voltageV, 1000), voltageL3MilliV: once(snap.voltageV, 1000) } : {}),
        currentMilliA: once(snap.currentA, 1000),
        frequencyMilliHz: once(snap.frequencyHz, 1000),
      });
      // float32 keeps ~7 significant digits: 5432.1234 kWh is good to about half a Wh.
      expect(Math.abs(reading.importWh - snap.importKWh * 1000)).toBeLessThanOrEqual(1);
      expect(snap.powerW).toBeLessThan(0); // prosumer exporting at noon
      expect(reading).toEqual(sim.decoded());
      expect(sim.registers(4, 0x48, 4)).toEqual((await client.readInputRegisters(0x48, 4)).data);
    });
  }

  it('counters grow with power: 1 simulated hour at speed 3600', async () => {
    const clock = createSimClock({ speed: 3600, start: NOON_BANGKOK });
    const { sim, port } = await serve({ definition: getDefinition('sdm120'), profile: () => 1500, clock: clock.now, initialImportKWh: 100 });
    const client = await connect(port);
    const before = sim.snapshot();
    await sleep(1000);
    sim.pause();
    const after = sim.snapshot();
    const hours = (after.atMs - before.atMs) / 3_600_000;
    expect(hours).toBeGreaterThan(0.9);
    expect(after.importKWh - before.importKWh).toBeCloseTo(1.5 * hours, 9);
    expect(after.exportKWh).toBe(0);

    const reading = await readOver(client, sim);
    expect(reading.powerW).toBe(1500);
    expect(reading.importWh).toBe(Math.round(Math.fround(after.importKWh) * 1000));
    // The ledger's view: Wh delta ≈ 1500 W × elapsed hours (float32 at ~100 kWh resolves 0.008 Wh).
    expect(Math.abs(reading.importWh - before.importKWh * 1000 - 1500 * hours)).toBeLessThanOrEqual(1);
  });

  it('integrates a changing profile: energy matches the integral of the power', async () => {
    const profile = pvProfile({ seed: 2, ratedW: 5000 });
    let now = NOON_BANGKOK - 2 * 3_600_000;
    const sim = new MeterSimulator({ definition: getDefinition('sdm120'), profile, clock: () => now });
    const start = sim.snapshot();
    let expectedKWh = 0;
    // Independent integral, 1 s trapezoids over 4 h of passing clouds.
    for (let t = now; t < now + 4 * 3_600_000; t += 1000) expectedKWh += (-(profile(t) + profile(t + 1000)) / 2) * (1000 / 3_600_000) / 1000;
    for (let i = 0; i < 37; i++) {
      now += (4 * 3_600_000) / 37; // uneven reads, like a poller with jitter
      sim.snapshot();
    }
    const end = sim.snapshot();
    expect(end.importKWh - start.importKWh).toBe(0);
    expect(end.exportKWh - start.exportKWh).toBeCloseTo(expectedKWh, 2);
    expect(expectedKWh).toBeGreaterThan(5);
  });

  it('pause() freezes registers and snapshot while simulated time runs on', async () => {
    const clock = createSimClock({ speed: 3600, start: NOON_BANGKOK });
    const { sim, port } = await serve({ definition: getDefinition('sdm630'), profile: 'household', clock: clock.now });
    const client = await connect(port);
    sim.pause();
    const frozen = await readOver(client, sim);
    const snap = sim.snapshot();
    await sleep(300); // 18 simulated minutes
    expect(await readOver(client, sim)).toEqual(frozen);
    expect(sim.snapshot()).toEqual(snap);
    const resumedAt = clock.now();
    sim.resume();
    await sleep(300);
    const later = sim.snapshot();
    expect(later.importKWh).toBeGreaterThan(snap.importKWh);
    // The paused span is skipped, not integrated in one jump: only load since resume counts
    // (household load stays under 3 kW).
    expect(later.importKWh - snap.importKWh).toBeLessThanOrEqual((3 * (later.atMs - resumedAt)) / 3_600_000);
  });

  it('answers a wrong unit id or an address outside the documented ranges with a Modbus exception and keeps serving', async () => {
    const { sim, port } = await serve({ definition: getDefinition('sdm120'), profile: 'household' }, 3);
    const client = await connect(port, 3);
    expect(await modbusError(client.readInputRegisters(0x48, 4))).toBeUndefined();

    expect(await modbusError(client.readInputRegisters(0x0200, 2))).toBe(2); // past the SDM120's input registers
    expect(await modbusError(client.readInputRegisters(0x0158, 4))).toBe(2); // runs past the last one (0x0159)
    expect(await modbusError(client.readHoldingRegisters(0x0058, 2))).toBe(2); // between the holding ranges
    expect(await modbusError(client.readInputRegisters(0x0048, 126))).toBe(3); // over the 125-register limit
    expect(await modbusError(client.readCoils(0, 8))).toBe(1); // no coils on the meter
    expect(await modbusError(client.writeRegister(0x0048, 1))).toBe(1); // FC 06: no writes
    // Documented but not simulated: served as zeros, as a block read through the gap after voltage.
    expect((await client.readInputRegisters(0x0100, 2)).data).toEqual([0, 0]);
    expect((await client.readInputRegisters(0x0000, 4)).data.slice(2)).toEqual([0, 0]);
    expect((await client.readHoldingRegisters(0x0048, 2)).data).toEqual([0, 0]); // SDM120 energy is FC 04 only

    client.setID(1);
    expect(await modbusError(client.readInputRegisters(0x48, 4))).toBe(2);

    client.setID(3);
    const single = await client.readInputRegisters(0x0c, 1);
    expect(single.data).toHaveLength(1);
    const reading = await readOver(client, sim);
    expect(reading.importWh).toBeGreaterThanOrEqual(0);

    // A second client on the same server still gets served.
    const other = await connect(port, 3);
    expect((await other.readInputRegisters(0x46, 6)).data).toHaveLength(6);
  });

  it('picks a free port for port 0, reports a clear error for a busy one, and stop() frees everything', async () => {
    const blocker: Server = createServer();
    await new Promise<void>((r) => blocker.listen(0, '127.0.0.1', () => r()));
    const busy = (blocker.address() as { port: number }).port;
    try {
      const sim = new MeterSimulator({ definition: getDefinition('sdm120'), profile: 'pv' });
      await expect(sim.start({ port: busy })).rejects.toThrow(`cannot listen on 127.0.0.1:${busy}`);
      await sim.stop();
    } finally {
      await new Promise<void>((r) => blocker.close(() => r()));
    }

    const { sim, port } = await serve({ definition: getDefinition('sdm120'), profile: 'pv' });
    expect(sim.address).toEqual({ host: '127.0.0.1', port });
    await expect(sim.start()).rejects.toThrow(/already listening/);
    const client = await connect(port);
    await client.readInputRegisters(0, 2);
    await sim.stop();
    await sim.stop(); // idempotent
    expect(sim.address).toBeUndefined();
    await expect(connect(port)).rejects.toMatchObject({ code: 'ECONNREFUSED' });
  });
});
