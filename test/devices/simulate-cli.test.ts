import { fileURLToPath } from 'node:url';
import modbusSerial from 'modbus-serial';
import { describe, expect, it } from 'vitest';
import { getDefinition, listDefinitions } from '../../devices/catalog.ts';
import { decodeRegisters } from '../../devices/decoder.ts';
import { simulateCommand, type SimulateIo } from '../../devices/simulate-cli.ts';
import { PtyPair, SOCAT } from '../support/pty.ts';
import { requireOrSkip } from '../support/services.ts';
import { tempDir } from '../support/tmp.ts';

function capture(extra: Partial<SimulateIo> = {}) {
  const out: string[] = [];
  const err: string[] = [];
  const io: SimulateIo = { stdout: (l) => out.push(l), stderr: (l) => err.push(l), handleSignals: false, ...extra };
  return { io, out, err };
}

describe('gtx simulate', () => {
  it('--list prints the catalog models', async () => {
    const { io, out } = capture();
    expect(await simulateCommand(['--list'], io)).toBe(0);
    const text = out.join('\n');
    expect(text).toMatch(/^abb-b23 \(b23\) {2}ABB B23, 3-phase$/m);
    expect(text).toMatch(/^eastron-sdm120 \(sdm120\) .*\neastron-sdm230 \(sdm230\) .*\neastron-sdm630 \(sdm630\) /m);
    expect(text).toMatch(/^sunspec-inverter-103 \(sunspec-103\) .*, 3-phase, SunSpec$/m);
    expect(out).toHaveLength(listDefinitions().length);
  });

  it.each([
    [['--model', 'sdm120'], /--profile is required/],
    [['--profile', 'pv'], /--model is required/],
    [['--model', 'sdm999', '--profile', 'pv'], /unknown device model "sdm999"; known models: .*eastron-sdm120 \(sdm120\)/],
    [['--model', 'no/such/meter.toml', '--profile', 'pv'], /invalid device definition .*no\/such\/meter\.toml: \(root\): no such file/],
    [['--model', 'sdm120', '--profile', 'solar'], /unknown profile "solar"; use one of household, pv, prosumer/],
    [['--model', 'sdm120', '--profile', 'pv', '--port', '70000'], /--port must be an integer 0\.\.65535, got "70000"/],
    [['--model', 'sdm120', '--profile', 'pv', '--speed=-2'], /--speed must be a positive number, got "-2"/],
    [['--model', 'sdm120', '--profile', 'pv', '--speed', '0'], /--speed must be a positive number, got "0"/],
    [['--model', 'sdm120', '--profile', 'pv', '--rated-w', '1kW'], /--rated-w must be a positive number of watts/],
    [['--model', 'sdm120', '--profile', 'pv', '--port'], /--port needs a value, as in --port <n>/],
    [['--model', 'sdm120', '--profile', 'pv', '--unit', 'x'], /--unit must be an integer/],
    [['--model', 'sdm120', '--profile', 'pv', '--time-zone', 'Moon/Base'], /unknown time zone "Moon\/Base"/],
    [['--modle', 'sdm120'], /unknown option --modle for gtx simulate; did you mean --model\?/],
    [['stray'], /unexpected argument "stray": gtx simulate takes only --options/],
  ])('refuses %j with exit code 2, one line and a pointer to --help', async (argv, message) => {
    const { io, out, err } = capture();
    expect(await simulateCommand(argv, io)).toBe(2);
    expect(out).toEqual([]);
    expect(err[0]).toMatch(/^gtx: /);
    expect(err[0]).toMatch(message);
    expect(err[0]).not.toMatch(/\n/); // one line, no stack trace
    expect(err.slice(1)).toEqual(['see: gtx simulate --help']);
  });

  it('serves the meter until aborted, printing where and a status line', async () => {
    const abort = new AbortController();
    const { io, out } = capture({ signal: abort.signal, statusEveryMs: 50 });
    const done = simulateCommand(['--model', 'sdm630', '--profile', 'household', '--port', '0', '--unit', '4', '--speed', '60', '--seed', '9'], io);
    while (out.length < 3) await new Promise((r) => setTimeout(r, 20));
    const match = /^simulating eastron-sdm630 \(household\) on modbus-tcp:\/\/127\.0\.0\.1:(\d+) unit 4$/.exec(out[0] ?? '');
    expect(match).not.toBeNull();
    expect(out[1]).toMatch(/power \d+ W {2}import \d+\.\d{3} kWh {2}export 0\.000 kWh$/);

    const client = new modbusSerial.default();
    await client.connectTCP('127.0.0.1', { port: Number(match?.[1]) });
    client.setID(4);
    client.setTimeout(2000);
    const reading = await decodeRegisters(getDefinition('sdm630'), async (_fc, a, n) => (await client.readInputRegisters(a, n)).data);
    expect(reading.powerW).toBeGreaterThan(0);
    await new Promise<void>((r) => client.close(() => r()));

    abort.abort();
    expect(await done).toBe(0);
    expect(out.at(-1)).toBe('simulator stopped');
  });

  it.each([
    ['sunspec-103', 'sunspec-inverter-103', 'pv', /^SunSpec marker at holding register 40000; models 1 at 40002, 103 at 40070$/],
    [fileURLToPath(new URL('../../devices/examples/generic-meter.toml', import.meta.url)), 'generic-example', 'household', undefined],
  ] as const)('serves --model %s (catalog alias or definition file) for a gateway-style read', async (model, id, profile, sunspecLine) => {
    const abort = new AbortController();
    const { io, out } = capture({ signal: abort.signal, statusEveryMs: 60_000 });
    const done = simulateCommand(['--model', model, '--profile', profile, '--port', '0'], io);
    while (out.length < (sunspecLine === undefined ? 2 : 3)) await new Promise((r) => setTimeout(r, 20));
    const match = new RegExp(`^simulating ${id} \\(${profile}\\) on modbus-tcp://127\\.0\\.0\\.1:(\\d+) unit 1$`).exec(out[0] ?? '');
    expect(match, out[0]).not.toBeNull();
    if (sunspecLine !== undefined) expect(out[1]).toMatch(sunspecLine);

    const client = new modbusSerial.default();
    await client.connectTCP('127.0.0.1', { port: Number(match?.[1]) });
    client.setID(1);
    client.setTimeout(2000);
    const def = getDefinition(model);
    const reading = await decodeRegisters(def, async (fc, a, n) => (fc === 4 ? await client.readInputRegisters(a, n) : await client.readHoldingRegisters(a, n)).data);
    expect(reading.importWh).toBe(0);
    expect(Number.isSafeInteger(reading.powerW)).toBe(true);
    await new Promise<void>((r) => client.close(() => r()));
    abort.abort();
    expect(await done).toBe(0);
  });

  it.skipIf(requireOrSkip('gtx simulate over RTU', !!SOCAT, 'socat is not installed'))('serves Modbus RTU on a serial port with --serial (a socat pty pair here)', async () => {
    const dir = tempDir('gtx-sim-rtu-');
    const pty = new PtyPair(dir.path, 'sim');
    await pty.plug();
    const abort = new AbortController();
    const { io, out } = capture({ signal: abort.signal, statusEveryMs: 60_000 });
    const done = simulateCommand(['--model', 'sdm120', '--profile', 'household', '--serial', pty.deviceEnd, '--baud', '19200', '--unit', '3'], io);
    try {
      while (out.length < 2) await new Promise((r) => setTimeout(r, 20));
      expect(out[0]).toBe(`simulating eastron-sdm120 (household) on modbus-rtu://${pty.deviceEnd}@19200/8N1 unit 3`);
      const client = new modbusSerial.default();
      await client.connectRTUBuffered(pty.gatewayEnd, { baudRate: 19200 });
      client.setID(3);
      client.setTimeout(2000);
      const reading = await decodeRegisters(getDefinition('sdm120'), async (_fc, a, n) => (await client.readInputRegisters(a, n)).data);
      expect(reading.powerW).toBeGreaterThan(0);
      await new Promise<void>((r) => client.close(() => r()));
    } finally {
      abort.abort();
      expect(await done).toBe(0);
      await pty.unplug();
      dir.remove();
    }
  });

  it('exits 1 with a clear message when the port is taken', async () => {
    const abort = new AbortController();
    const first = capture({ signal: abort.signal });
    const running = simulateCommand(['--model', 'sdm120', '--profile', 'pv', '--port', '0'], first.io);
    while (first.out.length < 1) await new Promise((r) => setTimeout(r, 20));
    const port = /:(\d+) unit/.exec(first.out[0] ?? '')?.[1] ?? '';

    const second = capture();
    expect(await simulateCommand(['--model', 'sdm120', '--profile', 'pv', '--port', port], second.io)).toBe(1);
    expect(second.err[0]).toMatch(new RegExp(`^gtx simulate: cannot listen on 127\\.0\\.0\\.1:${port}: .*EADDRINUSE`));
    abort.abort();
    expect(await running).toBe(0);
  });
});
