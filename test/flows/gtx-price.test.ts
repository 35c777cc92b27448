import { createServer, type Server } from 'node:net';
import { Aedes } from 'aedes';
import mqtt from 'mqtt';
import { describe, expect, it } from 'vitest';
import registerConfig from '../../flows/nodes/gtx-config.ts';
import registerPrice from '../../flows/nodes/gtx-price.ts';
import registerPublish from '../../flows/nodes/gtx-publish.ts';
import { topics, type PriceSignalMessage } from '../../protocol/index.ts';
import { enrollGatewayConfig, gatewayConfig, startTestSettlement } from '../support/stack.ts';
import { tempDir } from '../support/tmp.ts';
import { waitFor } from '../support/wait.ts';
import { helper, loggedErrors, useNodeRed, watch } from './node-red-helper.ts';

const nodes = [registerConfig, registerPrice] as Array<(red: never) => unknown>;
const MARKET = 'thailand_central';

function signal(price: string, old: string | null): PriceSignalMessage {
  return {
    v: 1,
    event: 'PriceSignalUpdated',
    market: MARKET,
    price,
    old_price: old,
    currency: 'THB',
    ratio: 1.2,
    supply_wh: 1200,
    demand_wh: 1000,
    interval_start: '2026-12-01T08:00:00.000Z',
    computed_at: new Date().toISOString(),
    valid_until: new Date(Date.now() + 900_000).toISOString(),
  };
}

describe('gtx-price (Node-RED node) on a real broker (aedes)', () => {
  const cleanups = useNodeRed();

  async function broker(): Promise<{ url: string; publish(topic: string, body: string | object): Promise<void> }> {
    const aedes = await Aedes.createBroker();
    const server: Server = createServer(aedes.handle);
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const url = `mqtt://127.0.0.1:${(server.address() as { port: number }).port}`;
    const client = await mqtt.connectAsync(url);
    cleanups.push(async () => {
      await client.endAsync(true);
      for (const c of Object.values((aedes as unknown as { clients: Record<string, { conn: { destroy(): void } }> }).clients)) c.conn.destroy();
      await new Promise<void>((r) => server.close(() => aedes.close(() => r())));
    });
    return {
      url,
      publish: async (topic, body) => {
        await client.publishAsync(topic, typeof body === 'string' ? body : JSON.stringify(body), { qos: 1, retain: true });
      },
    };
  }

  it('emits the retained signal at start and each change of price; ignores malformed messages with a warning', async () => {
    const b = await broker();
    await b.publish(topics.price(MARKET), signal('4.00', null)); // retained before the node starts
    await helper.load(nodes, [
      { id: 'c', type: 'gtx-config', brokerUrl: b.url },
      { id: 'p', type: 'gtx-price', config: 'c', market: MARKET, wires: [['out']] },
      { id: 'out', type: 'helper' },
    ]);
    const out = watch('out');
    const p = watch('p');
    await waitFor(() => out.messages.length === 1, 'the retained signal');
    expect(out.messages[0]).toMatchObject({ topic: MARKET, payload: { price: '4.00', currency: 'THB', market: MARKET } });

    await b.publish(topics.price(MARKET), signal('4.00', '4.00')); // same price: not a change
    await b.publish(topics.price(MARKET), 'not json');
    await b.publish(topics.price(MARKET), { ...signal('4.10', '4.00'), price: 4.1 }); // a number, not the protocol's decimal string
    await b.publish(topics.price(MARKET), { ...signal('9.99', '4.00'), market: 'elsewhere' });
    await b.publish(topics.price(MARKET), signal('4.40', '4.00'));
    await waitFor(() => out.messages.length === 2, 'the changed price');
    expect(out.messages[1]!.payload).toMatchObject({ price: '4.40', old_price: '4.00' });
    expect(p.warnings).toHaveLength(3);
    expect(p.warnings[0]).toMatch(/ignored a message on gtx\/v1\/market\/thailand_central\/price: not JSON/);
    expect(p.warnings[1]).toMatch(/not a PriceSignalUpdated message \(\/price: /);
    expect(p.warnings[2]).toMatch(/a signal for market "elsewhere" on thailand_central's topic/);
    await waitFor(() => p.statuses.some((s) => s.text === '4.40 THB/kWh'), 'the price in the status');
  });

  it("hears the price on an enrolled gateway's own connection to the settlement's broker (logins on), shared with gtx-publish", async () => {
    const dir = tempDir();
    cleanups.push(() => dir.remove());
    const settlement = await startTestSettlement(dir.path, 0, true);
    cleanups.push(() => settlement.stop());
    // The data dir as `gtx gateway init` + `enroll` leave it; the broker admits this login only with the gateway's client id.
    const cfg = gatewayConfig(dir.path, 'gw-nr-price', settlement.brokerUrl, [{ id: 'nr-price-meter', model: 'sdm120', port: 1 }]);
    cfg.mqtt = { ackTimeoutMs: 15_000, maxInFlight: 32 };
    await enrollGatewayConfig(settlement, cfg);
    await helper.load([...nodes, registerPublish as (red: never) => unknown], [
      { id: 'c', type: 'gtx-config', dataDir: cfg.dataDir, gatewayId: cfg.id },
      { id: 'p', type: 'gtx-price', config: 'c', market: MARKET, wires: [['out']] },
      { id: 'pub', type: 'gtx-publish', config: 'c', batchMax: 1, batchAge: 0.2 },
      { id: 'out', type: 'helper' },
    ]);
    const out = watch('out');
    await waitFor(() => out.messages.length === 1, "the settlement's retained price signal", 20_000);
    expect(out.messages[0]).toMatchObject({ topic: MARKET, payload: { event: 'PriceSignalUpdated', market: MARKET } });
    // The one connection also carries the gateway's readings: gtx-publish was not pushed off.
    helper.getNode('pub').receive({ payload: { meter: 'nr-price-meter', ts: new Date(Date.now() - 1000).toISOString(), importWh: 10, exportWh: 0, powerW: 5 } });
    await waitFor(async () => (await settlement.ledger.readings('nr-price-meter')).length === 1, 'the reading in the ledger', 20_000);
    expect(watch('p').errors).toEqual([]);
  });

  it('refuses a market that is not an id (no wildcard subscriptions) and a config without a broker', async () => {
    await helper.load(nodes, [
      { id: 'c', type: 'gtx-config', brokerUrl: 'mqtt://127.0.0.1:1' },
      { id: 'empty', type: 'gtx-config' },
      { id: 'p', type: 'gtx-price', config: 'c', market: '#' },
      { id: 'q', type: 'gtx-price', config: 'empty', market: MARKET },
    ]);
    expect(loggedErrors('p').join(' ')).toMatch(/market must be a market id .*got "#"/);
    expect(loggedErrors('q').join(' ')).toMatch(/the GridTokenX settings name no broker URL/);
  });
});
