import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import mqtt from 'mqtt';
import { afterEach, describe, expect, it } from 'vitest';
import { DEFAULT_BROKER_URL, loadGatewayConfig } from '../../gateway/config.ts';
import { brokerSettings, reachableBrokerUrl, saveCredentials } from '../../gateway/enroll.ts';
import { startGateway } from '../../gateway/main.ts';
import { NO_ACK_HINT } from '../../gateway/publisher.ts';
import { asEnvelope, envelopeIdOf, signedBytes, topics } from '../../protocol/index.ts';
import { startEmbeddedBroker } from '../../settlement/broker/embedded.ts';
import { startSimulator } from '../support/stack.ts';
import { tempDir } from '../support/tmp.ts';
import { waitFor } from '../support/wait.ts';
import { capturedLog } from './captured-log.ts';
import { gtx, writeGatewayToml } from './gateway-toml.ts';

describe('gateway publishing: broker URL, missing acknowledgements, refusals', () => {
  const cleanups: Array<() => Promise<unknown> | unknown> = [];
  afterEach(async () => {
    for (const c of cleanups.reverse()) await c();
    cleanups.length = 0;
  });
  const dir = () => {
    const d = tempDir('gtx-gw-broker-');
    cleanups.push(() => d.remove());
    return d.path;
  };

  it('uses the enrolled broker unless [mqtt] url is set on purpose; gtx gateway init leaves it unset', { timeout: 60_000 }, () => {
    const d = dir();
    const init = gtx(['gateway', 'init', '--id', 'gw-new', '--data-dir', join(d, 'data'), '--write-config', join(d, 'gw.toml')]);
    expect(init.status, init.stderr).toBe(0);
    expect(readFileSync(join(d, 'gw.toml'), 'utf8')).toMatch(/^# url = /m);
    const fromInit = loadGatewayConfig(join(d, 'gw.toml'));
    expect(fromInit.mqtt.url).toBeUndefined();
    expect(brokerSettings(fromInit)).toEqual({ url: DEFAULT_BROKER_URL, source: 'default' });

    saveCredentials(fromInit.dataDir, { url: 'mqtt://settlement.example:18830', username: 'gw-new', password: 's3cret' });
    expect(brokerSettings(fromInit)).toEqual({ url: 'mqtt://settlement.example:18830', username: 'gw-new', password: 's3cret', source: 'enrollment' });

    const explicit = writeGatewayToml(d, { id: 'gw-new', meter: 'm', meterPort: 5020, url: 'mqtt://10.0.0.9:1883' });
    const cfg = loadGatewayConfig(explicit);
    expect(cfg.mqtt.url).toBe('mqtt://10.0.0.9:1883');
    saveCredentials(cfg.dataDir, { url: 'mqtt://settlement.example:18830', username: 'gw-new', password: 's3cret' });
    expect(brokerSettings(cfg)).toMatchObject({ url: 'mqtt://10.0.0.9:1883', username: 'gw-new', source: 'config' });
  });

  it('makes the broker URL settlement returns reachable from the gateway', () => {
    expect(reachableBrokerUrl('mqtt://0.0.0.0:1883', 'http://192.168.1.10:8080')).toBe('mqtt://192.168.1.10:1883');
    expect(reachableBrokerUrl('mqtt://127.0.0.1:1883', 'http://settle.example:8080/')).toBe('mqtt://settle.example:1883');
    expect(reachableBrokerUrl('mqtt://127.0.0.1:41883', 'http://127.0.0.1:8080')).toBe('mqtt://127.0.0.1:41883');
    expect(reachableBrokerUrl('mqtts://broker.example:8883', 'http://10.0.0.1:8080')).toBe('mqtts://broker.example:8883');
  });

  it('connects to the broker saved at enrollment when the config names none', async () => {
    const d = dir();
    const broker = await startEmbeddedBroker('127.0.0.1', 0);
    cleanups.push(() => broker.close());
    const sim = await startSimulator('sdm120', 'household', 4);
    cleanups.push(() => sim.sim.stop());
    const cfg = loadGatewayConfig(writeGatewayToml(d, { id: 'gw-enrolled-url', meter: 'm-e', meterPort: sim.port }));
    saveCredentials(cfg.dataDir, { url: broker.url, username: 'gw-enrolled-url', password: 'x' });
    const { log, lines } = capturedLog();
    const gw = await startGateway(cfg, { log });
    cleanups.push(() => gw.stop());
    expect(gw.brokerUrl).toBe(broker.url);
    await waitFor(() => lines.some((l) => l.msg === 'connected to broker' && l.broker === broker.url), 'a connection to the enrolled broker');
    expect(lines.find((l) => l.msg === 'gateway running')).toMatchObject({ broker: broker.url, brokerFrom: 'enrollment' });
  });

  it('warns once per episode when nothing is acknowledged, counts the timeouts, and says so in gtx gateway status', { timeout: 60_000 }, async () => {
    const d = dir();
    // A broker with no settlement behind it: it takes every publish and nobody answers.
    const broker = await startEmbeddedBroker('127.0.0.1', 0);
    cleanups.push(() => broker.close());
    const sim = await startSimulator('sdm120', 'household', 5);
    cleanups.push(() => sim.sim.stop());
    const config = writeGatewayToml(d, { id: 'gw-lonely', meter: 'm-l', meterPort: sim.port, url: broker.url, ackTimeoutS: 1 });
    const { log, warnings } = capturedLog();
    const gw = await startGateway(loadGatewayConfig(config), { log });
    let stopped = false;
    cleanups.push(() => (stopped ? undefined : gw.stop()));

    await waitFor(() => gw.stats().ackTimeouts >= 3, 'three ack timeouts');
    const warned = warnings(/no acknowledgement from settlement/);
    expect(warned).toHaveLength(1);
    expect(warned[0]).toMatchObject({ broker: broker.url, hint: NO_ACK_HINT, ackTimeoutS: 1 });
    expect(warned[0]!.msg).toContain("is this the settlement's broker? see gtx gateway status");
    expect(warned[0]!.oldestUnackedAgeS).toEqual(expect.any(Number));
    expect(gw.stats().acked).toBe(0);
    expect(gw.outboxDepth()).toBeGreaterThan(0);

    // While it runs, and after it stopped.
    for (const when of ['running', 'stopped']) {
      if (when === 'stopped') {
        await gw.stop();
        stopped = true;
      }
      const st = gtx(['gateway', 'status', '--config', config]);
      expect(st.status, st.stderr).toBe(0);
      expect(st.stdout).toContain(`broker: ${broker.url} ([mqtt] url in the config)`);
      expect(st.stdout).toContain('last ack from settlement: never');
      expect(st.stdout).toMatch(new RegExp(`NO ACK: since \\S+ envelopes published to ${broker.url.replace(/[.]/g, '\\.')} go unacknowledged .*is this the settlement's broker\\?`));
    }
  });

  it('keeps or sets aside an envelope as the reject says, judging one without the retryable flag by its reason', { timeout: 60_000 }, async () => {
    const d = dir();
    const broker = await startEmbeddedBroker('127.0.0.1', 0);
    cleanups.push(() => broker.close());
    const sim = await startSimulator('sdm120', 'household', 6);
    cleanups.push(() => sim.sim.stop());
    const config = writeGatewayToml(d, { id: 'gw-judge', meter: 'm-j', meterPort: sim.port, url: broker.url, ackTimeoutS: 30 });
    // Plays settlement: sees the readings, answers on the reject topic.
    const fake = await mqtt.connectAsync(broker.url, { clientId: 'gtx-test-fake-settlement' });
    cleanups.push(() => fake.endAsync());
    const ids: string[] = [];
    fake.on('message', (_t, p) => ids.push(envelopeIdOf(signedBytes(asEnvelope(JSON.parse(p.toString()))))));
    await fake.subscribeAsync(topics.readings('gw-judge'));
    const gw = await startGateway(loadGatewayConfig(config), { log: capturedLog().log });
    cleanups.push(() => gw.stop());
    await waitFor(() => new Set(ids).size >= 4, 'four envelopes published');
    const [a, b, c, e] = [...new Set(ids)];
    const reject = (body: object) => fake.publishAsync(topics.reject('gw-judge'), JSON.stringify({ v: 1, detail: 'test', ...body }));
    await reject({ id: a, reason: 'commit_failed' }); // no flag: retryable by its reason
    await reject({ id: b, reason: 'bad_signature' }); // no flag: permanent by its reason
    await reject({ id: c, reason: 'schema', retryable: true }); // the flag decides
    await reject({ id: e, reason: 'unknown_meter', retryable: false });
    await waitFor(() => gw.stats().deferred === 2 && gw.stats().rejected === 2, 'two kept and two dead letters');
    const st = gtx(['gateway', 'status', '--config', config]);
    expect(st.stdout).toContain('dead letters (refused for good): 2');
    expect(st.stdout).toMatch(/^ {4}commit_failed: 1 envelope\(s\), refused up to 1 time\(s\)/m);
    expect(st.stdout).toMatch(/^ {4}schema: 1 envelope\(s\)/m);
    expect(st.stdout).toMatch(new RegExp(`^ {4}${b!.slice(0, 12)} .* bad_signature `, 'm'));
    expect(st.stdout).toMatch(new RegExp(`^ {4}${e!.slice(0, 12)} .* unknown_meter `, 'm'));
  });
});
