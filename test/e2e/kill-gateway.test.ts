import { spawn, type ChildProcess } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { BusSimulator } from '../../devices/bus-simulator.ts';
import { getDefinition } from '../../devices/catalog.ts';
import { MeterSimulator } from '../../devices/simulator.ts';
import { loadGatewayConfig } from '../../gateway/config.ts';
import { Outbox } from '../../gateway/outbox.ts';
import type { Settlement } from '../../settlement/main.ts';
import { GTX } from '../support/cli.ts';
import { enrollGatewayConfig, startTestSettlement } from '../support/stack.ts';
import { tempDir } from '../support/tmp.ts';
import { waitFor } from '../support/wait.ts';

/**
 * `gtx gateway run` killed with SIGKILL twenty times while it publishes (power cut, OOM killer):
 * each restart continues from its outbox, and in the end the ledger holds every reading the
 * gateway sealed, exactly once: seqs 1..n per meter without a gap, the chain unbroken, nothing
 * refused but resends of what had already arrived.
 */
describe('kill -9 of the gateway while it publishes', () => {
  const dir = tempDir('gtx-kill-gw-');
  let settlement: Settlement | undefined;
  let bridge: BusSimulator | undefined;
  let child: ChildProcess | undefined;
  afterAll(async () => {
    if (child && child.exitCode === null) child.kill('SIGKILL');
    await bridge?.close();
    await settlement?.stop();
    dir.remove();
  });

  it('twenty times: no gap, no duplicate in the ledger', { timeout: 240_000 }, async () => {
    settlement = await startTestSettlement(dir.path, 0, true);
    bridge = new BusSimulator(new Map([1, 2, 3].map((u) => [u, new MeterSimulator({ definition: getDefinition(u === 2 ? 'sdm630' : 'sdm120'), profile: 'prosumer', seed: u })])));
    const port = await bridge.listenTcp();
    const config = join(dir.path, 'gateway.toml');
    const meters = [1, 2, 3].map((u) => `[[meters]]\nid = "kill-${u}"\nmodel = "${u === 2 ? 'sdm630' : 'sdm120'}"\nbus = "bridge"\nunit_id = ${u}\nrole = "bidirectional"\nenergy_source = "Solar"\n`);
    writeFileSync(
      config,
      `[gateway]\nid = "gw-kill"\ndata_dir = "gw-kill-data"\npoll_interval_s = 0.1\nbatch_max_readings = 2\nbatch_max_age_s = 0.1\n[mqtt]\nack_timeout_s = 2\n` +
        `[[buses]]\nname = "bridge"\ntcp = "127.0.0.1:${port}"\n${meters.join('')}`,
    );
    const cfg = loadGatewayConfig(config);
    await enrollGatewayConfig(settlement, cfg);
    const inLedger = async () => {
      let n = 0;
      for (const m of cfg.meters) n += (await settlement!.ledger.readings(m.id)).length;
      return n;
    };
    const run = () => {
      const c = spawn(process.execPath, [GTX, 'gateway', 'run', '--config', config], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, GTX_LOG_LEVEL: 'warn' } });
      child = c;
      return c;
    };

    for (let i = 0; i < 20; i++) {
      const before = await inLedger();
      const c = run();
      // Killed while it publishes: once settlement has taken some of this run's readings.
      await waitFor(async () => (await inLedger()) >= before + 3, `readings of run ${i + 1} in the ledger`, 30_000, 20);
      const exited = new Promise((r) => c.once('exit', r));
      c.kill('SIGKILL');
      await exited;
    }
    // A last run, stopped cleanly, delivers what the killed ones left in the outbox.
    const last = run();
    let out = '';
    last.stdout!.on('data', (b: Buffer) => (out += b.toString()));
    await waitFor(() => out.includes('running with 3 meter(s)'), 'the last run to start', 30_000);
    const lastExit = new Promise<number | null>((r) => last.once('exit', r));
    last.kill('SIGTERM');
    expect(await lastExit).toBe(0);
    await settlement.idle();

    const outbox = new Outbox(cfg.outboxFile);
    const heads = new Map(outbox.meterHeads().map((h) => [h.meter, h.seq]));
    const waiting = outbox.depth();
    outbox.close();
    expect(waiting).toBe(0);
    for (const m of cfg.meters) {
      const rs = await settlement.ledger.readings(m.id);
      expect(rs.length, m.id).toBe(heads.get(m.id));
      expect(rs.map((r) => r.seq)).toEqual(rs.map((_, i) => i + 1));
      for (let i = 1; i < rs.length; i++) expect(rs[i]!.prev).toBe(rs[i - 1]!.hash);
    }
    const reasons = new Set((await settlement.ledger.rejections(10_000)).map((r) => r.reason));
    reasons.delete('duplicate'); // a resend of an envelope whose ack died with the process
    expect([...reasons]).toEqual([]);
  });
});
