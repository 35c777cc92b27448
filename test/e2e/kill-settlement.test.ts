import { spawn, type ChildProcess } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import type { GatewayConfig } from '../../gateway/config.ts';
import { saveCredentials } from '../../gateway/enroll.ts';
import { loadOrCreateKey } from '../../gateway/keys.ts';
import { startGateway, type Gateway } from '../../gateway/main.ts';
import { SqliteLedger } from '../../settlement/ledger/sqlite.ts';
import { freePort } from '../support/ports.ts';
import { enrollTestGateway } from '../support/registry.ts';
import { gatewayConfig, startSimulator, testLog } from '../support/stack.ts';
import { tempDir } from '../support/tmp.ts';
import { waitFor } from '../support/wait.ts';

const GTX = join(import.meta.dirname, '../../bin/gtx.js');

describe('kill -9 of the settlement under sustained load', () => {
  const dir = tempDir('gtx-kill9-');
  const cleanups: Array<() => Promise<unknown> | void> = [];
  afterAll(async () => {
    for (const c of cleanups.reverse()) await c();
    dir.remove();
  });

  it('loses nothing acknowledged and counts nothing twice', { timeout: 120_000 }, async () => {
    const port = await freePort();
    const config = join(dir.path, 'settlement.toml');
    writeFileSync(config, `[settlement]\ndata_dir = "data"\n[mqtt]\nlisten = "127.0.0.1:${port}"\n[http]\nenabled = false\n`);
    const ledgerPath = join(dir.path, 'data', 'ledger.sqlite');

    // Four homes, enrolled before the settlement process starts.
    const ledger = new SqliteLedger(ledgerPath);
    await ledger.migrate();
    const gateways: Gateway[] = [];
    const configs: GatewayConfig[] = [];
    for (let i = 0; i < 4; i++) {
      const model = i % 2 ? 'sdm630' : 'sdm120';
      const sim = await startSimulator(model, 'prosumer', 20 + i);
      cleanups.push(() => sim.sim.stop());
      const cfg = gatewayConfig(dir.path, `gw-k${i}`, `mqtt://127.0.0.1:${port}`, [{ id: `meter-k${i}`, model, port: sim.port }]);
      cfg.pollIntervalMs = 50;
      cfg.batchMaxReadings = 2;
      cfg.batchMaxAgeMs = 100;
      const key = loadOrCreateKey(cfg.keyFile);
      const res = await enrollTestGateway(ledger, cfg.id, key.publicKeyPem, cfg.meters.map((m) => ({ id: m.id, model: m.definition.id, role: m.role, ratedPowerW: m.ratedPowerW, energySource: m.energySource })));
      saveCredentials(cfg.dataDir, res.mqtt);
      configs.push(cfg);
    }

    let child: ChildProcess | undefined;
    const startChild = () => {
      const c = spawn(process.execPath, [GTX, 'settlement', 'run', '--config', config], { stdio: ['ignore', 'ignore', 'pipe'], env: { ...process.env, GTX_LOG_LEVEL: 'warn' } });
      child = c;
      return c;
    };
    cleanups.push(() => {
      if (child && child.exitCode === null) child.kill('SIGKILL');
    });
    startChild();
    for (const cfg of configs) gateways.push(await startGateway(cfg, { log: testLog('gateway') }));
    let stopped = false;
    cleanups.push(async () => {
      if (!stopped) for (const g of gateways) await g.stop();
    });

    const readings = async () => (await ledger.counts()).readings;
    const acked = () => gateways.reduce((a, g) => a + g.stats().acked, 0);
    // The state the test needs before the kill: ingest under way, and acks already back at the
    // gateways (a busy machine can commit 40 readings before the first ack is read).
    await waitFor(async () => (await readings()) >= 40 && acked() >= 4, 'sustained ingest and acks before the kill', 30_000);
    const ackedBefore = acked();
    const killed = new Promise((r) => child!.once('exit', r));
    child!.kill('SIGKILL');
    await killed;
    const committedAtKill = await readings();
    await waitFor(() => gateways.reduce((a, g) => a + g.outboxDepth(), 0) >= 8, 'readings waiting while the settlement is dead', 20_000);

    startChild();
    await waitFor(async () => (await readings()) > committedAtKill + 20, 'ingest after the restart', 30_000);
    for (const g of gateways) await g.stop();
    stopped = true;
    // What the gateways sealed and still hold after stopping goes in with one more run.
    const restarted = gateways.map((_, i) => startGateway(configs[i]!, { log: testLog('gateway') }));
    const again = await Promise.all(restarted);
    await waitFor(() => again.every((g) => g.outboxDepth() === 0 && g.stats().inFlight === 0), 'every outbox drained', 30_000);
    // Stopping seals what was read since the last poll: let that reading be delivered too.
    for (const g of again) await g.stop({ drainMs: 30_000 });

    expect(ackedBefore).toBeGreaterThan(0);
    for (const cfg of configs) {
      const meter = cfg.meters[0]!.id;
      const rs = await ledger.readings(meter);
      // Every reading the gateway sealed is in the ledger exactly once, and the chain is whole.
      const { Outbox } = await import('../../gateway/outbox.ts');
      const ob = new Outbox(cfg.outboxFile);
      const heads = ob.meterHeads();
      const lastSeq = heads.find((h) => h.meter === meter)?.seq;
      expect(lastSeq, JSON.stringify(heads) + cfg.outboxFile).toBeDefined();
      ob.close();
      expect(rs.map((r) => r.seq)).toEqual(Array.from({ length: lastSeq! }, (_, i) => i + 1));
      for (let i = 1; i < rs.length; i++) expect(rs[i]!.prev).toBe(rs[i - 1]!.hash);
      const intervals = await ledger.intervalEnergy(meter, 0, Date.now() + 3600_000);
      expect(intervals.reduce((a, x) => a + x.importWh, 0)).toBe(rs.at(-1)!.importWh - rs[0]!.importWh);
      expect(intervals.reduce((a, x) => a + x.exportWh, 0)).toBe(rs.at(-1)!.exportWh - rs[0]!.exportWh);
    }
    const reasons = new Set((await ledger.rejections(10_000)).map((r) => r.reason));
    reasons.delete('duplicate');
    expect([...reasons]).toEqual([]);
    child!.kill('SIGTERM');
    await ledger.close();
  });
});
