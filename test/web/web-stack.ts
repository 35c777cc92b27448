import mqtt from 'mqtt';
import { encodeEnvelope, topics, type Reading } from '../../protocol/index.ts';
import { startSettlement, type Settlement } from '../../settlement/main.ts';
import { ApiKeyStore } from '../../settlement/registry/api-keys.ts';
import { EnvelopeFactory } from '../support/envelopes.ts';
import { enrollTestGateway, TEST_MARKET } from '../support/registry.ts';
import { settlementConfig, testLog } from '../support/stack.ts';
import { tempDir } from '../support/tmp.ts';
import { waitFor } from '../support/wait.ts';

const H = 3_600_000;

/** The accounts of the two test homes (enrollTestGateway names a gateway's owner owner-<gateway>). */
export const SUN = { gateway: 'gw-web-sun', meter: 'web-sun-1', account: 'owner-gw-web-sun' };
export const HOME = { gateway: 'gw-web-home', meter: 'web-home-1', account: 'owner-gw-web-home' };

export interface WebStack {
  settlement: Settlement;
  url: string;
  keys: { admin: string; utility: string; installer: string; prosumer: string };
  /** Publishes a signed reading of the PV home's meter now, over the settlement's broker, and waits until it is committed. */
  publishSunReading(overrides: Partial<Reading>): Promise<Reading>;
  stop(): Promise<void>;
}

/**
 * A real settlement for the browser tests: the embedded broker, the ledger, the market open
 * around the clock, governance and certificates, as `gtx demo` runs them. Two homes: a PV
 * prosumer (SUN, whose key the prosumer pages use) with a certificate minted from its verified
 * export and a trade from an auction, and a household (HOME) that bought in it. Readings arrive
 * as signed envelopes over MQTT, the way a gateway sends them.
 */
export async function startWebStack(): Promise<WebStack> {
  const dir = tempDir('gtx-web-');
  const cfg = settlementConfig(dir.path);
  const m = cfg.markets[0]!;
  m.rules = { ...m.rules, auction: { ...m.rules.auction, openMinute: 0, closeMinute: 1440 } };
  // The scheduled market jobs would clear the tests' orders at an interval boundary: the tests run them.
  const settlement = await startSettlement(cfg, { log: testLog('settlement'), marketJobEveryMs: { auctions: 24 * H, deliveries: 24 * H } });
  const client = await mqtt.connectAsync(settlement.brokerUrl, { clientId: 'web-test-gateways', reconnectPeriod: 0 });
  try {
    const sun = new EnvelopeFactory(SUN.gateway);
    const home = new EnvelopeFactory(HOME.gateway);
    await enrollTestGateway(settlement.ledger, SUN.gateway, sun.publicKeyPem, [SUN.meter]);
    await enrollTestGateway(settlement.ledger, HOME.gateway, home.publicKeyPem, [
      { id: HOME.meter, model: 'eastron-sdm120', role: 'consumption', ratedPowerW: 20_000, energySource: null },
    ]);

    const publish = async (f: EnvelopeFactory, gateway: string, readings: Reading[]) => {
      const before = (await settlement.ledger.counts()).readings;
      await client.publishAsync(topics.readings(gateway), encodeEnvelope(f.sign(readings)), { qos: 1 });
      await waitFor(async () => (await settlement.ledger.counts()).readings >= before + readings.length, `${readings.length} committed reading(s) of ${gateway}`).catch(async (e: Error) => {
        // Say why: a refused envelope is recorded with its reason.
        await settlement.recorder.flush();
        throw new Error(`${e.message}; latest rejections: ${JSON.stringify(await settlement.ledger.rejections(3))}`);
      });
    };
    const last = { importWh: 1000, exportWh: 0 };
    const sunReading = (at: number, overrides: Partial<Reading>) => {
      const r = sun.nextReading(SUN.meter, { importWh: last.importWh, exportWh: last.exportWh, ...overrides }, at);
      last.importWh = r.importWh;
      last.exportWh = r.exportWh;
      sun.advance(r);
      return r;
    };

    // Three hours ago the PV home exported 1.2 kWh within one hour: a certificate once minted.
    const t = Math.floor(Date.now() / H) * H - 3 * H;
    await publish(sun, SUN.gateway, [
      sunReading(t, { exportWh: 500, powerW: -1200 }),
      sunReading(t + H / 2, { exportWh: 1100, powerW: -1200 }),
      sunReading(t + H, { exportWh: 1700, powerW: -1200 }),
    ]);
    const hh = home.nextReading(HOME.meter, { importWh: 5000, exportWh: 0, powerW: 800 }, t);
    home.advance(hh);
    await publish(home, HOME.gateway, [hh]);
    const minted = await settlement.jobs.recMinting.runOnce();
    if (!minted?.minted) throw new Error('the test certificate was not minted');

    // A price signal, and an auction that matches the PV home's sale with the household's purchase.
    await settlement.pricing[0]!.runOnce();
    await settlement.market.deposit(HOME.account, 'THB', 100_000n);
    const sell = await settlement.market.placeOrder(SUN.account, TEST_MARKET, { side: 'sell', energyWh: 2000, limit: 380n });
    const buy = await settlement.market.placeOrder(HOME.account, TEST_MARKET, { side: 'buy', energyWh: 1500, limit: 420n });
    if (!sell.ok || !buy.ok) throw new Error(`test orders refused: ${JSON.stringify([sell, buy])}`);
    const due = await settlement.market.store.dueDeliveries(TEST_MARKET, Number.MAX_SAFE_INTEGER, 1);
    const run = await settlement.market.runAuction(TEST_MARKET, due[0]! - m.rules.auction.intervalMinutes * 60_000);
    if (run?.trades !== 1) throw new Error('the test auction made no trade');

    const store = new ApiKeyStore(settlement.ledger.db);
    const keys: WebStack['keys'] = {
      admin: (await store.create('admin', 'web test')).key,
      utility: (await store.create('utility', 'web test')).key,
      installer: (await store.create('installer', 'web test', null, [SUN.account, HOME.account])).key,
      prosumer: (await store.create('prosumer', 'web test', SUN.account)).key,
    };

    return {
      settlement,
      url: settlement.httpUrl!,
      keys,
      async publishSunReading(overrides) {
        const r = sunReading(Date.now(), overrides);
        await publish(sun, SUN.gateway, [r]);
        return r;
      },
      async stop() {
        await client.endAsync();
        await settlement.stop();
        dir.remove();
      },
    };
  } catch (e) {
    await client.endAsync();
    await settlement.stop();
    dir.remove();
    throw e;
  }
}
