import { createServer, type Server } from 'node:http';
import { describe, expect, it } from 'vitest';
import registerConfig from '../../flows/nodes/gtx-config.ts';
import registerOrder from '../../flows/nodes/gtx-order.ts';
import { ApiKeyStore } from '../../settlement/registry/api-keys.ts';
import { startSettlement } from '../../settlement/main.ts';
import { TEST_MARKET, enrollTestGateway } from '../support/registry.ts';
import { settlementConfig, testLog } from '../support/stack.ts';
import { tempDir } from '../support/tmp.ts';
import { waitFor } from '../support/wait.ts';
import { helper, useNodeRed, watch } from './node-red-helper.ts';
import { generateGatewayKeyPair } from '../../protocol/index.ts';

const nodes = [registerConfig, registerOrder] as Array<(red: never) => unknown>;

describe('gtx-order (Node-RED node) against a real settlement API', () => {
  const cleanups = useNodeRed();

  /** A settlement whose market is open around the clock (the test must not depend on the hour), and a prosumer's key. */
  async function settlementWithProsumer(): Promise<{ apiUrl: string; key: string }> {
    const dir = tempDir();
    cleanups.push(() => dir.remove());
    const cfg = settlementConfig(dir.path);
    for (const m of cfg.markets) m.rules = { ...m.rules, auction: { ...m.rules.auction, openMinute: 0, closeMinute: 24 * 60 } };
    const settlement = await startSettlement(cfg, { log: testLog('settlement') });
    cleanups.push(() => settlement.stop());
    // A prosumer with a bidirectional meter in the market: it may sell.
    await enrollTestGateway(settlement.ledger, 'gw-order', generateGatewayKeyPair().publicKeyPem, [
      { id: 'order-meter', model: 'eastron-sdm630', role: 'bidirectional', ratedPowerW: 30_000, energySource: 'Solar' },
    ]);
    const { key } = await new ApiKeyStore(settlement.ledger.db).create('prosumer', 'node-red', 'owner-gw-order');
    return { apiUrl: settlement.httpUrl!, key };
  }

  const flow = (extra: Record<string, unknown> = {}) => [
    { id: 'c', type: 'gtx-config', ...extra },
    { id: 'o', type: 'gtx-order', config: 'c', wires: [['placed'], ['refused']] },
    { id: 'placed', type: 'helper' },
    { id: 'refused', type: 'helper' },
  ];

  it('places an order from msg.payload and emits the created order; a refusal goes to the second output', async () => {
    const { apiUrl, key } = await settlementWithProsumer();
    await helper.load(nodes, flow({ apiUrl }), { c: { apiKey: key } });
    const placed = watch('placed');
    const refused = watch('refused');
    helper.getNode('o').receive({ payload: { market: TEST_MARKET, side: 'sell', energyKwh: 1.5 }, tag: 'sun' });
    await waitFor(() => placed.messages.length === 1, 'the created order');
    expect(placed.messages[0]).toMatchObject({ tag: 'sun', payload: { market: TEST_MARKET, side: 'sell', energyKwh: '1.500', status: 'open', account: 'owner-gw-order' } });
    expect(placed.messages[0]!.payload).toHaveProperty('id');

    // No credits to cover a buy: settlement refuses it, with its reason.
    helper.getNode('o').receive({ payload: { market: TEST_MARKET, side: 'BUY', energyKwh: '2' } });
    await waitFor(() => refused.messages.length === 1, 'the refusal');
    expect(refused.messages[0]!.payload).toMatchObject({ code: 'insufficient_credits' });
    expect(typeof (refused.messages[0]!.payload as { message: string }).message).toBe('string');
    expect(placed.messages).toHaveLength(1);
  });

  it('refuses a malformed payload before calling the API, and says when the key or API is wrong', async () => {
    const { apiUrl } = await settlementWithProsumer();
    await helper.load(nodes, flow({ apiUrl }), { c: { apiKey: 'gtx_not_a_key' } });
    const o = watch('o');
    const refused = watch('refused');
    const bad: Array<[unknown, RegExp]> = [
      ['sell 1', /msg.payload must be/],
      [{ market: '+/#', side: 'sell', energyKwh: '1' }, /market must be a market id/],
      [{ market: TEST_MARKET, side: 'hold', energyKwh: '1' }, /side must be "buy" or "sell"/],
      [{ market: TEST_MARKET, side: 'sell', energyKwh: '1.0001' }, /energyKwh must be kWh with at most 3 decimals/],
      [{ market: TEST_MARKET, side: 'sell', energyKwh: -1 }, /energyKwh must be/],
      [{ market: TEST_MARKET, side: 'sell', energyKwh: '1', limitPrice: '4,00' }, /limitPrice must be a price/],
      [{ market: TEST_MARKET, side: 'sell', energyKwh: '1', deliveryStart: 'soon' }, /deliveryStart must be an ISO-8601 time/],
    ];
    for (const [payload, why] of bad) {
      const before = o.errors.length;
      helper.getNode('o').receive({ payload });
      await waitFor(() => o.errors.length > before, `an error for ${JSON.stringify(payload)}`);
      expect(o.errors.at(-1)).toMatch(why);
    }
    // An unknown key: settlement's 401 is a refusal with its code.
    helper.getNode('o').receive({ payload: { market: TEST_MARKET, side: 'sell', energyKwh: '1' } });
    await waitFor(() => refused.messages.length === 1, 'the refusal');
    expect(refused.messages[0]!.payload).toMatchObject({ code: 'unauthorized' });
  });

  it('reports an API that is not settlement\'s as a node error', async () => {
    const server: Server = createServer((_req, res) => res.writeHead(200, { 'content-type': 'text/html' }).end('<html>router login</html>'));
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    cleanups.push(() => new Promise<void>((r) => server.close(() => r())));
    const addr = server.address() as { port: number };
    await helper.load(nodes, flow({ apiUrl: `http://127.0.0.1:${addr.port}` }), { c: { apiKey: 'k' } });
    const o = watch('o');
    helper.getNode('o').receive({ payload: { market: TEST_MARKET, side: 'sell', energyKwh: '1' } });
    await waitFor(() => o.errors.length === 1, 'an error');
    expect(o.errors[0]).toMatch(/answered HTTP 200 without JSON: is this the settlement's API URL/);
    await helper.unload();
    // A huge answer is not read to the end.
    const big: Server = createServer((_req, res) => {
      res.writeHead(422, { 'content-type': 'application/json' });
      res.write('{"code":"x","message":"');
      const chunk = 'a'.repeat(64 * 1024);
      const pump = () => {
        while (res.write(chunk));
      };
      res.on('drain', pump);
      pump();
    });
    await new Promise<void>((r) => big.listen(0, '127.0.0.1', r));
    cleanups.push(() => new Promise<void>((r) => { big.closeAllConnections(); big.close(() => r()); }));
    await helper.load(nodes, flow({ apiUrl: `http://127.0.0.1:${(big.address() as { port: number }).port}` }), { c: { apiKey: 'k' } });
    const ob = watch('o');
    helper.getNode('o').receive({ payload: { market: TEST_MARKET, side: 'sell', energyKwh: '1' } });
    await waitFor(() => ob.errors.length === 1, 'an error for the huge answer');
    expect(ob.errors[0]).toMatch(/more than 65536 bytes/);
    await helper.unload();
    await helper.load(nodes, flow({}), {});
    const o2 = watch('o');
    helper.getNode('o').receive({ payload: {} });
    await waitFor(() => o2.errors.length > 0, 'an error');
    expect(o2.errors.join(' ')).toMatch(/settings are incomplete/);
  });
});
