import { randomBytes } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { createServer, type Server, type Socket } from 'node:net';
import { join } from 'node:path';
import { Aedes } from 'aedes';
import mqtt, { type MqttClient } from 'mqtt';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { getDefinition } from '../../devices/catalog.ts';
import { GATEWAY_CONFIG_SHAPE, GatewayConfigError, loadGatewayConfig, type GatewayConfig } from '../../gateway/config.ts';
import { saveCredentials } from '../../gateway/enroll.ts';
import {
  discoveryId,
  haTopics,
  homeAssistantMarket,
  HomeAssistantLink,
  meterDiscovery,
  meterState,
  parsePriceSignal,
  priceDiscovery,
  sensorsFor,
  type HaNaming,
} from '../../gateway/home-assistant.ts';
import { loadOrCreateKey } from '../../gateway/keys.ts';
import { startGateway, type Gateway } from '../../gateway/main.ts';
import { gatewayClientId, meterId, topics } from '../../protocol/index.ts';
import type { Settlement } from '../../settlement/main.ts';
import { capturedLog } from './captured-log.ts';
import { freePort } from '../support/ports.ts';
import { enrollTestGateway, TEST_MARKET } from '../support/registry.ts';
import { mosquittoUrl, requireOrSkip } from '../support/services.ts';
import { gatewayConfig, startSimulator, startTestSettlement, testLog } from '../support/stack.ts';
import { tempDir } from '../support/tmp.ts';
import { waitFor } from '../support/wait.ts';

const naming: HaNaming = { gateway: 'gw-home-1', discoveryPrefix: 'homeassistant', statePrefix: 'gridtokenx' };
const sdm120 = { id: meterId('home-1-main'), definition: getDefinition('sdm120') };

const priceMessage = (o: Record<string, unknown> = {}) =>
  Buffer.from(
    JSON.stringify({
      v: 1,
      event: 'PriceSignalUpdated',
      market: 'thailand_central',
      price: '4.25',
      old_price: '4.00',
      currency: 'THB',
      ratio: 1,
      supply_wh: 10,
      demand_wh: 10,
      interval_start: null,
      computed_at: '2025-01-01T00:00:00.000Z',
      valid_until: '2025-01-01T00:05:00.000Z',
      ...o,
    }),
  );

describe('Home Assistant discovery payloads', () => {
  it('gives a meter one sensor per quantity its model reports, with what HA requires', () => {
    const msgs = meterDiscovery(naming, sdm120, 60);
    const byKey = Object.fromEntries(msgs.map((m) => [String(m.payload.unique_id).split(':').pop(), m]));
    expect(Object.keys(byKey).sort()).toEqual(['current', 'export_energy', 'frequency', 'import_energy', 'power', 'voltage']);
    for (const m of msgs) {
      // <discovery_prefix>/<component>/<node_id>/<object_id>/config, ids in HA's [a-zA-Z0-9_-].
      expect(m.topic).toMatch(/^homeassistant\/sensor\/gtx_gw-home-1\/home-1-main_[a-z_]+\/config$/);
      expect(m.payload).toMatchObject({
        state_topic: 'gridtokenx/gw-home-1/home-1-main/state',
        availability: [{ topic: 'gridtokenx/gw-home-1/availability', payload_available: 'online', payload_not_available: 'offline' }],
        expire_after: 60,
        device: {
          identifiers: ['gridtokenx:gw-home-1:home-1-main'],
          name: 'home-1-main',
          manufacturer: 'Eastron',
          model: sdm120.definition.model,
          via_device: 'gridtokenx:gw-home-1',
        },
      });
      expect(m.payload.name).toEqual(expect.any(String));
      expect(m.payload.value_template).toMatch(/^\{\{ value_json\.[a-z_]+( .*)? \}\}$/);
    }
    for (const k of ['import_energy', 'export_energy']) {
      expect(byKey[k]!.payload).toMatchObject({ device_class: 'energy', state_class: 'total_increasing', unit_of_measurement: 'kWh' });
    }
    expect(byKey.import_energy!.payload.value_template).toBe('{{ value_json.import_kwh }}');
    expect(byKey.export_energy!.payload.value_template).toBe('{{ value_json.export_kwh }}');
    expect(byKey.power!.payload).toMatchObject({ device_class: 'power', state_class: 'measurement', unit_of_measurement: 'W', value_template: '{{ value_json.power_w }}' });
    expect(byKey.voltage!.payload).toMatchObject({ device_class: 'voltage', unit_of_measurement: 'V' });
    expect(byKey.current!.payload).toMatchObject({ device_class: 'current', unit_of_measurement: 'A' });
    expect(byKey.frequency!.payload).toMatchObject({ device_class: 'frequency', unit_of_measurement: 'Hz' });
    // Unique ids and topics are unique, and the same on every run (no time, no randomness).
    expect(new Set(msgs.map((m) => m.payload.unique_id)).size).toBe(msgs.length);
    expect(new Set(msgs.map((m) => m.topic)).size).toBe(msgs.length);
    expect(meterDiscovery(naming, sdm120, 60)).toEqual(msgs);
  });

  it('leaves out what a model does not measure (an inverter counts no import)', () => {
    const inverter = getDefinition('sunspec-inverter-101');
    expect(sensorsFor(inverter).map((s) => s.key)).toEqual(['export_energy', 'power', 'voltage', 'current', 'frequency']);
  });

  it('every value template names a field the state message carries', () => {
    const state = meterState({ importWh: 12_345, exportWh: 7, powerW: -350, voltageMilliV: 230_100, currentMilliA: 1_520, frequencyMilliHz: 50_000 }, 0);
    for (const m of meterDiscovery(naming, sdm120, 60)) {
      const field = /value_json\.([a-z_]+)/.exec(String(m.payload.value_template))![1]!;
      expect(state).toHaveProperty(field);
    }
  });

  it('writes integer Wh as kWh with three decimals, exactly', () => {
    const state = meterState({ importWh: 12_345, exportWh: 1_000_001, powerW: 42, voltageMilliV: 230_100 }, Date.UTC(2025, 0, 1));
    expect(JSON.stringify(state)).toBe('{"import_kwh":12.345,"export_kwh":1000.001,"power_w":42,"voltage_v":230.1,"ts":"2025-01-01T00:00:00.000Z"}');
    for (let wh = 0; wh < 100_000; wh += 7) expect(String(meterState({ importWh: wh, exportWh: 0, powerW: 0 }, 0).import_kwh)).toBe(String(Number(`${Math.trunc(wh / 1000)}.${String(wh % 1000).padStart(3, '0')}`)));
  });

  it('keeps ids with a dot apart in discovery topics', () => {
    expect(discoveryId('home-1_main')).toBe('home-1_main');
    expect(discoveryId('a.b')).toMatch(/^a_b_[0-9a-f]{6}$/);
    expect(discoveryId('a.b')).not.toBe(discoveryId('a_b'));
    expect(discoveryId('a.b')).not.toBe(discoveryId('a-b'));
  });

  it('makes the price a monetary sensor in the market currency per kWh, on the gateway device', () => {
    const d = priceDiscovery(naming, 'thailand_central', 'THB');
    expect(d.topic).toBe('homeassistant/sensor/gtx_gw-home-1/market_price/config');
    expect(d.payload).toMatchObject({
      unique_id: 'gridtokenx:gw-home-1:price',
      device_class: 'monetary',
      unit_of_measurement: 'THB/kWh',
      state_topic: 'gridtokenx/gw-home-1/price/state',
      value_template: '{{ value_json.price }}',
      device: { identifiers: ['gridtokenx:gw-home-1'] },
    });
    expect(d.payload).not.toHaveProperty('state_class');
  });

  it('takes a price signal and refuses anything else with the reason', () => {
    expect(parsePriceSignal(priceMessage(), 'thailand_central')).toEqual({ price: '4.25', currency: 'THB', market: 'thailand_central', valid_until: '2025-01-01T00:05:00.000Z' });
    const refused: Array<[Buffer, RegExp]> = [
      [Buffer.from('not json'), /not JSON/],
      [priceMessage({ price: 4.25 }), /not a PriceSignalUpdated message/],
      [priceMessage({ price: '4.2' }), /not a PriceSignalUpdated message/],
      [priceMessage({ event: 'AuctionCompleted' }), /not a PriceSignalUpdated message/],
      [priceMessage({ market: 'elsewhere' }), /market "elsewhere"/],
      [priceMessage({ currency: 'THB"}<script>' }), /currency/],
      [priceMessage({ currency: '' }), /currency/],
      [Buffer.alloc(100_000, 0x20), /100000-byte message/],
    ];
    for (const [payload, why] of refused) {
      const r = parsePriceSignal(payload, 'thailand_central');
      expect(r).toBeInstanceOf(Error);
      expect((r as Error).message).toMatch(why);
    }
  });
});

describe('[home_assistant] in gateway.toml', () => {
  const dir = tempDir('gtx-ha-config-');
  afterAll(() => dir.remove());
  let n = 0;
  const load = (table: string): GatewayConfig => {
    const path = join(dir.path, `gw-${n++}.toml`);
    writeFileSync(path, `[gateway]\nid = "gw-1"\n\n[home_assistant]\n${table}\n`);
    return loadGatewayConfig(path);
  };

  it('is off when absent, and takes the documented defaults', () => {
    const path = join(dir.path, 'plain.toml');
    writeFileSync(path, '[gateway]\nid = "gw-1"\n');
    expect(loadGatewayConfig(path).homeAssistant).toBeNull();
    expect(load('url = "mqtt://homeassistant.local:1883"').homeAssistant).toEqual({
      url: 'mqtt://homeassistant.local:1883',
      discoveryPrefix: 'homeassistant',
      statePrefix: 'gridtokenx',
    });
  });

  it('reads every key, a password from a file and a CA relative to the config', () => {
    writeFileSync(join(dir.path, 'ha.secret'), 's3cret\n');
    writeFileSync(join(dir.path, 'ha-ca.pem'), '-----BEGIN CERTIFICATE-----\n');
    const cfg = load(
      'url = "mqtts://ha.example:8883"\nusername = "gtx"\npassword_file = "ha.secret"\ndiscovery_prefix = "ha/disc"\nstate_prefix = "gtx_states"\nca_file = "ha-ca.pem"\nmarket = "thailand_central"',
    ).homeAssistant;
    expect(cfg).toEqual({
      url: 'mqtts://ha.example:8883',
      username: 'gtx',
      password: 's3cret',
      discoveryPrefix: 'ha/disc',
      statePrefix: 'gtx_states',
      caFile: join(dir.path, 'ha-ca.pem'),
      market: 'thailand_central',
    });
  });

  it.each([
    ['no url', 'username = "x"', /url is required/],
    ['an http url', 'url = "http://ha:1883"', /url must look like/],
    ['not a url', 'url = "homeassistant"', /url must look like/],
    ['a login in the url', 'url = "mqtt://u:p@ha:1883"', /must not carry a login/],
    ['a wildcard prefix', 'url = "mqtt://ha"\ndiscovery_prefix = "homeassistant/#"', /discovery_prefix must be topic levels/],
    ['an empty level', 'url = "mqtt://ha"\nstate_prefix = "a//b"', /state_prefix must be topic levels/],
    ['the same prefix twice', 'url = "mqtt://ha"\nstate_prefix = "homeassistant"', /must differ/],
    ['password and password_file', 'url = "mqtt://ha"\nusername = "u"\npassword = "p"\npassword_file = "f"', /either password or password_file/],
    ['a password without user', 'url = "mqtt://ha"\npassword = "p"', /needs a username/],
    ['a missing password file', 'url = "mqtt://ha"\nusername = "u"\npassword_file = "nope.secret"', /password_file .*nope\.secret: no such file/],
    ['a CA for plain mqtt', 'url = "mqtt://ha"\nca_file = "ha-ca.pem"', /ca_file is for an mqtts/],
    ['a missing CA', 'url = "mqtts://ha"\nca_file = "none.pem"', /ca_file .*none\.pem: no such file/],
    ['a market that is a topic filter', 'url = "mqtt://ha"\nmarket = "+"', /market must be a market id/],
    ['a typo', 'url = "mqtt://ha"\ndiscovery_prefx = "ha"', /unknown key discovery_prefx; did you mean discovery_prefix\?/],
  ])('refuses %s', (_what, table, message) => {
    expect(() => load(table)).toThrow(GatewayConfigError);
    expect(() => load(table)).toThrow(message);
  });

  it('config/gateway.toml documents every key', () => {
    const text = readFileSync(join(import.meta.dirname, '../../config/gateway.toml'), 'utf8');
    expect(text).toContain('[home_assistant]');
    for (const key of GATEWAY_CONFIG_SHAPE.home_assistant!.keys) expect(text).toMatch(new RegExp(`^# ${key} = `, 'm'));
  });

  it('shows the market enrollment named, unless the config names one', () => {
    const d = join(dir.path, 'enrolled');
    const ha = { url: 'mqtt://ha', discoveryPrefix: 'homeassistant', statePrefix: 'gridtokenx' };
    expect(homeAssistantMarket({ dataDir: d, homeAssistant: ha })).toBeUndefined();
    saveCredentials(d, { url: 'mqtt://s', username: 'gw', password: 'pw', market: 'thailand_central' });
    expect(homeAssistantMarket({ dataDir: d, homeAssistant: ha })).toBe('thailand_central');
    expect(homeAssistantMarket({ dataDir: d, homeAssistant: { ...ha, market: 'other' } })).toBe('other');
    // A saved file is data, not trust: a filter in it never becomes a subscription.
    saveCredentials(d, { url: 'mqtt://s', username: 'gw', password: 'pw', market: '#' });
    expect(homeAssistantMarket({ dataDir: d, homeAssistant: ha })).toBeUndefined();
  });
});

/** An in-process aedes on `port`, for the link's outage behaviour. */
async function startAedes(port: number): Promise<{ broker: Aedes; close(): Promise<void> }> {
  const broker = await Aedes.createBroker();
  const server: Server = createServer(broker.handle);
  // Every socket, not only aedes's clients: one the link opened a moment ago and has not sent
  // CONNECT on yet is no client, and server.close() would wait for it forever.
  const sockets = new Set<Socket>();
  server.on('connection', (s) => {
    sockets.add(s);
    s.once('close', () => sockets.delete(s));
  });
  await new Promise<void>((r) => server.listen(port, '127.0.0.1', r));
  return {
    broker,
    close: () =>
      new Promise<void>((r) => {
        server.close(() => broker.close(() => r()));
        for (const s of sockets) s.destroy();
      }),
  };
}

interface Seen {
  topic: string;
  text: string;
  retain: boolean;
}

async function watch(url: string, filters: string[], opts: mqtt.IClientOptions = {}): Promise<{ client: MqttClient; seen: Seen[] }> {
  const client = await mqtt.connectAsync(url, { reconnectPeriod: 0, connectTimeout: 5000, clientId: `gtx-ha-watch-${randomBytes(4).toString('hex')}`, ...opts });
  const seen: Seen[] = [];
  client.on('message', (topic, payload, packet) => seen.push({ topic, text: payload.toString(), retain: packet.retain }));
  await client.subscribeAsync(filters, { qos: 1 });
  return { client, seen };
}

describe('the Home Assistant link on a broker that comes and goes (aedes)', () => {
  const cleanups: Array<() => unknown> = [];
  afterEach(async () => {
    for (const c of cleanups.reverse()) await c();
    cleanups.length = 0;
  });

  it('logs an outage once, sends discovery when the broker is back, and its last will says offline', async () => {
    const port = await freePort();
    const { log, lines, warnings } = capturedLog();
    const link = new HomeAssistantLink({
      config: { url: `mqtt://127.0.0.1:${port}`, discoveryPrefix: 'hadisc', statePrefix: 'hastate' },
      gateway: 'gw-link',
      meters: [{ ...sdm120, bus: 'b', unitId: 1, timeoutMs: 1000, role: 'bidirectional', ratedPowerW: 1, energySource: 'Solar' }],
      defaultIntervalMs: 1000,
      market: 'thailand_central',
      log,
      reconnectMs: 50,
    });
    link.start();
    cleanups.push(() => link.stop());
    // Several refused attempts, one warning; readings meanwhile are dropped, not queued.
    await waitFor(() => lines.filter((l) => l.msg === 'home assistant broker error').length >= 3, 'three refused connections');
    link.reading({ id: sdm120.id }, { importWh: 1, exportWh: 2, powerW: 3 });
    expect(link.dropped).toBe(1);
    expect(warnings(/home assistant broker unreachable/)).toHaveLength(1);

    const aedes = await startAedes(port);
    cleanups.push(() => aedes.close());
    const naming = { gateway: 'gw-link', discoveryPrefix: 'hadisc', statePrefix: 'hastate' };
    const w = await watch(`mqtt://127.0.0.1:${port}`, ['hadisc/#', 'hastate/#']);
    cleanups.push(() => w.client.endAsync());
    await waitFor(() => link.connected, 'the link connected');
    // What it held: the latest state, sent on reconnect; then live ones.
    await waitFor(() => w.seen.find((s) => s.topic === haTopics.meterState(naming, sdm120.id)), 'the held state');
    await waitFor(() => w.seen.filter((s) => s.topic.startsWith('hadisc/sensor/')).length === 6, 'six discovery configs');
    expect(lines.some((l) => l.msg === 'home assistant broker reachable again')).toBe(true);

    // A malformed price is logged and ignored; a good one becomes a config and a retained state.
    link.price(Buffer.from('{"v":1,"event":"PriceSignalUpdated"}'));
    expect(link.badPrices).toBe(1);
    expect(warnings(/malformed price/)).toHaveLength(1);
    link.price(priceMessage());
    const price = await waitFor(() => w.seen.find((s) => s.topic === haTopics.priceState(naming)), 'the price state');
    expect(JSON.parse(price.text)).toMatchObject({ price: '4.25', currency: 'THB' });
    const cfg = await waitFor(() => w.seen.find((s) => s.topic === 'hadisc/sensor/gtx_gw-link/market_price/config'), 'the price config');
    expect(JSON.parse(cfg.text)).toMatchObject({ unit_of_measurement: 'THB/kWh', device_class: 'monetary' });
    await waitFor(() => w.seen.find((s) => s.topic === haTopics.availability(naming) && s.text === 'online'), 'online');

    // The broker drops the connection without a DISCONNECT: the last will says offline.
    const conn = Object.values((aedes.broker as unknown as { clients: Record<string, { id: string; conn: { destroy(): void } }> }).clients).find((c) => c.id === 'gridtokenx-gw-link');
    conn!.conn.destroy();
    await waitFor(() => w.seen.find((s) => s.topic === haTopics.availability(naming) && s.text === 'offline'), 'the last will');
    await waitFor(() => warnings(/home assistant broker unreachable/).length === 2, 'a warning for the second outage');
  });
});

const MOSQUITTO = await mosquittoUrl();

describe.skipIf(requireOrSkip('Home Assistant discovery on Mosquitto', !!MOSQUITTO, 'no MQTT broker at 127.0.0.1:1883 (Debian package "mosquitto"; or set GTX_TEST_MQTT_URL)'))(
  'Home Assistant discovery from a real gateway, meter and settlement, on Mosquitto',
  () => {
    const cleanups: Array<() => unknown> = [];
    afterEach(async () => {
      for (const c of cleanups.reverse()) await c();
      cleanups.length = 0;
    });

    /** A settlement with its broker's auth on, a simulated sdm120, and a gateway enrolled in TEST_MARKET (its market saved). */
    async function stack(gw: string, ha: GatewayConfig['homeAssistant']) {
      const dir = tempDir('gtx-ha-e2e-');
      cleanups.push(() => dir.remove());
      const s: Settlement = await startTestSettlement(dir.path, 0, true);
      cleanups.push(() => s.stop());
      const { sim, port } = await startSimulator('sdm120', 'prosumer', 19);
      cleanups.push(() => sim.stop());
      const cfg = gatewayConfig(dir.path, gw, s.brokerUrl, [{ id: `${gw}-main`, model: 'sdm120', port }]);
      cfg.homeAssistant = ha;
      const key = loadOrCreateKey(cfg.keyFile);
      const res = await enrollTestGateway(s.ledger, cfg.id, key.publicKeyPem, cfg.meters.map((m) => ({ id: m.id, model: m.definition.id, role: m.role, ratedPowerW: m.ratedPowerW, energySource: m.energySource })));
      saveCredentials(cfg.dataDir, { ...res.mqtt, url: s.brokerUrl, market: res.market });
      return { s, sim, cfg };
    }

    it('publishes retained discovery per sensor, states that match the meter, the market price, and availability', async () => {
      const run = randomBytes(4).toString('hex');
      const ha = { url: MOSQUITTO!, discoveryPrefix: `gtxtest_ha_${run}`, statePrefix: `gtxtest_state_${run}` };
      const { s, sim, cfg } = await stack('gw-ha', ha);
      const naming: HaNaming = { gateway: cfg.id, discoveryPrefix: ha.discoveryPrefix, statePrefix: ha.statePrefix };
      const meter = cfg.meters[0]!;

      const w = await watch(MOSQUITTO!, [`${ha.discoveryPrefix}/#`, `${ha.statePrefix}/#`]);
      cleanups.push(() => w.client.endAsync());
      // The market's price as a gateway of that market hears it on the settlement's broker.
      const other = await enrollTestGateway(s.ledger, 'gw-ha-watch', loadOrCreateKey(join(cfg.dataDir, 'watch.key')).publicKeyPem, ['ha-watch-main']);
      const market = await watch(s.brokerUrl, [topics.price(TEST_MARKET)], { clientId: gatewayClientId('gw-ha-watch'), username: other.mqtt.username, password: other.mqtt.password });
      cleanups.push(() => market.client.endAsync());
      const signal = JSON.parse((await waitFor(() => market.seen[0], 'the retained price signal')).text) as { price: string; currency: string };

      const gateway: Gateway = await startGateway(cfg, { log: testLog('gateway') });
      let stopped = false;
      cleanups.push(() => (stopped ? undefined : gateway.stop()));

      const expected = [...meterDiscovery(naming, meter, 60), priceDiscovery(naming, TEST_MARKET, signal.currency)];
      await waitFor(() => expected.every((d) => w.seen.some((x) => x.topic === d.topic)), 'a discovery config per sensor', 20_000);
      for (const d of expected) {
        const got = JSON.parse(w.seen.find((x) => x.topic === d.topic)!.text) as Record<string, unknown>;
        expect(got).toMatchObject({ unique_id: d.payload.unique_id, state_topic: d.payload.state_topic, value_template: d.payload.value_template, device_class: d.payload.device_class });
      }
      for (const k of ['import_energy', 'export_energy']) {
        const got = JSON.parse(w.seen.find((x) => x.topic === haTopics.config(naming, `${meter.id}_${k}`))!.text) as Record<string, unknown>;
        expect(got).toMatchObject({ device_class: 'energy', state_class: 'total_increasing', unit_of_measurement: 'kWh' });
      }

      // The price sensor shows the market's signal.
      const priceState = await waitFor(() => w.seen.find((x) => x.topic === haTopics.priceState(naming)), 'the price state');
      expect(JSON.parse(priceState.text)).toMatchObject({ price: signal.price, currency: signal.currency, market: TEST_MARKET });

      // With the meter frozen, the state HA gets carries exactly what the meter holds.
      sim.pause();
      const held = sim.decoded();
      const stateTopic = haTopics.meterState(naming, meter.id);
      const want = {
        import_kwh: held.importWh / 1000,
        export_kwh: held.exportWh / 1000,
        power_w: held.powerW,
        voltage_v: held.voltageMilliV! / 1000,
        current_a: held.currentMilliA! / 1000,
        frequency_hz: held.frequencyMilliHz! / 1000,
      };
      const same = (v: Record<string, unknown>) => Object.entries(want).every(([k, x]) => v[k] === x);
      await waitFor(() => w.seen.filter((x) => x.topic === stateTopic).some((x) => same(JSON.parse(x.text) as Record<string, unknown>)), `a state equal to the frozen meter ${JSON.stringify(want)}`);
      await waitFor(() => w.seen.find((x) => x.topic === haTopics.availability(naming) && x.text === 'online'), 'availability online');

      // Retained: a Home Assistant that starts later still finds every config, and the gateway online.
      const late = await watch(MOSQUITTO!, [`${ha.discoveryPrefix}/#`, haTopics.availability(naming)]);
      cleanups.push(() => late.client.endAsync());
      await waitFor(() => expected.every((d) => late.seen.some((x) => x.topic === d.topic && x.retain)), 'retained discovery configs');
      await waitFor(() => late.seen.find((x) => x.topic === haTopics.availability(naming) && x.retain && x.text === 'online'), 'retained online');

      // Settlement got the same meter's readings all along.
      await waitFor(async () => (await s.ledger.readings(meter.id)).length > 0, 'readings in the ledger');

      const before = w.seen.length;
      await gateway.stop();
      stopped = true;
      await waitFor(() => w.seen.slice(before).find((x) => x.topic === haTopics.availability(naming) && x.text === 'offline'), 'availability offline');

      // Leave the shared broker clean: clear what this run retained.
      for (const t of [...expected.map((d) => d.topic), haTopics.availability(naming), haTopics.priceState(naming)]) await w.client.publishAsync(t, '', { retain: true, qos: 1 });
    });

    it('keeps sealing and delivering to settlement while the Home Assistant broker is unreachable', async () => {
      const run = randomBytes(4).toString('hex');
      const ha = { url: `mqtt://127.0.0.1:${await freePort()}`, discoveryPrefix: `gtxtest_ha_${run}`, statePrefix: `gtxtest_state_${run}` };
      const { s, cfg } = await stack('gw-ha-down', ha);
      const { log, warnings } = capturedLog();
      const gateway = await startGateway(cfg, { log });
      cleanups.push(() => gateway.stop());
      const meter = cfg.meters[0]!.id;
      await waitFor(() => warnings(/home assistant broker unreachable/).length > 0, 'the outage noticed');
      const acked = gateway.stats().acked;
      const inLedger = (await s.ledger.readings(meter)).length;
      await waitFor(async () => gateway.stats().acked >= acked + 3 && (await s.ledger.readings(meter)).length >= inLedger + 6, 'more readings sealed, acknowledged and in the ledger', 20_000);
      expect(gateway.connected()).toBe(true);
      expect(gateway.stats().sealed).toBeGreaterThan(0);
      expect(warnings(/home assistant broker unreachable/)).toHaveLength(1);
    });
  },
);
