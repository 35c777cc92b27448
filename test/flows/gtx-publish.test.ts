import { describe, expect, it } from 'vitest';
import registerConfig from '../../flows/nodes/gtx-config.ts';
import registerPublish from '../../flows/nodes/gtx-publish.ts';
import type { GtxConfigNode } from '../../flows/nodes/gtx-settings.ts';
import { enrollGatewayConfig, gatewayConfig, startTestSettlement } from '../support/stack.ts';
import { tempDir } from '../support/tmp.ts';
import { waitFor } from '../support/wait.ts';
import { helper, useNodeRed, watch } from './node-red-helper.ts';

const nodes = [registerConfig, registerPublish] as Array<(red: never) => unknown>;

describe('gtx-config and gtx-publish (Node-RED nodes)', () => {
  const cleanups = useNodeRed();

  it('gtx-config keeps its credentials and checks its settings', async () => {
    await helper.load(
      nodes,
      [
        { id: 'c', type: 'gtx-config', name: 'home', brokerUrl: 'mqtt://127.0.0.1:1883', apiUrl: 'http://127.0.0.1:8080', dataDir: '/var/lib/gtx/gw' },
        { id: 'bad', type: 'gtx-config', brokerUrl: 'file:///etc/passwd', dataDir: 'relative/dir' },
      ],
      { c: { username: 'u', password: 'p', apiKey: 'gtx_k' } },
    );
    const c = helper.getNode('c') as unknown as GtxConfigNode;
    expect(c.gtx).toEqual({
      brokerUrl: 'mqtt://127.0.0.1:1883',
      apiUrl: 'http://127.0.0.1:8080',
      dataDir: '/var/lib/gtx/gw',
      keyFile: '/var/lib/gtx/gw/gateway.key',
      username: 'u',
      password: 'p',
      apiKey: 'gtx_k',
    });
    const bad = helper.getNode('bad') as unknown as GtxConfigNode;
    expect(bad.gtx).toBeInstanceOf(Error);
    expect((bad.gtx as Error).message).toMatch(/broker URL must be a mqtt or mqtts or ws or wss URL/);
  });

  it('signs readings into the outbox and settlement acknowledges them: they are in the ledger', async () => {
    const dir = tempDir();
    cleanups.push(() => dir.remove());
    const settlement = await startTestSettlement(dir.path, 0, true);
    cleanups.push(() => settlement.stop());
    // The gateway as `gtx gateway init` + `enroll` leave it: key, MQTT login and broker URL in its data dir.
    const cfg = gatewayConfig(dir.path, 'gw-nodered', settlement.brokerUrl, [{ id: 'nr-meter', model: 'sdm120', port: 1 }]);
    cfg.mqtt = { ackTimeoutMs: 15_000, maxInFlight: 32 };
    await enrollGatewayConfig(settlement, cfg);

    await helper.load(nodes, [
      { id: 'c', type: 'gtx-config', dataDir: cfg.dataDir, gatewayId: cfg.id },
      { id: 'p', type: 'gtx-publish', config: 'c', batchMax: 3, batchAge: 0.2 },
    ]);
    const p = watch('p');
    await waitFor(() => p.statuses.some((s) => s.fill === 'green'), 'connected to the broker');
    const t0 = Date.now() - 5_000;
    for (let i = 0; i < 5; i++) {
      helper.getNode('p').receive({ payload: { meter: 'nr-meter', ts: new Date(t0 + i * 1000).toISOString(), importWh: 1000 + i, exportWh: 0, powerW: 230, voltageMilliV: 230_100 } });
    }
    await waitFor(async () => (await settlement.ledger.readings('nr-meter')).length === 5, 'five readings in the ledger', 20_000);
    const rs = await settlement.ledger.readings('nr-meter');
    expect(rs.map((r) => [r.seq, r.importWh])).toEqual([[1, 1000], [2, 1001], [3, 1002], [4, 1003], [5, 1004]]);
    await waitFor(() => p.statuses.some((s) => /outbox 0, acked 2/.test(s.text ?? '')), 'the status with the acked envelopes');
    expect(p.errors).toEqual([]);
  });

  it('refuses malformed, replayed and badly timed readings without sealing them', async () => {
    const dir = tempDir();
    cleanups.push(() => dir.remove());
    const settlement = await startTestSettlement(dir.path, 0, true);
    cleanups.push(() => settlement.stop());
    const cfg = gatewayConfig(dir.path, 'gw-nodered-bad', settlement.brokerUrl, [{ id: 'm1', model: 'sdm120', port: 1 }]);
    cfg.mqtt = { ackTimeoutMs: 15_000, maxInFlight: 32 };
    await enrollGatewayConfig(settlement, cfg);
    await helper.load(nodes, [
      { id: 'c', type: 'gtx-config', dataDir: cfg.dataDir, gatewayId: cfg.id },
      { id: 'p', type: 'gtx-publish', config: 'c', batchMax: 1, batchAge: 0 },
    ]);
    const p = watch('p');
    await waitFor(() => p.statuses.some((s) => s.fill === 'green'), 'connected');
    const now = Date.now();
    const good = { meter: 'm1', ts: new Date(now - 1000).toISOString(), importWh: 5, exportWh: 0, powerW: 1 };
    const bad: Array<[unknown, RegExp]> = [
      ['text', /msg.payload must be a reading object/],
      [{ ...good, meter: '../x' }, /msg.payload.meter/],
      [{ ...good, importWh: -1 }, /importWh must be a whole number ≥ 0/],
      [{ ...good, powerW: 1.5 }, /powerW must be a whole number/],
      [{ ...good, exportWh: '7' }, /exportWh must be a whole number/],
      [{ ...good, ts: 'yesterday' }, /ts must be an ISO-8601 time/],
      [{ ...good, ts: '1970-01-01T00:00:00Z' }, /is before .*clock set/],
      [{ ...good, ts: new Date(now + 3_600_000).toISOString() }, /is in the future/],
    ];
    for (const [payload, why] of bad) {
      const before = p.errors.length;
      helper.getNode('p').receive({ payload });
      await waitFor(() => p.errors.length > before, `an error for ${JSON.stringify(payload)}`);
      expect(p.errors.at(-1)).toMatch(why);
    }
    helper.getNode('p').receive({ payload: good });
    await waitFor(async () => (await settlement.ledger.readings('m1')).length === 1, 'the good reading in the ledger');
    const before = p.errors.length;
    helper.getNode('p').receive({ payload: good }); // the same message again
    await waitFor(() => p.errors.length > before, 'an error for the replay');
    expect(p.errors.at(-1)).toMatch(/not after its last sealed reading/);
    expect((await settlement.ledger.readings('m1')).length).toBe(1);
  });

  it('says what is missing when the gateway was never set up', async () => {
    const dir = tempDir();
    cleanups.push(() => dir.remove());
    await helper.load(nodes, [
      { id: 'c', type: 'gtx-config', dataDir: dir.path },
      { id: 'p', type: 'gtx-publish', config: 'c' },
      { id: 'q', type: 'gtx-publish', config: 'missing' },
    ]);
    const p = watch('p');
    await waitFor(() => p.errors.length > 0, 'an error');
    expect(p.errors[0]).toMatch(/no gateway key at .*gateway.key: set the gateway up first \(gtx gateway init --data-dir/);
    expect(p.statuses.at(-1)).toMatchObject({ fill: 'red' });
    const q = watch('q');
    helper.getNode('q').receive({ payload: {} });
    await waitFor(() => q.errors.length > 0, 'an error from q');
    expect(q.errors.join(' ')).toMatch(/not ready/);
  });
});
