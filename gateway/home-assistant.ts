import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import mqtt, { type IClientOptions, type MqttClient } from 'mqtt';
import type { Logger } from 'pino';
import type { DecodedReading } from '../devices/decoder.ts';
import type { DeviceDefinition, Quantity } from '../devices/definition.ts';
import { isValidId, parsePriceSignal as parseSignal } from '../protocol/index.ts';
import type { HomeAssistantConfig, MeterConfig } from './config.ts';
import { savedCredentials } from './enroll.ts';

/**
 * Home Assistant MQTT discovery: the gateway shows each meter (energy counters for the energy
 * dashboard, power, voltage, current, frequency) and the market price on the prosumer's own
 * broker. Payload builders are pure; HomeAssistantLink publishes them, best effort: it never
 * holds up metering, keeps no outbox and drops what it cannot send (docs/gateway.md).
 */

/** One sensor a meter may have: what HA is told, and which reading field feeds it. */
interface SensorSpec {
  key: 'import_energy' | 'export_energy' | 'power' | 'voltage' | 'current' | 'frequency';
  name: string;
  quantity: Quantity;
  /** Field of the state JSON. */
  field: keyof MeterStateFields;
  deviceClass: string;
  stateClass: 'total_increasing' | 'measurement';
  unit: string;
  precision: number;
}

export const METER_SENSORS: readonly SensorSpec[] = [
  { key: 'import_energy', name: 'Import energy', quantity: 'importEnergy', field: 'import_kwh', deviceClass: 'energy', stateClass: 'total_increasing', unit: 'kWh', precision: 3 },
  { key: 'export_energy', name: 'Export energy', quantity: 'exportEnergy', field: 'export_kwh', deviceClass: 'energy', stateClass: 'total_increasing', unit: 'kWh', precision: 3 },
  { key: 'power', name: 'Power', quantity: 'power', field: 'power_w', deviceClass: 'power', stateClass: 'measurement', unit: 'W', precision: 0 },
  { key: 'voltage', name: 'Voltage', quantity: 'voltage', field: 'voltage_v', deviceClass: 'voltage', stateClass: 'measurement', unit: 'V', precision: 1 },
  { key: 'current', name: 'Current', quantity: 'current', field: 'current_a', deviceClass: 'current', stateClass: 'measurement', unit: 'A', precision: 2 },
  { key: 'frequency', name: 'Frequency', quantity: 'frequency', field: 'frequency_hz', deviceClass: 'frequency', stateClass: 'measurement', unit: 'Hz', precision: 2 },
];

/** The state JSON published per meter on each poll. */
export interface MeterStateFields {
  import_kwh: number;
  export_kwh: number;
  power_w: number;
  voltage_v?: number;
  current_a?: number;
  frequency_hz?: number;
  /** When the meter was read (ISO-8601, UTC). */
  ts: string;
}

/** A retained discovery config and where it goes. */
export interface DiscoveryMessage {
  topic: string;
  payload: Record<string, unknown>;
}

/** What the builders need to know about the gateway and the prefixes. */
export interface HaNaming {
  gateway: string;
  discoveryPrefix: string;
  statePrefix: string;
  /** Reported as the discovery origin's software version. */
  version?: string;
}

/**
 * An id as HA's discovery topic grammar wants it ([a-zA-Z0-9_-]). Our ids may also hold '.':
 * it becomes '_' plus a short hash of the original, so `a.b` and `a_b` never share a topic.
 */
export function discoveryId(id: string): string {
  if (/^[A-Za-z0-9_-]+$/.test(id)) return id;
  return `${id.replace(/[^A-Za-z0-9_-]/g, '_')}_${createHash('sha256').update(id).digest('hex').slice(0, 6)}`;
}

/** The HA device identifiers: ':' cannot occur in an id, so gateway and meter never run together. */
export const gatewayDeviceId = (gateway: string) => `gridtokenx:${gateway}`;
export const meterDeviceId = (gateway: string, meter: string) => `gridtokenx:${gateway}:${meter}`;

export const haTopics = {
  /** Retained online/offline for everything this gateway shows; the last will sets offline. */
  availability: (n: HaNaming) => `${n.statePrefix}/${n.gateway}/availability`,
  meterState: (n: HaNaming, meter: string) => `${n.statePrefix}/${n.gateway}/${meter}/state`,
  priceState: (n: HaNaming) => `${n.statePrefix}/${n.gateway}/price/state`,
  config: (n: HaNaming, objectId: string) => `${n.discoveryPrefix}/sensor/gtx_${discoveryId(n.gateway)}/${objectId}/config`,
};

const ONLINE = 'online';
const OFFLINE = 'offline';

function common(n: HaNaming): Record<string, unknown> {
  return {
    availability: [{ topic: haTopics.availability(n), payload_available: ONLINE, payload_not_available: OFFLINE }],
    origin: { name: 'GridTokenX', ...(n.version ? { sw_version: n.version } : {}) },
  };
}

/** The sensors a model reports: a quantity it has no register for is not shown (it would read 0 forever). */
export function sensorsFor(def: DeviceDefinition): SensorSpec[] {
  return METER_SENSORS.filter((s) => def.registers.some((r) => r.quantity === s.quantity) && !(def.notMeasured as readonly Quantity[] | undefined)?.includes(s.quantity));
}

/**
 * Discovery configs of one meter: one HA device (the meter, via the gateway) with a sensor per
 * quantity its model reports. `expireAfterS`: with no state for that long HA shows the sensors
 * unavailable (a meter that stopped answering).
 */
export function meterDiscovery(n: HaNaming, meter: Pick<MeterConfig, 'id' | 'definition'>, expireAfterS: number): DiscoveryMessage[] {
  const def = meter.definition;
  const device = {
    identifiers: [meterDeviceId(n.gateway, meter.id)],
    name: meter.id,
    manufacturer: def.vendor,
    model: def.model,
    via_device: gatewayDeviceId(n.gateway),
  };
  return sensorsFor(def).map((s) => {
    // Energy is always in the state; the others only when the meter answered them this time.
    const always = s.field === 'import_kwh' || s.field === 'export_kwh' || s.field === 'power_w';
    return {
      topic: haTopics.config(n, `${discoveryId(meter.id)}_${s.key}`),
      payload: {
        name: s.name,
        unique_id: `${meterDeviceId(n.gateway, meter.id)}:${s.key}`,
        state_topic: haTopics.meterState(n, meter.id),
        value_template: always ? `{{ value_json.${s.field} }}` : `{{ value_json.${s.field} if value_json.${s.field} is defined else none }}`,
        device_class: s.deviceClass,
        state_class: s.stateClass,
        unit_of_measurement: s.unit,
        suggested_display_precision: s.precision,
        expire_after: expireAfterS,
        device,
        ...common(n),
      },
    };
  });
}

/** The price sensor, on the gateway's own HA device (which the meters point to with via_device). */
export function priceDiscovery(n: HaNaming, market: string, currency: string): DiscoveryMessage {
  return {
    topic: haTopics.config(n, 'market_price'),
    payload: {
      name: 'Market price',
      unique_id: `${gatewayDeviceId(n.gateway)}:price`,
      state_topic: haTopics.priceState(n),
      value_template: '{{ value_json.price }}',
      json_attributes_topic: haTopics.priceState(n),
      // HA's monetary class allows no `measurement` state class; a price is not a total either.
      device_class: 'monetary',
      unit_of_measurement: `${currency}/kWh`,
      suggested_display_precision: 2,
      device: { identifiers: [gatewayDeviceId(n.gateway)], name: `GridTokenX gateway ${n.gateway}`, manufacturer: 'GridTokenX', model: `gateway (market ${market})` },
      ...common(n),
    },
  };
}

/** Wh, mV, mA, mHz → kWh, V, A, Hz. Division is correctly rounded, so this is the 3-decimal value exactly as JSON writes it. */
const milli = (x: number) => x / 1000;

/** The state message of one reading. */
export function meterState(values: DecodedReading, atMs: number): MeterStateFields {
  return {
    import_kwh: milli(values.importWh),
    export_kwh: milli(values.exportWh),
    power_w: values.powerW,
    ...(values.voltageMilliV === undefined ? {} : { voltage_v: milli(values.voltageMilliV) }),
    ...(values.currentMilliA === undefined ? {} : { current_a: milli(values.currentMilliA) }),
    ...(values.frequencyMilliHz === undefined ? {} : { frequency_hz: milli(values.frequencyMilliHz) }),
    ts: new Date(atMs).toISOString(),
  };
}

export interface PriceState {
  /** Decimal string in the currency's major unit per kWh, as settlement sent it ("4.00"). */
  price: string;
  currency: string;
  market: string;
  valid_until: string;
}

/** The price state from a message on the market's price topic (protocol parsePriceSignal), or an Error saying why it is not one. */
export function parsePriceSignal(payload: Buffer, market: string): PriceState | Error {
  const msg = parseSignal(payload, market);
  if (typeof msg === 'string') return new Error(`price message: ${msg}`);
  return { price: msg.price, currency: msg.currency, market: msg.market, valid_until: msg.valid_until.slice(0, 40) };
}

/**
 * The market whose price the gateway shows: [home_assistant] market, else the one enrollment
 * named (saved with the MQTT login). Undefined when neither is known or the saved one is not an id.
 */
export function homeAssistantMarket(cfg: { dataDir: string; homeAssistant: HomeAssistantConfig | null }): string | undefined {
  if (cfg.homeAssistant?.market) return cfg.homeAssistant.market;
  let saved: string | undefined;
  try {
    saved = savedCredentials(cfg.dataDir)?.market;
  } catch {
    return undefined;
  }
  return typeof saved === 'string' && isValidId(saved) ? saved : undefined;
}

export interface HomeAssistantLinkOptions {
  config: HomeAssistantConfig;
  gateway: string;
  meters: readonly MeterConfig[];
  /** Poll interval of meters without their own. */
  defaultIntervalMs: number;
  /** The market whose price is shown; none: no price sensor. */
  market?: string;
  log: Logger;
  version?: string;
  /** How often to retry a broker that is away (default 5 s). */
  reconnectMs?: number;
}

/** Bytes waiting in the socket to HA past which new states are dropped, not queued. */
const MAX_BUFFERED_BYTES = 256 * 1024;

/**
 * The gateway's connection to the prosumer's Home Assistant broker. Discovery configs and the
 * availability are retained (QoS 1) and sent again on every (re)connect; states go out QoS 0
 * while connected and are dropped otherwise: only the latest per meter is kept, to send on
 * reconnect. Nothing here can throw into the poller.
 */
export class HomeAssistantLink {
  private client?: MqttClient;
  private readonly naming: HaNaming;
  /** Latest state payload per state topic (meters and price): what a reconnect sends first. */
  private readonly latest = new Map<string, { payload: string; retain: boolean }>();
  private priceConfig?: DiscoveryMessage;
  private outage = false;
  private lastError = '';
  private stopping = false;
  /** States not sent because the broker was away or slow. */
  dropped = 0;
  /** Price messages refused. */
  badPrices = 0;

  constructor(private readonly opts: HomeAssistantLinkOptions) {
    this.naming = { gateway: opts.gateway, discoveryPrefix: opts.config.discoveryPrefix, statePrefix: opts.config.statePrefix, ...(opts.version ? { version: opts.version } : {}) };
  }

  get connected(): boolean {
    return this.client?.connected ?? false;
  }

  get url(): string {
    return this.opts.config.url;
  }

  /** Every meter's discovery configs. */
  discovery(): DiscoveryMessage[] {
    return this.opts.meters.flatMap((m) => {
      const interval = m.intervalMs ?? this.opts.defaultIntervalMs;
      // Three missed polls, and never under a minute: a short outage does not blank the dashboard.
      return meterDiscovery(this.naming, m, Math.max(60, Math.ceil((interval * 3) / 1000)));
    });
  }

  start(): void {
    const c = this.opts.config;
    const options: IClientOptions = {
      // Fixed per gateway: a restarted gateway takes over its old session instead of adding one.
      clientId: `gridtokenx-${this.opts.gateway}`,
      clean: true,
      reconnectPeriod: this.opts.reconnectMs ?? 5_000,
      connectTimeout: 10_000,
      // mqtt.js would otherwise queue QoS 0 states while away, without bound.
      queueQoSZero: false,
      writeCache: false,
      will: { topic: haTopics.availability(this.naming), payload: Buffer.from(OFFLINE), qos: 1, retain: true },
      ...(c.username ? { username: c.username, password: c.password } : {}),
    };
    try {
      if (c.caFile) options.ca = readFileSync(c.caFile);
      const client = mqtt.connect(c.url, options);
      this.client = client;
      client.on('connect', () => this.onConnect(client));
      client.on('error', (e) => {
        this.lastError = e.message;
        this.opts.log.debug({ err: e.message, broker: c.url }, 'home assistant broker error');
      });
      client.on('close', () => this.onClose());
    } catch (e) {
      this.opts.log.error({ err: (e as Error).message, broker: c.url }, 'home assistant link not started; metering goes on');
    }
  }

  private onConnect(client: MqttClient): void {
    if (this.outage) this.opts.log.info({ broker: this.url }, 'home assistant broker reachable again');
    else this.opts.log.info({ broker: this.url }, 'connected to home assistant broker');
    this.outage = false;
    const fire = (topic: string, payload: string, retain: boolean, qos: 0 | 1) =>
      client.publish(topic, payload, { qos, retain }, (e) => {
        if (e) this.opts.log.debug({ err: e.message, topic }, 'home assistant publish failed');
      });
    for (const d of this.discovery()) fire(d.topic, JSON.stringify(d.payload), true, 1);
    if (this.priceConfig) fire(this.priceConfig.topic, JSON.stringify(this.priceConfig.payload), true, 1);
    fire(haTopics.availability(this.naming), ONLINE, true, 1);
    for (const [topic, s] of this.latest) fire(topic, s.payload, s.retain, s.retain ? 1 : 0);
  }

  private onClose(): void {
    if (this.stopping || this.outage) return;
    this.outage = true;
    // Once per outage; mqtt.js keeps reconnecting on its own.
    this.opts.log.warn({ broker: this.url, err: this.lastError || undefined }, 'home assistant broker unreachable; metering and settlement go on, states are dropped until it is back');
  }

  private send(topic: string, payload: string, retain: boolean): void {
    this.latest.set(topic, { payload, retain });
    const client = this.client;
    const buffered = (client?.stream as { writableLength?: number } | undefined)?.writableLength ?? 0;
    if (!client?.connected || buffered > MAX_BUFFERED_BYTES) {
      this.dropped++;
      return;
    }
    client.publish(topic, payload, { qos: retain ? 1 : 0, retain }, (e) => {
      if (e) this.opts.log.debug({ err: e.message, topic }, 'home assistant publish failed');
    });
  }

  /** A meter's reading, as the poller decoded it. */
  reading(meter: Pick<MeterConfig, 'id'>, values: DecodedReading, atMs = Date.now()): void {
    try {
      this.send(haTopics.meterState(this.naming, meter.id), JSON.stringify(meterState(values, atMs)), false);
    } catch (e) {
      this.opts.log.debug({ err: (e as Error).message, meter: meter.id }, 'home assistant state not sent');
    }
  }

  /** A message from the market's price topic (settlement's broker). */
  price(payload: Buffer): void {
    const market = this.opts.market;
    if (!market) return;
    const p = parsePriceSignal(payload, market);
    if (p instanceof Error) {
      this.badPrices++;
      this.opts.log.warn({ market, err: p.message }, 'ignored a malformed price message');
      return;
    }
    const config = priceDiscovery(this.naming, market, p.currency);
    if (JSON.stringify(config) !== JSON.stringify(this.priceConfig)) {
      // First price, or a new currency: HA needs the unit before the state.
      this.priceConfig = config;
      if (this.client?.connected) this.client.publish(config.topic, JSON.stringify(config.payload), { qos: 1, retain: true });
    }
    // Retained: a price changes once an interval, and HA restarting in between should not show "unknown".
    this.send(haTopics.priceState(this.naming), JSON.stringify(p), true);
  }

  /** Says offline (retained) and disconnects; never waits on a broker that is away. */
  async stop(): Promise<void> {
    this.stopping = true;
    const client = this.client;
    if (!client) return;
    if (client.connected) {
      await Promise.race([
        client.publishAsync(haTopics.availability(this.naming), OFFLINE, { qos: 1, retain: true }).catch(() => undefined),
        new Promise((r) => setTimeout(r, 2_000).unref()),
      ]);
    }
    await client.endAsync(true).catch(() => undefined);
  }
}
