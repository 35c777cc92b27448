import { describe, expect, it } from 'vitest';
import { getDefinition } from '../../devices/catalog.ts';
import registerMeter from '../../flows/nodes/gtx-meter.ts';
import type { MeterReading } from '../../flows/nodes/meter-settings.ts';
import { BusSimulator } from '../../devices/bus-simulator.ts';
import { MeterSimulator } from '../../devices/simulator.ts';
import { useModbus } from '../support/modbus.ts';
import { PtyPair, SOCAT } from '../support/pty.ts';
import { requireOrSkip } from '../support/services.ts';
import { tempDir } from '../support/tmp.ts';
import { freePort } from '../support/ports.ts';
import { waitFor } from '../support/wait.ts';
import { helper, useNodeRed, watch } from './node-red-helper.ts';

const nodes = [registerMeter as (red: never) => unknown];
const noSocat = requireOrSkip('gtx-meter over RTU', !!SOCAT, 'socat is not installed (apt-get install socat)');

describe('gtx-meter (Node-RED node)', () => {
  useNodeRed();
  const modbus = useModbus();

  it('loads with its settings and lists the catalog for the editor', async () => {
    await helper.load(nodes, [{ id: 'm', type: 'gtx-meter', name: 'kitchen', meter: 'home-1', model: 'sdm120', host: '127.0.0.1', port: 1502, interval: 0 }]);
    const m = helper.getNode('m');
    expect(m.name).toBe('kitchen');
    const res = await helper.request().get('/gtx/models');
    expect(res.status).toBe(200);
    expect(res.body).toContainEqual({ id: getDefinition('sdm120').id, vendor: getDefinition('sdm120').vendor, model: getDefinition('sdm120').model });
  });

  it('polls a simulated meter over Modbus TCP and emits integer readings with a power status', async () => {
    const { sim, port } = await modbus.serve({ definition: getDefinition('sdm630'), profile: 'prosumer', seed: 3 }, 7);
    sim.pause(); // its registers hold still, so what the node emits can be compared with them
    await helper.load(nodes, [
      { id: 'm', type: 'gtx-meter', meter: 'home-1-main', model: 'sdm630', transport: 'tcp', host: '127.0.0.1', port, unitId: 7, interval: 0.2, wires: [['out']] },
      { id: 'out', type: 'helper' },
    ]);
    const out = watch('out');
    const st = watch('m');
    await waitFor(() => out.messages.length >= 2, 'two readings');
    const r = out.messages[1]!.payload as MeterReading;
    expect(r.meter).toBe('home-1-main');
    expect(Date.parse(r.ts)).toBeGreaterThan(Date.now() - 10_000);
    for (const k of ['importWh', 'exportWh', 'powerW', 'voltageMilliV', 'currentMilliA', 'frequencyMilliHz'] as const) expect(Number.isSafeInteger(r[k]), k).toBe(true);
    expect(r).not.toHaveProperty('voltageL2MilliV');
    const want = sim.decoded();
    expect(r).toEqual({ meter: 'home-1-main', ts: r.ts, importWh: want.importWh, exportWh: want.exportWh, powerW: want.powerW, voltageMilliV: want.voltageMilliV, currentMilliA: want.currentMilliA, frequencyMilliHz: want.frequencyMilliHz });
    await waitFor(() => st.statuses.some((s) => s.fill === 'green' && /W/.test(s.text ?? '')), 'a green status with the power');
  });

  it('reads once per input message when the interval is 0, keeping the message', async () => {
    const { sim, port } = await modbus.serve({ definition: getDefinition('sdm120'), profile: 'household', seed: 5 });
    sim.pause();
    await helper.load(nodes, [
      { id: 'm', type: 'gtx-meter', meter: 'flat-3', model: 'sdm120', host: '127.0.0.1', port, interval: 0, wires: [['out']] },
      { id: 'out', type: 'helper' },
    ]);
    const out = watch('out');
    helper.getNode('m').receive({ payload: 'go', check: 'installer' });
    await waitFor(() => out.messages.length === 1, 'one reading');
    const msg = out.messages[0]!;
    expect(msg.check).toBe('installer');
    expect(msg.payload).toMatchObject({ meter: 'flat-3', importWh: sim.decoded().importWh, powerW: sim.decoded().powerW });
  });

  it('reports a meter that does not answer as a node error with a red status', async () => {
    const port = await freePort();
    await helper.load(nodes, [
      { id: 'm', type: 'gtx-meter', meter: 'gone', model: 'sdm120', host: '127.0.0.1', port, interval: 0, wires: [['out']] },
      { id: 'out', type: 'helper' },
    ]);
    const m = watch('m');
    helper.getNode('m').receive({ payload: 1 });
    await waitFor(() => m.errors.length === 1, 'an error');
    expect(m.errors[0]).toMatch(new RegExp(`meter gone .* at modbus-tcp://127.0.0.1:${port} unit 1 did not answer`));
    expect(m.statuses.at(-1)).toMatchObject({ fill: 'red' });
  });

  it('refuses bad settings with a clear error instead of crashing', async () => {
    await helper.load(nodes, [
      { id: 'a', type: 'gtx-meter', meter: 'x', model: 'no-such-meter', host: '127.0.0.1', port: 502, wires: [['out']] },
      { id: 'b', type: 'gtx-meter', meter: 'bad id/../x', model: 'sdm120', host: '127.0.0.1', port: 502 },
      { id: 'c', type: 'gtx-meter', meter: 'x', model: 'sdm120', host: 'evil host;rm', port: 502 },
      { id: 'd', type: 'gtx-meter', meter: 'x', model: 'sdm120', transport: 'rtu', serial: 'ttyUSB0; reboot', baud: 9600 },
      { id: 'e', type: 'gtx-meter', meter: 'x', model: 'sdm120', host: '127.0.0.1', port: 70000 },
      { id: 'f', type: 'gtx-meter', meter: 'x', model: '../../etc/x.json', host: '127.0.0.1', port: 502 },
      { id: 'out', type: 'helper' },
    ]);
    const seen = ['a', 'b', 'c', 'd', 'e', 'f'].map((id) => ({ id, w: watch(id) }));
    for (const { id, w } of seen) {
      helper.getNode(id).receive({ payload: 1 });
      await waitFor(() => w.errors.length > 0, `an error from ${id}`);
    }
    const text = seen.map(({ w }) => w.errors.join(' '));
    expect(text[0]).toMatch(/unknown device model "no-such-meter"; known models: .*sdm120/);
    expect(text[1]).toMatch(/meter id/);
    expect(text[2]).toMatch(/host must be a host name or IP address/);
    expect(text[3]).toMatch(/serial port must look like \/dev\/ttyUSB0, got "ttyUSB0; reboot"/);
    expect(text[4]).toMatch(/port must be a whole number from 1 to 65535/);
    expect(text[5]).toMatch(/model must be a catalog id such as "sdm120" .*not a file path/);
  });

  it.skipIf(noSocat)('polls a meter over Modbus RTU (a socat serial line to a simulated RS-485 bus)', async () => {
    const dir = tempDir('gtx-nodered-rtu-');
    const pty = new PtyPair(dir.path, 'rs485');
    await pty.plug();
    const sim = new MeterSimulator({ definition: getDefinition('sdm120'), profile: 'household', seed: 4 });
    sim.pause();
    const bus = new BusSimulator(new Map([[3, sim]]));
    await bus.openSerial({ path: pty.deviceEnd, baudRate: 19_200, parity: 'even' });
    try {
      await helper.load(nodes, [
        { id: 'm', type: 'gtx-meter', meter: 'flat-3', model: 'sdm120', transport: 'rtu', serial: pty.gatewayEnd, baud: 19200, parity: 'even', unitId: 3, interval: 0.3, wires: [['out']] },
        { id: 'out', type: 'helper' },
      ]);
      const out = watch('out');
      await waitFor(() => out.messages.length >= 1, 'a reading over RTU');
      expect(out.messages[0]!.payload).toMatchObject({ meter: 'flat-3', importWh: sim.decoded().importWh, voltageMilliV: sim.decoded().voltageMilliV });
      await helper.unload();
    } finally {
      await bus.close();
      await pty.unplug();
      dir.remove();
    }
  });

  it('refuses input while it polls by itself', async () => {
    const { port } = await modbus.serve({ definition: getDefinition('sdm120'), profile: 'household' });
    await helper.load(nodes, [{ id: 'm', type: 'gtx-meter', meter: 'p', model: 'sdm120', host: '127.0.0.1', port, interval: 5 }]);
    const m = watch('m');
    helper.getNode('m').receive({ payload: 1 });
    await waitFor(() => m.errors.length === 1, 'an error');
    expect(m.errors[0]).toMatch(/polls every 5 s by itself; set its interval to 0/);
  });
});
