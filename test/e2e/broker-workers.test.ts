import { spawnSync } from 'node:child_process';
import { readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import mqtt, { type MqttClient } from 'mqtt';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { gatewayClientId, topics } from '../../protocol/index.ts';
import { ClientBus } from '../../settlement/broker/bus.ts';
import { newSecret } from '../../settlement/broker/credentials.ts';
import { upsertPasswordFile } from '../../settlement/broker/mosquitto.ts';
import { freePort } from '../support/ports.ts';
import { findBinary, requireOrSkip } from '../support/services.ts';
import { tempDir } from '../support/tmp.ts';
import { waitFor } from '../support/wait.ts';
import { mosquittoUser, startMosquitto, type MosquittoProcess } from '../support/mosquitto.ts';

const MOSQUITTO = findBinary('mosquitto');
const GTX = join(import.meta.dirname, '../../bin/gtx.js');
const GROUP = 'gtx-ingest';
const READINGS = 40;

describe.skipIf(requireOrSkip('settlement workers on a real Mosquitto', !!MOSQUITTO, 'no mosquitto binary (Debian package "mosquitto")'))(
  'several settlement workers on one Mosquitto configured by `gtx settlement mosquitto-acl --workers 2`',
  () => {
    const dir = tempDir('gtx-broker-workers-');
    const out = join(dir.path, 'mosquitto');
    const logLines: Array<Record<string, unknown>> = [];
    const log = pino({ level: 'info' }, { write: (s: string) => void logLines.push(JSON.parse(s) as Record<string, unknown>) });
    const gwSecret = newSecret();
    let mosquitto: MosquittoProcess | undefined;
    let port = 0;
    let stdout = '';
    const buses: ClientBus[] = [];
    let gateway: MqttClient | undefined;

    beforeAll(async () => {
      port = await freePort();
      const user = mosquittoUser();
      const r = spawnSync(
        process.execPath,
        [GTX, 'settlement', 'mosquitto-acl', '--out', out, '--port', String(port), '--host', '127.0.0.1', '--workers', '2', ...(user ? ['--user', user] : [])],
        { encoding: 'utf8' },
      );
      expect(r.status, r.stderr).toBe(0);
      stdout = r.stdout;
      // A gateway, as enrollment would add it.
      const passwd = join(out, 'passwd');
      writeFileSync(passwd, upsertPasswordFile(readFileSync(passwd, 'utf8'), [{ username: 'gw-w', secret: gwSecret }]));
      mosquitto = await startMosquitto(MOSQUITTO!, join(out, 'mosquitto.conf'), port);
    });

    const secretOf = (n: number) => readFileSync(join(out, `settlement-${n}.secret`), 'utf8').trim();

    async function connectGateway(): Promise<MqttClient> {
      await gateway?.endAsync(true).catch(() => undefined);
      gateway = await mqtt.connectAsync(mosquitto!.url, { clientId: gatewayClientId('gw-w'), username: 'gw-w', password: gwSecret, reconnectPeriod: 0 });
      return gateway;
    }

    afterAll(async () => {
      await gateway?.endAsync(true).catch(() => undefined);
      await Promise.all(buses.map((b) => b.close().catch(() => undefined)));
      await mosquitto?.stop();
      dir.remove();
    });

    it('writes one user and one 0600 secret per worker, and prints each worker its settlement.toml', () => {
      for (const n of [1, 2]) {
        const file = join(out, `settlement-${n}.secret`);
        expect(statSync(file).mode & 0o777).toBe(0o600);
        expect(stdout).toContain(`username = "gtx-settlement-${n}"   # password: GTX_MQTT_PASSWORD=$(cat ${file})`);
      }
      expect(stdout.match(/shared_group = "gtx-ingest"/g)).toHaveLength(2);
      expect(readFileSync(join(out, 'passwd'), 'utf8')).toMatch(/^gtx-settlement-1:\$7\$.*\ngtx-settlement-2:\$7\$/m);
      expect(readFileSync(join(out, 'mosquitto.conf'), 'utf8')).toContain('use_username_as_clientid true');
    });

    it('keeps both workers connected (even with the same configured client id) and shares the readings between them', async () => {
      const received: string[][] = [[], []];
      for (const n of [1, 2]) {
        const bus = await ClientBus.connect(
          mosquitto!.url,
          // A copied settlement.toml: the same client id for both. Mosquitto replaces it by the username.
          { clientId: 'gtx-settlement-copied', username: `gtx-settlement-${n}`, password: secretOf(n), clean: true },
          (e) => log.error({ err: e, worker: n }, 'mqtt error'),
          { log: log.child({ worker: n }) },
        );
        buses.push(bus);
        await bus.subscribe([`$share/${GROUP}/${topics.allReadings}`], (_topic, payload) => void received[n - 1]!.push(payload.toString()));
      }
      await waitFor(() => buses.every((b) => b.status().subscribed), 'both workers subscribed');
      const connectedAt = buses.map((b) => b.status().lastConnectedAtMs);

      const gw = await connectGateway();
      for (let i = 0; i < READINGS; i++) await gw.publishAsync(topics.readings('gw-w'), `reading ${i}`, { qos: 1 });
      await waitFor(() => received[0]!.length + received[1]!.length >= READINGS, 'every reading at one of the workers');

      // Each reading went to exactly one worker, and each worker got some.
      expect([...received[0]!, ...received[1]!].sort()).toEqual(Array.from({ length: READINGS }, (_, i) => `reading ${i}`).sort());
      expect(received[0]!.length).toBeGreaterThan(0);
      expect(received[1]!.length).toBeGreaterThan(0);
      // Nobody was knocked off: same connections as before, nothing lost in the log.
      expect(buses.map((b) => b.status())).toEqual(connectedAt.map((at) => ({ connected: true, subscribed: true, lastConnectedAtMs: at, lastError: null })));
      expect(logLines.filter((l) => Number(l.level) >= 40)).toEqual([]);
      expect(mosquitto!.output.filter((l) => /New client connected .* as gtx-settlement-[12] /.test(l))).toHaveLength(2);
    });

    it("holds the next message while the handler's promise is pending (back-pressure), also on a new connection after a broker restart", async () => {
      await Promise.all(buses.splice(0).map((b) => b.close()));
      const fast = { initialMs: 50, maxMs: 200 };
      const connectWorker = async (n: number) => {
        const bus = await ClientBus.connect(mosquitto!.url, { clientId: `gtx-settlement-w${n}`, username: `gtx-settlement-${n}`, password: secretOf(n), clean: true }, () => undefined, {
          log: log.child({ worker: n }),
          backoff: fast,
        });
        buses.push(bus);
        return bus;
      };
      // Worker 1 holds every "… 1" until released; worker 2 only watches, as a barrier.
      const held: string[] = [];
      let release: () => void = () => undefined;
      const slow = await connectWorker(1);
      await slow.subscribe([topics.allReadings], (_t, p) => {
        held.push(p.toString());
        if (p.toString().endsWith(' 1')) return new Promise<void>((r) => (release = r));
      });
      const watched: string[] = [];
      const watcher = await connectWorker(2);
      await watcher.subscribe([topics.allReadings], (_t, p) => void watched.push(p.toString()));

      async function round(tag: string): Promise<void> {
        await waitFor(() => slow.status().subscribed && watcher.status().subscribed, `both workers subscribed (${tag})`);
        const gw = await connectGateway();
        const start = held.length;
        for (const i of [1, 2, 3]) await gw.publishAsync(topics.readings('gw-w'), `${tag} ${i}`, { qos: 1 });
        await waitFor(() => watched.includes(`${tag} 3`), `the watcher got "${tag} 3"`);
        await waitFor(() => held.length > start, `"${tag} 1" at the slow worker`);
        expect(held.slice(start)).toEqual([`${tag} 1`]);
        release();
        await waitFor(() => held.length - start >= 3, `the rest of "${tag}" after the release`);
        expect(held.slice(start)).toEqual([`${tag} 1`, `${tag} 2`, `${tag} 3`]);
      }

      await round('first');
      await mosquitto!.stop();
      await waitFor(() => !slow.status().connected, 'the workers noticing the broker is gone');
      mosquitto = await startMosquitto(MOSQUITTO!, join(out, 'mosquitto.conf'), port);
      await round('after restart');
    });
  },
);
