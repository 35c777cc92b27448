import mqtt, { type IClientOptions, type MqttClient } from 'mqtt';
import type { Aedes, AedesPublishPacket } from 'aedes';
import { gatewayClientId, replyTopicGateway } from '../../protocol/index.ts';
import type { Logger } from 'pino';
import { createLogger } from '../logger.ts';

/**
 * How the settlement talks MQTT: subscribe to its filters, publish acks and signals. With the
 * embedded broker it sits inside aedes (no socket, no second parse of every message); with an
 * external broker it is an mqtt.js client that keeps reconnecting on its own.
 */
export interface PublishOptions {
  retain?: boolean;
  /** Default 1. */
  qos?: 0 | 1;
}

/**
 * Called for every message. When it returns a promise, the bus takes no further message from
 * the same source until it settles: the embedded broker stops reading that client's socket, an
 * mqtt.js client stops reading the broker's (and holds the PUBACK). That is how a full intake
 * queue pushes back on whoever floods it, instead of growing without bound.
 */
export type OnMessage = (topic: string, payload: Buffer) => void | Promise<void>;

/** Where the settlement's MQTT link stands, for a readiness check. */
export interface BusStatus {
  /** Logged in to the broker right now. */
  connected: boolean;
  /** Every filter given to subscribe() is granted on the current connection. */
  subscribed: boolean;
  /** When the last successful login happened (ms epoch); null before the first. */
  lastConnectedAtMs: number | null;
  /** The latest connection, login or subscription problem; null again once connected and subscribed. */
  lastError: string | null;
}

export interface Bus {
  /** One handler per bus: a later call adds its filters and replaces the handler. */
  subscribe(filters: string[], onMessage: OnMessage): Promise<void>;
  publish(topic: string, payload: string, opts?: PublishOptions): Promise<void>;
  status(): BusStatus;
  close(): Promise<void>;
}

export interface ClientBusOptions {
  /** Where refused logins, lost connections and refused subscriptions are reported. */
  log?: Logger;
  /** Wait before the next attempt: starts at `initialMs`, doubles per failure up to `maxMs`. Default 1 s → 30 s. */
  backoff?: { initialMs: number; maxMs: number };
  now?: () => number;
}

/**
 * How long subscribe() waits for a connection attempt under way: a broker that answers (accepts,
 * refuses, or is down: ECONNREFUSED) settles it in milliseconds, so a settlement whose broker is
 * up is subscribed when it has started; only an unresponsive host costs this much.
 */
const ATTEMPT_WAIT_MS = 5_000;

const LOGIN_HINT = "check [mqtt] username / GTX_MQTT_PASSWORD and the broker's password file";

/** MQTT 3.1.1 CONNACK return codes (table 3.1). */
const CONNACK_REASONS: Record<number, string> = {
  1: 'unacceptable protocol version',
  2: 'identifier rejected',
  3: 'server unavailable',
  4: 'bad username or password',
  5: 'not authorized',
};

const payloadOf = (p: Buffer | string) => (Buffer.isBuffer(p) ? p : Buffer.from(p));

/**
 * The settlement's client of an external broker. One mqtt.js client per connection attempt,
 * with its own backoff instead of mqtt.js's reconnect: mqtt.js stops for good after a refused
 * login (CONNACK 4/5), and a settlement that only a restart brings back is down while /health
 * says ok. Here a refusal is logged and retried like a lost connection, so fixing the broker's
 * password file (and reloading it) is enough. Every new connection subscribes again.
 */
export class ClientBus implements Bus {
  private client: MqttClient | undefined;
  private readonly filters: string[] = [];
  private onMessage: OnMessage | undefined;
  /** Filters the broker granted on the current connection. */
  private granted = new Set<string>();
  private connected = false;
  private lastConnectedAtMs: number | null = null;
  private lastError: string | null = null;
  private closing = false;
  private retry: NodeJS.Timeout | undefined;
  /** Settles when the attempt under way has connected (and started subscribing) or failed. */
  private attemptDone: Promise<void> = Promise.resolve();
  /** The current connection's subscribing, started on its CONNACK. */
  private subscribing: Promise<void> = Promise.resolve();
  private delayMs: number;
  private readonly log: Logger;
  private readonly backoff: { initialMs: number; maxMs: number };
  private readonly now: () => number;

  private constructor(
    private readonly url: string,
    private readonly options: IClientOptions,
    private readonly onError: (e: Error) => void,
    opts: ClientBusOptions,
  ) {
    this.log = opts.log ?? createLogger('mqtt');
    this.backoff = opts.backoff ?? { initialMs: 1_000, maxMs: 30_000 };
    this.delayMs = this.backoff.initialMs;
    this.now = opts.now ?? Date.now;
  }

  /**
   * Starts connecting and returns at once: a broker that is down or refuses the login at start
   * does not hold up (or fail) the settlement; the bus keeps trying in the background, and
   * `status()` says where it stands. `options.reconnectPeriod` is ignored (see the class).
   */
  static async connect(url: string, options: IClientOptions, onError: (e: Error) => void, opts: ClientBusOptions = {}): Promise<ClientBus> {
    const bus = new ClientBus(url, options, onError, opts);
    bus.attempt();
    return bus;
  }

  private get username(): string | null {
    return this.options.username ?? null;
  }

  private attempt(): void {
    this.retry = undefined;
    if (this.closing) return;
    const client = mqtt.connect(this.url, { ...this.options, reconnectPeriod: 0 });
    this.client = client;
    let settle: () => void = () => undefined;
    this.attemptDone = new Promise<void>((resolve) => (settle = resolve));
    // handleMessage, not the 'message' event: mqtt.js waits for its callback before it sends
    // the PUBACK and reads the next packet. Set on every new client, so back-pressure survives reconnects.
    client.handleMessage = (packet, callback) => {
      const held = this.onMessage?.(packet.topic, payloadOf(packet.payload));
      if (held) held.then(() => callback(), () => callback());
      else callback();
    };
    client.on('connect', () => {
      if (this.client !== client) return;
      // No Nagle: acks are small writes that should leave at once.
      (client.stream as { setNoDelay?: (on: boolean) => void }).setNoDelay?.(true);
      this.connected = true;
      this.granted = new Set();
      this.lastConnectedAtMs = this.now();
      this.delayMs = this.backoff.initialMs;
      this.log.info({ broker: this.url, username: this.username }, 'connected to the MQTT broker');
      if (this.filters.length > 0) this.subscribing = this.subscribeOn(client, [...this.filters]);
      else this.lastError = null;
      settle();
    });
    client.on('error', (e: Error & { code?: unknown }) => {
      if (this.client !== client) return;
      if (typeof e.code === 'number') {
        // mqtt.js reports a refused CONNACK as an error whose code is the return code.
        const returnCode = e.code;
        this.lastError = `login refused by the broker: CONNACK ${returnCode} (${CONNACK_REASONS[returnCode] ?? 'unknown'})`;
        this.log.warn(
          { broker: this.url, username: this.username, returnCode, reason: CONNACK_REASONS[returnCode] ?? null, retryInMs: this.delayMs, hint: LOGIN_HINT },
          `mqtt login refused by the broker; ${LOGIN_HINT}`,
        );
        return;
      }
      this.lastError = e.message;
      this.onError(e);
    });
    client.on('close', () => {
      if (this.client !== client) return;
      client.removeAllListeners('close');
      client.end(true); // this client is done; the next attempt makes a new one
      settle();
      const wasConnected = this.connected;
      this.connected = false;
      this.granted = new Set();
      if (this.closing) return;
      this.lastError ??= 'connection closed';
      if (wasConnected) {
        this.log.warn(
          {
            broker: this.url,
            username: this.username,
            retryInMs: this.delayMs,
            hint: 'if this repeats every few seconds, another client uses the same MQTT username (each settlement worker needs its own)',
          },
          'lost the MQTT broker; reconnecting',
        );
      }
      this.retry = setTimeout(() => this.attempt(), this.delayMs);
      this.delayMs = Math.min(this.delayMs * 2, this.backoff.maxMs);
    });
  }

  /** Subscribes `filters` on `client`; a refusal is logged and shown in status(), never thrown. */
  private async subscribeOn(client: MqttClient, filters: string[]): Promise<void> {
    let refused: string[];
    try {
      const granted = await client.subscribeAsync(filters, { qos: 1 });
      refused = granted.filter((g) => g.qos === 128).map((g) => g.topic);
    } catch (e) {
      // mqtt.js 5 rejects the whole call when one filter is refused; the SUBACK is on the error.
      const codes = (e as { packet?: { granted?: number[] } }).packet?.granted;
      if (!codes) {
        // The connection went away mid-subscribe: the next connection subscribes again.
        if (this.client === client) this.lastError = `subscribing failed: ${(e as Error).message}`;
        return;
      }
      refused = filters.filter((_, i) => codes[i] === 128);
    }
    if (this.client !== client || !this.connected) return;
    for (const f of filters) if (!refused.includes(f)) this.granted.add(f);
    if (refused.length > 0) {
      this.lastError = `the broker refused the settlement's subscriptions ${refused.join(', ')}: check its ACL`;
      this.log.error({ broker: this.url, username: this.username, filters: refused }, "the broker refused the settlement's subscriptions; check its ACL");
      return;
    }
    if (this.subscribedNow()) {
      this.lastError = null;
      this.log.info({ broker: this.url, filters: this.filters }, 'subscribed at the MQTT broker');
    }
  }

  private subscribedNow(): boolean {
    return this.connected && this.filters.length > 0 && this.filters.every((f) => this.granted.has(f));
  }

  /**
   * Remembers the filters for every later connection and subscribes them on the current one,
   * resolving once the broker has answered. With no connection yet it waits for the attempt
   * under way (at most ATTEMPT_WAIT_MS), never for the next one: a broker that is down does not
   * hold up the caller. A refusal is never thrown (it is logged and reported by status()).
   */
  async subscribe(filters: string[], onMessage: OnMessage): Promise<void> {
    this.onMessage = onMessage;
    const added = filters.filter((f) => !this.filters.includes(f));
    this.filters.push(...added);
    const client = this.client;
    if (client && this.connected) {
      // The connection's own subscribing started before these filters were known.
      if (added.length > 0) await this.subscribeOn(client, added);
      return;
    }
    // Not connected: the CONNACK handler subscribes every filter, these included.
    let timer: NodeJS.Timeout | undefined;
    const waited = new Promise<void>((resolve) => (timer = setTimeout(resolve, ATTEMPT_WAIT_MS)));
    try {
      await Promise.race([this.attemptDone, waited]);
      if (this.connected) await Promise.race([this.subscribing, waited]);
    } finally {
      clearTimeout(timer);
    }
  }

  async publish(topic: string, payload: string, opts: PublishOptions = {}): Promise<void> {
    const client = this.client;
    // Nothing is queued for a later connection: the gateway resends whatever was not acked.
    if (!client || !this.connected) throw new Error(`not connected to the MQTT broker at ${this.url} (${this.lastError ?? 'connecting'})`);
    await client.publishAsync(topic, payload, { qos: opts.qos ?? 1, retain: opts.retain ?? false });
  }

  status(): BusStatus {
    return { connected: this.connected, subscribed: this.subscribedNow(), lastConnectedAtMs: this.lastConnectedAtMs, lastError: this.lastError };
  }

  async close(): Promise<void> {
    this.closing = true;
    clearTimeout(this.retry);
    const client = this.client;
    const wasConnected = this.connected;
    this.connected = false;
    if (client) await client.endAsync(!wasConnected);
  }
}

export class AedesBus implements Bus {
  private readonly subs: Array<{ filter: string; fn: (packet: AedesPublishPacket, cb: () => void) => void }> = [];
  private subscribedAtMs: number | null = null;

  constructor(private readonly aedes: Aedes) {}

  /** Messages of a publishing client held back while intake is full, in arrival order. */
  private readonly backlog = new Map<string, Array<{ topic: string; payload: Buffer }>>();

  /**
   * Back-pressure without holding aedes: holding its delivery callback would keep one of its 100
   * delivery slots per held message, and with them full the broker delivers nothing at all (acks
   * included). So every message is taken at once; when intake asks to hold, the publishing
   * client's socket is paused and what it had already sent waits here, in order, until intake
   * has room, then the client is resumed. At most one socket read per client waits here.
   */
  async subscribe(filters: string[], onMessage: OnMessage): Promise<void> {
    const clients = (this.aedes as unknown as { clients: Record<string, { pause(): void; resume(): void } | undefined> }).clients;
    const deliver = (source: string, m: { topic: string; payload: Buffer }): void => {
      const hold = onMessage(m.topic, m.payload);
      if (!hold) return;
      const client = clients[source];
      this.backlog.set(source, []);
      client?.pause();
      const next = (): void => {
        const q = this.backlog.get(source)!;
        while (q.length > 0) {
          const n = q.shift()!;
          const h = onMessage(n.topic, n.payload);
          if (h) {
            void h.then(next, next);
            return;
          }
        }
        this.backlog.delete(source);
        client?.resume();
      };
      void hold.then(next, next);
    };
    const fn = (packet: AedesPublishPacket, cb: () => void) => {
      cb();
      if (packet.topic.startsWith('$SYS')) return;
      const m = { topic: packet.topic, payload: payloadOf(packet.payload) };
      const source = (packet as { clientId?: string }).clientId;
      if (!source) {
        void onMessage(m.topic, m.payload);
        return;
      }
      const q = this.backlog.get(source);
      if (q) q.push(m);
      else deliver(source, m);
    };
    for (const filter of filters) {
      await new Promise<void>((resolve) => this.aedes.subscribe(filter, fn, () => resolve()));
      this.subs.push({ filter, fn });
    }
    this.subscribedAtMs = Date.now();
  }

  /** Sockets corked for the replies of this turn of the event loop (see publish). */
  private corked: Array<{ uncork(): void }> = [];

  /**
   * A reply to a gateway (its ack or reject topic) is written to that gateway's socket, which
   * is corked until the next turn of the event loop: the replies of one batch commit then go out
   * in one write per gateway instead of one write (a syscall, on the loop) per envelope. A
   * gateway's client id is bound to its login (acl.ts), so its socket is found by it.
   */
  publish(topic: string, payload: string, opts: PublishOptions = {}): Promise<void> {
    const gateway = replyTopicGateway(topic);
    if (gateway !== undefined) this.cork(gatewayClientId(gateway));
    return new Promise((resolve, reject) =>
      this.aedes.publish(
        { cmd: 'publish', topic, payload: Buffer.from(payload), qos: opts.qos ?? 1, retain: opts.retain ?? false, dup: false },
        (err?: Error) => (err ? reject(err) : resolve()),
      ),
    );
  }

  private cork(clientId: string): void {
    const conn = (this.aedes as unknown as { clients: Record<string, { conn?: { cork?(): void; uncork(): void; writableCorked?: number } } | undefined> }).clients[clientId]?.conn;
    if (!conn?.cork || (conn.writableCorked ?? 0) > 0) return;
    conn.cork();
    if (this.corked.push(conn) === 1) {
      // aedes writes a QoS 0 delivery in a setImmediate of its own (client.js, deliverQoS0),
      // queued after this one: uncork in the turn after, once those writes are in.
      setImmediate(() =>
        setImmediate(() => {
          for (const c of this.corked.splice(0)) c.uncork();
        }),
      );
    }
  }

  /** In process there is no link to lose: up once subscribe() has resolved, until close(). */
  status(): BusStatus {
    const up = this.subscribedAtMs !== null;
    return { connected: up, subscribed: up, lastConnectedAtMs: this.subscribedAtMs, lastError: null };
  }

  async close(): Promise<void> {
    this.subscribedAtMs = null;
    for (const { filter, fn } of this.subs.splice(0)) {
      await new Promise<void>((resolve) => this.aedes.unsubscribe(filter, fn, () => resolve()));
    }
  }
}
