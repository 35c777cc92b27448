import { createServer, type Server } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { BusSimulator } from '../../devices/bus-simulator.ts';
import { getDefinition } from '../../devices/catalog.ts';
import type { DecodedReading } from '../../devices/decoder.ts';
import { MeterSimulator } from '../../devices/simulator.ts';
import { BusPoller } from '../../gateway/bus.ts';
import type { BusConfig, MeterConfig } from '../../gateway/config.ts';
import { meterId } from '../../protocol/index.ts';
import { PtyPair, SOCAT } from '../support/pty.ts';
import { requireOrSkip } from '../support/services.ts';
import { tempDir } from '../support/tmp.ts';
import { waitFor } from '../support/wait.ts';

/**
 * Buses, through real Modbus: RTU over a socat pseudo-terminal pair (the gateway's serial code
 * path) and TCP. Several meters share a bus by unit id; a silent meter costs the bus only its
 * timeout and then backs off, so the live ones keep their interval; a port that vanishes and
 * returns, or a TCP bridge that restarts, is reopened without a restart.
 */
const noSocat = requireOrSkip('RTU bus tests', !!SOCAT, 'socat is not installed (apt-get install socat)');

function meter(id: string, model: string, bus: string, unitId: number, intervalMs: number, timeoutMs = 300): MeterConfig {
  const definition = getDefinition(model);
  return { id: meterId(id), definition, bus, unitId, timeoutMs, intervalMs, role: 'consumption', ratedPowerW: definition.maxPowerW, energySource: null };
}

function sim(model: string, seed: number): MeterSimulator {
  return new MeterSimulator({ definition: getDefinition(model), profile: 'household', seed, initialImportKWh: 100 + seed });
}

/** What a poller delivered: per meter, the readings and when (ms). */
class Recorder {
  readonly readings = new Map<string, Array<{ at: number; values: DecodedReading }>>();
  readonly failures = new Map<string, number>();
  recovered: string[] = [];
  options(defaultIntervalMs = 500) {
    return {
      defaultIntervalMs,
      maxBackoffMs: 4_000,
      onReading: (m: MeterConfig, values: DecodedReading) => {
        const list = this.readings.get(m.id) ?? [];
        list.push({ at: performance.now(), values });
        this.readings.set(m.id, list);
      },
      onFailure: (m: MeterConfig) => this.failures.set(m.id, (this.failures.get(m.id) ?? 0) + 1),
      onRecovery: (m: MeterConfig) => this.recovered.push(m.id),
    };
  }
  count(id: string): number {
    return this.readings.get(id)?.length ?? 0;
  }
  /** Median time between a meter's consecutive readings, ms. */
  medianGap(id: string): number {
    const at = (this.readings.get(id) ?? []).map((r) => r.at);
    const gaps = at.slice(1).map((t, i) => t - at[i]!).sort((a, b) => a - b);
    return gaps[Math.floor(gaps.length / 2)] ?? Infinity;
  }
}

describe('buses', { timeout: 60_000 }, () => {
  const dir = tempDir('gtx-buses-');
  const cleanups: Array<() => Promise<void>> = [];
  afterEach(async () => {
    for (const c of cleanups.splice(0).reverse()) await c();
  });

  async function rtuBus(units: Map<number, MeterSimulator>, name: string) {
    const pty = new PtyPair(dir.path, name);
    await pty.plug();
    const bus = new BusSimulator(units);
    await bus.openSerial({ path: pty.deviceEnd, baudRate: 19_200 });
    cleanups.push(async () => {
      await bus.close();
      await pty.unplug();
    });
    const cfg: BusConfig = { kind: 'rtu', name, path: pty.gatewayEnd, baudRate: 19_200, parity: 'none', dataBits: 8, stopBits: 1 };
    return { pty, bus, cfg };
  }

  function poll(cfg: BusConfig, meters: MeterConfig[], rec: Recorder) {
    const poller = new BusPoller(cfg, meters, rec.options());
    poller.start();
    cleanups.push(() => poller.stop());
    return poller;
  }

  it.skipIf(noSocat)('reads several meters by unit id over RTU, each decoding to what its simulator holds', async () => {
    const units = new Map([
      [1, sim('sdm120', 1)],
      [2, sim('sdm630', 2)],
      [7, sim('sdm120', 3)],
    ]);
    const { cfg } = await rtuBus(units, 'rtu-a');
    const rec = new Recorder();
    const poller = poll(cfg, [meter('a1', 'sdm120', 'rtu-a', 1, 200), meter('a2', 'sdm630', 'rtu-a', 2, 200), meter('a7', 'sdm120', 'rtu-a', 7, 200)], rec);
    await waitFor(() => ['a1', 'a2', 'a7'].every((id) => rec.count(id) >= 3), 'three readings of each meter');
    for (const [unit, id] of [[1, 'a1'], [2, 'a2'], [7, 'a7']] as const) {
      const got = rec.readings.get(id)!.at(-1)!.values;
      const truth = units.get(unit)!.decoded();
      // Counters move between the read and this check; a few Wh at most.
      expect(Math.abs(got.importWh - truth.importWh)).toBeLessThan(50);
      expect(got.importWh).toBeGreaterThan(100_000);
    }
    expect(poller.meters().map((m) => [m.id, m.state, m.bus, m.unitId])).toEqual([
      ['a1', 'ok', 'rtu-a', 1],
      ['a2', 'ok', 'rtu-a', 2],
      ['a7', 'ok', 'rtu-a', 7],
    ]);
  });

  it.skipIf(noSocat)('a silent meter costs the bus its timeout and backs off; the live ones keep their interval', async () => {
    const units = new Map([
      [1, sim('sdm120', 4)],
      [2, sim('sdm120', 5)],
      [3, sim('sdm120', 6)],
    ]);
    const { bus, cfg } = await rtuBus(units, 'rtu-b');
    bus.silence(2);
    const rec = new Recorder();
    const poller = poll(cfg, [meter('b1', 'sdm120', 'rtu-b', 1, 400), meter('b2', 'sdm120', 'rtu-b', 2, 400, 600), meter('b3', 'sdm120', 'rtu-b', 3, 400)], rec);
    await waitFor(() => rec.count('b1') >= 16 && rec.count('b3') >= 16, 'sixteen readings of each live meter', 30_000);
    // Without backoff the dead meter's 600 ms timeout in every cycle would stretch the live
    // meters' 400 ms to 700 ms or more.
    expect(rec.medianGap('b1')).toBeLessThan(560);
    expect(rec.medianGap('b3')).toBeLessThan(560);
    const attempts = rec.failures.get('b2') ?? 0;
    expect(attempts).toBeGreaterThan(0);
    expect(attempts).toBeLessThanOrEqual(6); // waits 0.4, 0.8, 1.6, 3.2, 4 s … over about 6.4 s
    expect(poller.meters().find((m) => m.id === 'b2')).toMatchObject({ state: 'failing', lastError: expect.stringContaining('did not answer') });
    // It answers again: read at its next attempt, reported once as recovered.
    bus.silence(2, false);
    await waitFor(() => rec.count('b2') >= 1, 'the meter that came back', 10_000);
    expect(rec.recovered).toEqual(['b2']);
  });

  it.skipIf(noSocat)('a serial port that vanishes and returns is reopened without a restart', async () => {
    const units = new Map([[1, sim('sdm630', 7)]]);
    const { pty, bus, cfg } = await rtuBus(units, 'rtu-c');
    const rec = new Recorder();
    const poller = poll(cfg, [meter('c1', 'sdm630', 'rtu-c', 1, 200)], rec);
    await waitFor(() => rec.count('c1') >= 2, 'readings before the unplug');
    await bus.closeSerial();
    await pty.unplug();
    await waitFor(() => poller.meters()[0]!.state === 'failing', 'the meter failing while unplugged');
    const before = rec.count('c1');
    await pty.plug();
    await bus.openSerial({ path: pty.deviceEnd, baudRate: 19_200 });
    await waitFor(() => rec.count('c1') >= before + 2, 'readings after the adapter is back', 20_000);
    expect(poller.meters()[0]!.state).toBe('ok');
  });

  it('a TCP bridge that takes connections and never answers costs only its bus; another bus keeps going, and a restarted bridge is reconnected', async () => {
    // A bridge that accepts and stays silent.
    const silent: Server = createServer((s) => s.resume()); // reads requests, answers nothing
    await new Promise<void>((r) => silent.listen(0, '127.0.0.1', () => r()));
    cleanups.push(() => new Promise<void>((r) => silent.close(() => r())));
    const silentPort = (silent.address() as { port: number }).port;
    const live = new BusSimulator(new Map([[1, sim('sdm120', 8)], [2, sim('sdm630', 9)]]));
    const livePort = await live.listenTcp();
    cleanups.push(() => live.close());
    const rec = new Recorder();
    const deadBus: BusConfig = { kind: 'tcp', name: 'dead', host: '127.0.0.1', port: silentPort, connectTimeoutMs: 300 };
    const liveBus: BusConfig = { kind: 'tcp', name: 'live', host: '127.0.0.1', port: livePort, connectTimeoutMs: 300 };
    poll(deadBus, [meter('d1', 'sdm120', 'dead', 1, 300)], rec);
    const livePoller = poll(liveBus, [meter('l1', 'sdm120', 'live', 1, 300), meter('l2', 'sdm630', 'live', 2, 300)], rec);
    await waitFor(() => rec.count('l1') >= 10 && rec.count('l2') >= 10, 'ten readings of each live meter');
    expect(rec.count('d1')).toBe(0);
    expect(rec.medianGap('l1')).toBeLessThan(450);
    // The bridge restarts on the same port: the poller reconnects by itself.
    await live.close();
    await waitFor(() => livePoller.meters().every((m) => m.state === 'failing'), 'the live bus failing while its bridge is down');
    const before = rec.count('l1');
    await live.listenTcp('127.0.0.1', livePort);
    await waitFor(() => rec.count('l1') >= before + 2, 'readings after the bridge is back', 20_000);
  });
});
