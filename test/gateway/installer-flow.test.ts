import { appendFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { BusSimulator } from '../../devices/bus-simulator.ts';
import { getDefinition } from '../../devices/catalog.ts';
import { MeterSimulator } from '../../devices/simulator.ts';
import type { Settlement } from '../../settlement/main.ts';
import { gtxAsync, gtxSync } from '../support/cli.ts';
import { startTestSettlement } from '../support/stack.ts';
import { tempDir } from '../support/tmp.ts';

/**
 * The installer's way, with the real CLI in one folder: init → scan → enroll → test, against a
 * simulated RS-485/TCP bridge and a real settlement. `test` shows each meter's values, warns of
 * a reversed current transformer, names a meter that does not answer, and gets one signed
 * reading of each live meter acknowledged into the ledger.
 */
describe('gtx gateway init → scan → enroll → test', { timeout: 120_000 }, () => {
  const dir = tempDir('gtx-installer-');
  let settlement: Settlement | undefined;
  let bridge: BusSimulator | undefined;
  afterAll(async () => {
    await bridge?.close();
    await settlement?.stop();
    dir.remove();
  });

  it('reads, warns and publishes one acknowledged reading per meter', async () => {
    settlement = await startTestSettlement(dir.path, 0, true);
    bridge = new BusSimulator(
      new Map([
        [1, new MeterSimulator({ definition: getDefinition('sdm630'), profile: () => 1200, initialImportKWh: 42 })],
        // Exporting 900 W on a meter the installer calls consumption-only: the CT is on backwards.
        [2, new MeterSimulator({ definition: getDefinition('sdm120'), profile: () => -900, initialImportKWh: 7 })],
      ]),
    );
    const port = await bridge.listenTcp();
    const here = { cwd: dir.path };
    expect(gtxSync(['gateway', 'init'], here).status).toBe(0);
    const scanned = await gtxAsync(['gateway', 'scan', '--tcp', `127.0.0.1:${port}`, '--units', '1-3', '--timeout-ms', '100', '--yes'], here);
    expect(scanned.status, scanned.stderr).toBe(0);
    // Before enrollment: values only.
    const local = await gtxAsync(['gateway', 'test', '--no-publish'], here);
    expect(local.status, local.stderr).toBe(0);
    // The simulator's voltage and frequency wander a little; energy grows while it runs.
    expect(local.stdout).toMatch(/-tcp-1 \(eastron-sdm630, unit 1, consumption\): import 42\.0\d\d kWh, export 0\.000 kWh, power 1200 W, voltage 2\d\d\.\d V \(L2 2\d\d\.\d V, L3 2\d\d\.\d V\), current [\d.]+ A, frequency (49|50)\.\d\d Hz\n/);
    expect(local.stdout).toMatch(/-tcp-2 \(eastron-sdm120, unit 2, consumption\): .*power -900 W/);
    expect(local.stdout).toContain('    WARNING: power is -900 W (exporting) on a consumption-only meter: is the current transformer on backwards, or is the role wrong?');
    expect(local.stdout).toContain('2 of 2 meter(s) answered, 1 warning(s)');
    const unenrolled = await gtxAsync(['gateway', 'test'], here);
    expect([unenrolled.status, unenrolled.stderr.split('\n')[0]]).toEqual([2, 'gtx: this gateway is not enrolled yet (no MQTT login): gtx gateway enroll --url URL --code CODE first, or use --no-publish']);

    const { code } = await settlement.enrollment.issueCode({ market: 'thailand_central', owner: 'carol', ttlMs: 600_000 });
    const enrolled = await gtxAsync(['gateway', 'enroll', '--url', settlement.httpUrl!, '--code', code], here);
    expect(enrolled.status, enrolled.stderr).toBe(0);
    const tested = await gtxAsync(['gateway', 'test'], here);
    expect(tested.status, tested.stdout + tested.stderr).toBe(0);
    expect(tested.stdout).toMatch(/publishing envelope \S+ \(2 reading\(s\)\) to mqtt:\/\/127\.0\.0\.1:\d+…/);
    expect(tested.stdout).toContain('acknowledged by settlement: the gateway is ready (gtx gateway run)');
    const meters = (await settlement.ledger.listMeters()).filter((m) => m.id.includes('-tcp-'));
    expect(meters).toHaveLength(2);
    for (const m of meters) expect((await settlement.ledger.readings(m.id)).map((r) => r.seq)).toEqual([1]);

    // A meter that stops answering: named, exit 1; the others are still published.
    appendFileSync(join(dir.path, 'gateway.toml'), `\n[[meters]]\nid = "ghost"\nmodel = "sdm120"\nbus = "tcp"\nunit_id = 3\ntimeout_s = 0.2\n`);
    const ghost = await gtxAsync(['gateway', 'test', '--no-publish'], here);
    expect(ghost.status).toBe(1);
    expect(ghost.stdout).toMatch(/ {2}ghost \(eastron-sdm120, unit 3\): NO ANSWER: .*did not answer|ghost \(eastron-sdm120, unit 3\): NO ANSWER/);
    expect(ghost.stdout).toContain('2 of 3 meter(s) answered');
  });
});
