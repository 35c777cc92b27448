import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { BusSimulator } from '../../devices/bus-simulator.ts';
import { getDefinition } from '../../devices/catalog.ts';
import { MeterSimulator } from '../../devices/simulator.ts';
import { loadGatewayConfig } from '../../gateway/config.ts';
import { parseUnits } from '../../gateway/scan.ts';
import { gtxAsync, gtxSync } from '../support/cli.ts';
import { PtyPair, SOCAT } from '../support/pty.ts';
import { requireOrSkip } from '../support/services.ts';
import { tempDir } from '../support/tmp.ts';

/**
 * `gtx gateway scan` as an installer runs it, against simulated buses: over RTU (a socat pty
 * pair) and TCP it finds the unit ids that answer, names each model from the catalog, and adds
 * them to ./gateway.toml with --yes; a second scan adds nothing twice.
 */
const noSocat = requireOrSkip('gateway scan over RTU', !!SOCAT, 'socat is not installed (apt-get install socat)');
const sim = (model: string, seed: number) => new MeterSimulator({ definition: getDefinition(model), profile: 'household', seed });

describe('gtx gateway scan', { timeout: 120_000 }, () => {
  const dir = tempDir('gtx-scan-');
  afterAll(() => dir.remove());
  const cleanups: Array<() => Promise<void>> = [];
  afterEach(async () => {
    for (const c of cleanups.splice(0).reverse()) await c();
  });

  it('parses unit id lists and refuses nonsense', () => {
    expect(parseUnits('1-3,7,2')).toEqual([1, 2, 3, 7]);
    expect(() => parseUnits('0-5')).toThrow(/"0-5" is not a unit id range within 1-247/);
    expect(() => parseUnits('9-2')).toThrow(/not a unit id range/);
  });

  it.skipIf(noSocat)('finds and identifies the meters on an RS-485 line and adds them to ./gateway.toml', async () => {
    const folder = join(dir.path, 'rtu');
    const pty = new PtyPair(dir.path, 'scan');
    await pty.plug();
    const bus = new BusSimulator(new Map([[2, sim('sdm630', 1)], [5, sim('abb-b23', 2)], [9, sim('sunspec-inverter-103', 3)]]));
    await bus.openSerial({ path: pty.deviceEnd, baudRate: 19_200 });
    cleanups.push(async () => {
      await bus.close();
      await pty.unplug();
    });
    expect(gtxSync(['gateway', 'init', '--config', join(folder, 'gateway.toml')]).status).toBe(0);
    const args = ['gateway', 'scan', '--serial', pty.gatewayEnd, '--baud', '19200', '--units', '1-10', '--timeout-ms', '150', '--yes'];
    const r = await gtxAsync(args, { cwd: folder });
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout).toContain(`scanning modbus-rtu://${pty.gatewayEnd}@19200/8N1, unit ids 1-10 (10), 150 ms each`);
    expect(r.stdout).toMatch(/unit {3}2: eastron-sdm630\n/);
    expect(r.stdout).toMatch(/unit {3}5: abb-b23/);
    expect(r.stdout).toMatch(/unit {3}9: sunspec-inverter-103\n/);
    expect(r.stdout).toContain('added 3 meter(s) to ./gateway.toml; check each role, then: gtx gateway test');
    const cfg = loadGatewayConfig(join(folder, 'gateway.toml'));
    expect(cfg.buses).toEqual([{ kind: 'rtu', name: 'rs485', path: pty.gatewayEnd, baudRate: 19_200, parity: 'none', dataBits: 8, stopBits: 1 }]);
    expect(cfg.meters.map((m) => [m.definition.id, m.bus, m.unitId, m.role, m.energySource])).toEqual([
      ['eastron-sdm630', 'rs485', 2, 'consumption', null],
      [expect.stringMatching(/^abb-b2[34]$/), 'rs485', 5, 'consumption', null],
      ['sunspec-inverter-103', 'rs485', 9, 'generation', 'Solar'],
    ]);
    expect(cfg.meters[0]!.id).toBe(`${cfg.id}-rs485-2`);
    // Again: the same bus is recognised, the meters are known, nothing is added twice.
    const again = await gtxAsync(args, { cwd: folder });
    expect(again.status, again.stderr).toBe(0);
    expect(again.stdout).toContain(`unit   2: eastron-sdm630 — already in ./gateway.toml as ${cfg.id}-rs485-2`);
    expect(again.stdout).toContain('nothing new to add');
    expect(loadGatewayConfig(join(folder, 'gateway.toml')).meters).toHaveLength(3);
  });

  it('scans a Modbus TCP bridge; without --yes and a terminal it only lists', async () => {
    const folder = join(dir.path, 'tcp');
    const bridge = new BusSimulator(new Map([[1, sim('sdm120', 4)], [3, sim('carlo-gavazzi-em24', 5)]]));
    const port = await bridge.listenTcp();
    cleanups.push(() => bridge.close());
    expect(gtxSync(['gateway', 'init', '--config', join(folder, 'gateway.toml')]).status).toBe(0);
    const listOnly = await gtxAsync(['gateway', 'scan', '--tcp', `127.0.0.1:${port}`, '--units', '1-4'], { cwd: folder });
    expect(listOnly.status, listOnly.stderr).toBe(0);
    expect(listOnly.stdout).toMatch(/unit {3}1: eastron-sdm120/);
    expect(listOnly.stdout).toMatch(/unit {3}3: carlo-gavazzi-em24\n/);
    expect(listOnly.stdout).toContain('run again with --yes to add 2 meter(s) to ./gateway.toml');
    expect(readFileSync(join(folder, 'gateway.toml'), 'utf8')).not.toContain('[[meters]]\nid');
    const added = await gtxAsync(['gateway', 'scan', '--tcp', `127.0.0.1:${port}`, '--units', '1-4', '--yes'], { cwd: folder });
    expect(added.status, added.stderr).toBe(0);
    const cfg = loadGatewayConfig(join(folder, 'gateway.toml'));
    expect(cfg.buses).toEqual([{ kind: 'tcp', name: 'tcp', host: '127.0.0.1', port, connectTimeoutMs: 3000 }]);
    expect(cfg.meters.map((m) => [m.unitId, m.bus])).toEqual([
      [1, 'tcp'],
      [3, 'tcp'],
    ]);
  });

  it('says what is wrong with a port that cannot be opened, or no answer at all', async () => {
    const folder = join(dir.path, 'none');
    expect(gtxSync(['gateway', 'init', '--config', join(folder, 'gateway.toml')]).status).toBe(0);
    const missing = await gtxAsync(['gateway', 'scan', '--serial', join(dir.path, 'no-such-tty')], { cwd: folder });
    expect(missing.status).toBe(2);
    expect(missing.stderr).toMatch(/^gtx: cannot open modbus-rtu:\/\/.*no-such-tty@9600\/8N1: .*is the RS-485 adapter plugged in/);
    const empty = new BusSimulator(new Map());
    const port = await empty.listenTcp();
    cleanups.push(() => empty.close());
    const silent = await gtxAsync(['gateway', 'scan', '--tcp', `127.0.0.1:${port}`, '--units', '1-3', '--timeout-ms', '50'], { cwd: folder });
    expect(silent.status, silent.stderr).toBe(0);
    expect(silent.stdout).toContain('no unit answered');
    const bad = gtxSync(['gateway', 'scan', '--tcp', 'h', '--serial', '/dev/x'], { cwd: folder });
    expect([bad.status, bad.stderr.split('\n')[0]]).toEqual([2, 'gtx: give either --serial PATH (Modbus RTU) or --tcp HOST[:PORT] (Modbus TCP)']);
  });
});
