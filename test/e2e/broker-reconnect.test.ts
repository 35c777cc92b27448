import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import mqtt, { type MqttClient } from 'mqtt';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { encodeEnvelope, envelopeIdOf, gatewayClientId, parseAck, signedBytes, topics, type Envelope } from '../../protocol/index.ts';
import { ClientBus } from '../../settlement/broker/bus.ts';
import { removeFromPasswordFile, upsertPasswordFile, writeMosquittoFiles } from '../../settlement/broker/mosquitto.ts';
import { startSettlement, type Settlement } from '../../settlement/main.ts';
import { EnvelopeFactory } from '../support/envelopes.ts';
import { freePort } from '../support/ports.ts';
import { enrollTestGateway } from '../support/registry.ts';
import { findBinary, requireOrSkip } from '../support/services.ts';
import { settlementConfig } from '../support/stack.ts';
import { tempDir } from '../support/tmp.ts';
import { waitFor } from '../support/wait.ts';
import { mosquittoUser, startMosquitto, type MosquittoProcess } from '../support/mosquitto.ts';

const MOSQUITTO = findBinary('mosquitto');
const GW = 'gw-reconnect';
const METER = 'reconnect-main';
/** Waits that span a few backoff steps (1 s, 2 s, 4 s …). */
const BACKOFF_WAIT_MS = 40_000;

type LogLine = Record<string, unknown> & { msg: string };

describe.skipIf(requireOrSkip('settlement reconnecting to a real Mosquitto', !!MOSQUITTO, 'no mosquitto binary (Debian package "mosquitto")'))(
  'the settlement stays connected to an external Mosquitto',
  () => {
    const dir = tempDir('gtx-broker-reconnect-');
    const logLines: LogLine[] = [];
    const log = pino({ level: 'info' }, { write: (s: string) => void logLines.push(JSON.parse(s) as LogLine) });
    const factory = new EnvelopeFactory(GW);
    // What the operator typed into settlement.toml: not the secret in the broker's password file.
    const settlementPassword = 'a-password-the-broker-does-not-know';
    let port = 0;
    let passwd = '';
    let conf = '';
    let gatewaySecret = '';
    let mosquitto: MosquittoProcess | undefined;
    let settlement: Settlement | undefined;
    const gateways: MqttClient[] = [];

    beforeAll(async () => {
      port = await freePort();
      const files = writeMosquittoFiles({ dir: join(dir.path, 'mosquitto'), port, host: '127.0.0.1', user: mosquittoUser() });
      passwd = files.passwd;
      conf = files.conf;
    });

    afterAll(async () => {
      await Promise.all(gateways.map((c) => c.endAsync(true).catch(() => undefined)));
      await settlement?.stop();
      await mosquitto?.stop();
      dir.remove();
    });

    /** Publishes the next envelope as the gateway and resolves with the settlement's ack. */
    async function publishAndAwaitAck(): Promise<{ env: Envelope; status: string }> {
      const gw = await mqtt.connectAsync(mosquitto!.url, {
        clientId: gatewayClientId(GW),
        username: GW,
        password: gatewaySecret,
        clean: true,
        reconnectPeriod: 0,
        connectTimeout: 5_000,
      });
      gateways.push(gw);
      const acks: Array<{ id: string; status: string }> = [];
      gw.on('message', (topic, payload) => {
        if (topic === topics.ack(GW)) acks.push(parseAck(payload));
      });
      await gw.subscribeAsync(topics.ack(GW), { qos: 1 });
      // Stamped now, as a gateway stamps a fresh reading.
      const reading = factory.nextReading(METER, {}, Date.now());
      factory.advance(reading);
      const env = factory.sign([reading]);
      const id = envelopeIdOf(signedBytes(env));
      await gw.publishAsync(topics.readings(GW), encodeEnvelope(env), { qos: 1 });
      const ack = await waitFor(() => acks.find((a) => a.id === id), `the settlement's ack for envelope ${id.slice(0, 12)}`).catch((e: unknown) => {
        // Say why: the settlement's own errors are the likeliest cause.
        const errors = logLines.filter((l) => Number(l.level) >= 50).slice(-3).map((l) => `${l.msg}: ${JSON.stringify(l.err ?? '')}`);
        throw new Error(`${(e as Error).message}; settlement errors: ${errors.join(' | ') || 'none'}`);
      });
      await gw.endAsync();
      return { env, status: ack.status };
    }

    it('starts while the broker is down, keeps trying through refused logins, and connects once the password file is fixed', async () => {
      const cfg = settlementConfig(join(dir.path, 's'));
      cfg.mqtt = { mode: 'external', url: `mqtt://127.0.0.1:${port}`, clientId: 'gtx-settlement-reconnect', username: 'gtx-settlement', password: settlementPassword };
      // Nothing listens on the port yet: the start must neither hang nor fail.
      settlement = await startSettlement(cfg, { log });
      const s = settlement;
      expect(s.mqttStatus()).toMatchObject({ connected: false, subscribed: false, lastConnectedAtMs: null });
      await waitFor(() => /ECONNREFUSED/.test(s.mqttStatus().lastError ?? ''), 'the refused TCP connection in status()');

      mosquitto = await startMosquitto(MOSQUITTO!, conf, port);
      const refusal = await waitFor(() => logLines.find((l) => l.msg.startsWith('mqtt login refused by the broker')), 'the refused login in the log', BACKOFF_WAIT_MS);
      expect(refusal).toMatchObject({ level: 40, component: 'mqtt', returnCode: 5, username: 'gtx-settlement', broker: `mqtt://127.0.0.1:${port}` });
      expect(refusal.hint).toBe("check [mqtt] username / GTX_MQTT_PASSWORD and the broker's password file");
      expect(JSON.stringify(logLines)).not.toContain(settlementPassword);
      expect(s.mqttStatus()).toMatchObject({ connected: false, subscribed: false, lastConnectedAtMs: null });
      expect(s.mqttStatus().lastError).toMatch(/CONNACK 5/);
      // Refused again later: mqtt.js alone would have stopped after the first.
      await waitFor(() => logLines.filter((l) => l.msg.startsWith('mqtt login refused')).length >= 2, 'a second attempt after the refusal', BACKOFF_WAIT_MS);

      // The operator fixes the password file (and a gateway is enrolled meanwhile), then reloads Mosquitto.
      const enrolled = await enrollTestGateway(s.ledger, GW, factory.publicKeyPem, [METER]);
      gatewaySecret = enrolled.mqtt.password;
      writeFileSync(
        passwd,
        upsertPasswordFile(readFileSync(passwd, 'utf8'), [
          { username: 'gtx-settlement', secret: settlementPassword },
          { username: GW, secret: gatewaySecret },
        ]),
      );
      mosquitto.reload();
      await waitFor(() => s.mqttStatus().connected && s.mqttStatus().subscribed, 'the settlement connected and subscribed, without a restart', BACKOFF_WAIT_MS);
      expect(s.mqttStatus()).toMatchObject({ lastError: null });
      expect(s.mqttStatus().lastConnectedAtMs).toBeGreaterThan(0);

      const { env, status } = await publishAndAwaitAck();
      expect(status).toBe('accepted');
      expect((await s.ledger.readings(METER)).map((r) => r.seq)).toEqual(env.readings.map((r) => r.seq));
    }, 90_000); // several backoff steps (1 + 2 + 4 + 8 s) on a busy machine

    it('reconnects and subscribes again after the broker restarts', async () => {
      const s = settlement!;
      const before = s.mqttStatus().lastConnectedAtMs!;
      await mosquitto!.stop();
      await waitFor(() => !s.mqttStatus().connected, 'the settlement noticing the broker is gone');
      expect(await waitFor(() => logLines.find((l) => l.msg === 'lost the MQTT broker; reconnecting'), 'the lost connection in the log')).toMatchObject({ level: 40 });
      // A fresh Mosquitto without persistence: no subscription survives, so readings arrive only if the settlement subscribed anew.
      mosquitto = await startMosquitto(MOSQUITTO!, conf, port);
      await waitFor(() => s.mqttStatus().subscribed, 'the settlement subscribed on the new connection', BACKOFF_WAIT_MS);
      expect(s.mqttStatus().lastConnectedAtMs!).toBeGreaterThan(before);
      expect((await publishAndAwaitAck()).status).toBe('accepted');
      expect(await s.ledger.readings(METER)).toHaveLength(2);
    }, 60_000);

    it('backs off exponentially up to the cap after refusals, and starts over after a successful login', async () => {
      const lines: LogLine[] = [];
      const busLog = pino({ level: 'info' }, { write: (s: string) => void lines.push(JSON.parse(s) as LogLine) });
      const secret = 'probe-secret';
      const bus = await ClientBus.connect(
        mosquitto!.url,
        { clientId: 'gtx-settlement-probe', username: 'gtx-settlement-probe', password: secret, clean: true },
        () => undefined,
        { log: busLog, backoff: { initialMs: 50, maxMs: 400 } },
      );
      try {
        const refusals = () => lines.filter((l) => l.msg.startsWith('mqtt login refused')).map((l) => l.retryInMs);
        await waitFor(() => refusals().length >= 5, 'five refused logins');
        expect(refusals().slice(0, 5)).toEqual([50, 100, 200, 400, 400]);

        writeFileSync(passwd, upsertPasswordFile(readFileSync(passwd, 'utf8'), [{ username: 'gtx-settlement-probe', secret }]));
        mosquitto!.reload();
        await waitFor(() => bus.status().connected, 'the probe logged in');

        // Removing the user and reloading makes Mosquitto 2.0 drop the connection; the backoff starts over.
        const seen = lines.length;
        writeFileSync(passwd, removeFromPasswordFile(readFileSync(passwd, 'utf8'), ['gtx-settlement-probe']));
        mosquitto!.reload();
        await waitFor(() => lines.slice(seen).filter((l) => l.msg.startsWith('mqtt login refused')).length >= 2, 'refusals after the reset');
        const after = lines.slice(seen).filter((l) => l.msg === 'lost the MQTT broker; reconnecting' || l.msg.startsWith('mqtt login refused'));
        expect(after.slice(0, 3).map((l) => l.retryInMs)).toEqual([50, 100, 200]);
        expect(after[0]!.msg).toBe('lost the MQTT broker; reconnecting');
      } finally {
        await bus.close();
      }
      // The settlement next door was never disturbed.
      expect(settlement!.mqttStatus()).toMatchObject({ connected: true, subscribed: true });
    });
  },
);
