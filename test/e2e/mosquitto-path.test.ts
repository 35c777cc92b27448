import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { connect as tcpConnect } from 'node:net';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { enroll } from '../../gateway/enroll.ts';
import { startGateway, type Gateway } from '../../gateway/main.ts';
import { generateGatewayKeyPair } from '../../protocol/index.ts';
import { startSettlement, type Settlement } from '../../settlement/main.ts';
import { freePort } from '../support/ports.ts';
import { findBinary, requireOrSkip } from '../support/services.ts';
import { gatewayConfig, settlementConfig, startSimulator, testLog } from '../support/stack.ts';
import { tempDir } from '../support/tmp.ts';
import { waitFor } from '../support/wait.ts';

const MOSQUITTO = findBinary('mosquitto');
const GTX = join(import.meta.dirname, '../../bin/gtx.js');
const ADMIN_KEY = 'admin-key-for-tests-0123456789abcdefghij'; // at least 32 characters

describe.skipIf(requireOrSkip('settlement through a real Mosquitto', !!MOSQUITTO, 'no mosquitto binary (Debian package "mosquitto")'))(
  'enrollment, readings and revocation through a real Mosquitto with the generated password file and ACL',
  () => {
    const dir = tempDir('gtx-mosq-path-');
    let mosquitto: ChildProcess | undefined;
    let settlement: Settlement | undefined;
    let gateway: Gateway | undefined;
    let stopSim: (() => Promise<void>) | undefined;
    let brokerUrl = '';
    const brokerLog: string[] = [];

    beforeAll(async () => {
      const port = await freePort();
      brokerUrl = `mqtt://127.0.0.1:${port}`;
      const out = join(dir.path, 'mosquitto');
      // Started as root, Mosquitto would switch to user "mosquitto", who cannot read a private temp dir.
      const user = process.getuid?.() === 0 ? ['--user', 'root'] : [];
      const r = spawnSync(process.execPath, [GTX, 'settlement', 'mosquitto-acl', '--out', out, '--port', String(port), '--host', '127.0.0.1', ...user], {
        encoding: 'utf8',
      });
      expect(r.status, r.stderr).toBe(0);
      mosquitto = spawn(MOSQUITTO!, ['-c', join(out, 'mosquitto.conf'), '-v'], { stdio: ['ignore', 'pipe', 'pipe'] });
      mosquitto.stdout!.on('data', (b: Buffer) => brokerLog.push(b.toString()));
      mosquitto.stderr!.on('data', (b: Buffer) => brokerLog.push(b.toString()));
      const pidFile = join(dir.path, 'mosquitto.pid');
      writeFileSync(pidFile, String(mosquitto.pid));
      await waitFor(
        () => new Promise<boolean>((res) => tcpConnect(port, '127.0.0.1', function (this: import('node:net').Socket) { this.destroy(); res(true); }).once('error', () => res(false))),
        'mosquitto listening',
        10_000,
      );

      const cfg = settlementConfig(join(dir.path, 's'));
      cfg.mqtt = {
        mode: 'external',
        url: brokerUrl,
        clientId: 'gtx-settlement-mosq-path',
        username: 'gtx-settlement',
        password: readFileSync(join(out, 'settlement.secret'), 'utf8').trim(),
        mosquittoPasswordFile: join(out, 'passwd'),
        mosquittoPidFile: pidFile,
      };
      cfg.adminKey = ADMIN_KEY;
      settlement = await startSettlement(cfg, { log: testLog('settlement') });
    });

    afterAll(async () => {
      await gateway?.stop();
      await stopSim?.();
      await settlement?.stop();
      if (mosquitto && mosquitto.exitCode === null) {
        const exited = new Promise((r) => mosquitto!.once('exit', r));
        mosquitto.kill('SIGTERM');
        await exited;
      }
      dir.remove();
    });

    it('enrolls over the API, carries readings through Mosquitto, and shuts a revoked gateway out', async () => {
      const s = settlement!;
      const admin = (path: string, body: unknown) =>
        fetch(`${s.httpUrl}/api/v1/admin${path}`, {
          method: 'POST',
          headers: { 'content-type': 'application/json', 'x-admin-key': ADMIN_KEY },
          body: JSON.stringify(body),
        });
      expect((await fetch(`${s.httpUrl}/api/v1/admin/enrollment-codes`, { method: 'POST', body: '{}' })).status).toBe(401);
      const codeRes = await admin('/enrollment-codes', { market: 'thailand_central', owner: 'alice' });
      expect(codeRes.status).toBe(201);
      const { code } = (await codeRes.json()) as { code: string };

      const sim = await startSimulator('sdm120', 'prosumer', 11);
      stopSim = () => sim.sim.stop();
      const gcfg = gatewayConfig(dir.path, 'gw-mosq', brokerUrl, [{ id: 'alice-main', model: 'sdm120', port: sim.port }]);
      const enrolled = await enroll(gcfg, s.httpUrl!, code);
      expect(enrolled).toMatchObject({ gateway: 'gw-mosq', market: 'thailand_central', owner: 'alice', meters: ['alice-main'] });
      // The code is spent.
      const again = await fetch(`${s.httpUrl}/api/v1/enrollments`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({
          code,
          gateway: 'gw-other',
          publicKeyPem: generateGatewayKeyPair().publicKeyPem,
          meters: [{ id: 'other-main', model: 'eastron-sdm120', role: 'consumption', ratedPowerW: 9000 }],
        }),
      });
      expect(again.status).toBe(410);
      expect(await again.json()).toMatchObject({ code: 'code_used' });
      expect(readFileSync(join(dir.path, 'mosquitto', 'passwd'), 'utf8')).toMatch(/^gw-mosq:\$7\$/m);

      gateway = await startGateway(gcfg, { log: testLog('gateway') });
      await waitFor(async () => (await s.ledger.readings('alice-main')).length >= 6, 'readings through Mosquitto', 20_000);
      await waitFor(() => gateway!.stats().acked > 0, 'acks back through Mosquitto');

      const revoke = await admin('/gateways/gw-mosq/revoke', {});
      expect(revoke.status).toBe(200);
      expect(readFileSync(join(dir.path, 'mosquitto', 'passwd'), 'utf8')).not.toMatch(/^gw-mosq:/m);
      // Mosquitto re-reads its password file and drops the gateway; nothing more is counted.
      await new Promise((r) => setTimeout(r, 1500));
      const countAfterRevoke = (await s.ledger.readings('alice-main')).length;
      await waitFor(() => gateway!.outboxDepth() >= 3, 'readings piling up in the outbox of the revoked gateway', 20_000);
      expect((await s.ledger.readings('alice-main')).length).toBe(countAfterRevoke);
      // Mosquitto names the gateway's connection by its username (use_username_as_clientid).
      expect(brokerLog.join('')).toMatch(/not authori[sz]ed|Client gw-mosq disconnected/i);
      expect(brokerLog.join('')).toMatch(/New client connected from \S+ as gw-mosq /);
    });
  },
);
