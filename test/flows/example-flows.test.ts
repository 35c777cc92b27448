import { readdirSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { createServer, type Server } from 'node:net';
import { Aedes } from 'aedes';
import mqtt from 'mqtt';
import { describe, expect, it } from 'vitest';
import { getDefinition } from '../../devices/catalog.ts';
import registerConfig from '../../flows/nodes/gtx-config.ts';
import registerMeter from '../../flows/nodes/gtx-meter.ts';
import { readMeterSettings } from '../../flows/nodes/meter-settings.ts';
import registerOrder from '../../flows/nodes/gtx-order.ts';
import registerPrice from '../../flows/nodes/gtx-price.ts';
import registerPublish from '../../flows/nodes/gtx-publish.ts';
import type { NodeDef } from '../../flows/nodes/red.ts';
import { topics, type PriceSignalMessage } from '../../protocol/index.ts';
import { useModbus } from '../support/modbus.ts';
import { freePort } from '../support/ports.ts';
import { waitFor } from '../support/wait.ts';
import { helper, useNodeRed, watch } from './node-red-helper.ts';

const FLOWS = new URL('../../flows/', import.meta.url);
type FlowNode = NodeDef & { z?: string; wires?: string[][] };
const readFlow = (name: string) => JSON.parse(readFileSync(new URL(name, FLOWS), 'utf8')) as FlowNode[];

/** Node-RED's own core nodes, as the editor's flows use them. */
const core = (file: string) => createRequire(import.meta.url)(`@node-red/nodes/core/${file}`) as (red: never) => unknown;
const nodes = [
  registerConfig,
  registerMeter,
  registerPublish,
  registerPrice,
  registerOrder,
  core('common/20-inject.js'),
  core('common/21-debug.js'),
  core('common/25-catch.js'),
  core('common/90-comment.js'),
  core('function/10-switch.js'),
  core('function/15-change.js'),
  core('network/10-mqtt.js'),
] as Array<(red: never) => unknown>;

const GTX_TYPES = ['gtx-config', 'gtx-meter', 'gtx-publish', 'gtx-price', 'gtx-order'];

describe('example flows (flows/*.json)', () => {
  const names = readdirSync(FLOWS).filter((f) => f.endsWith('.json'));

  it('are importable: unique ids, wires and config references that resolve, no stored credentials', () => {
    expect(names.sort()).toEqual(['home-gateway.json', 'installer-check.json', 'price-responsive-load.json']);
    for (const name of names) {
      const flow = readFlow(name);
      const ids = new Set(flow.map((n) => n.id));
      expect(ids.size, name).toBe(flow.length);
      for (const n of flow) {
        for (const out of n.wires ?? []) for (const to of out) expect(ids.has(to), `${name}: ${n.id} → ${to}`).toBe(true);
        for (const ref of ['config', 'broker'] as const) if (typeof n[ref] === 'string' && n.type !== 'mqtt-broker') expect(ids.has(n[ref] as string), `${name}: ${n.id}.${ref}`).toBe(true);
        if (n.z !== undefined) expect(ids.has(n.z), `${name}: ${n.id} on tab ${n.z}`).toBe(true);
        // Credentials live in Node-RED's encrypted credentials file, never in a flow someone shares.
        for (const secret of ['credentials', 'username', 'password', 'apiKey', 'user']) expect(n, `${name}: ${n.id}`).not.toHaveProperty(secret);
        if (n.type.startsWith('gtx-')) expect(GTX_TYPES).toContain(n.type);
        if (n.type === 'gtx-meter') expect(() => readMeterSettings(n), `${name}: ${n.id}`).not.toThrow();
      }
    }
  });

  describe('in the Node-RED runtime', () => {
    const cleanups = useNodeRed();
    const modbus = useModbus();

    it('price-responsive-load switches the load off above the threshold and on below it, over MQTT', async () => {
      const aedes = await Aedes.createBroker();
      const server: Server = createServer(aedes.handle);
      await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
      const port = (server.address() as { port: number }).port;
      const url = `mqtt://127.0.0.1:${port}`;
      const client = await mqtt.connectAsync(url);
      cleanups.push(async () => {
        await client.endAsync(true);
        for (const c of Object.values((aedes as unknown as { clients: Record<string, { conn: { destroy(): void } }> }).clients)) c.conn.destroy();
        await new Promise<void>((r) => server.close(() => aedes.close(() => r())));
      });
      const flow = readFlow('price-responsive-load.json');
      const out = flow.find((n) => n.type === 'mqtt out')!;
      // The same broker plays the settlement's and the load's here.
      Object.assign(flow.find((n) => n.type === 'gtx-config')!, { brokerUrl: url });
      Object.assign(flow.find((n) => n.type === 'mqtt-broker')!, { broker: '127.0.0.1', port: String(port) });
      const commands: string[] = [];
      await client.subscribeAsync(String(out.topic));
      client.on('message', (_t, p) => commands.push(p.toString()));
      await helper.load(nodes, flow);

      const price = (p: string): PriceSignalMessage => ({
        v: 1, event: 'PriceSignalUpdated', market: 'thailand_central', price: p, old_price: null, currency: 'THB', ratio: 1, supply_wh: 0, demand_wh: 0,
        interval_start: null, computed_at: new Date().toISOString(), valid_until: new Date(Date.now() + 900_000).toISOString(),
      });
      await client.publishAsync(topics.price('thailand_central'), JSON.stringify(price('6.20')), { qos: 1, retain: true });
      await waitFor(() => commands.at(-1) === 'OFF', 'the load switched OFF');
      await client.publishAsync(topics.price('thailand_central'), JSON.stringify(price('4.80')), { qos: 1, retain: true });
      await waitFor(() => commands.at(-1) === 'ON', 'the load switched ON');
      await client.publishAsync(topics.price('thailand_central'), JSON.stringify(price('5.01')), { qos: 1, retain: true });
      await waitFor(() => commands.at(-1) === 'OFF', 'OFF again');
    });

    it('installer-check reads every meter once and shows the values; a silent meter shows what to check', async () => {
      const a = await modbus.serve({ definition: getDefinition('sdm120'), profile: 'household', seed: 2 });
      const flow = readFlow('installer-check.json');
      const [m1, m2] = flow.filter((n) => n.type === 'gtx-meter');
      const silent = await freePort();
      Object.assign(m1!, { host: '127.0.0.1', port: a.port });
      Object.assign(m2!, { host: '127.0.0.1', port: silent, timeout: 0.2 });
      await helper.load(nodes, flow);
      const values = watch('gtx-check-debug');
      const errors = watch('gtx-check-errors');
      await waitFor(() => values.messages.length === 1 && errors.messages.length === 1, 'one reading and one error');
      expect(values.messages[0]!.payload).toMatchObject({ meter: m1!.meter, importWh: expect.any(Number), powerW: expect.any(Number) });
      expect((errors.messages[0]!.error as { message: string }).message).toMatch(new RegExp(`meter ${String(m2!.meter)} .* did not answer: .*check the wiring, unit id, host, port and model`));
    });
  });
});
