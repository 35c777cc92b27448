import mqtt, { type IClientOptions, type MqttClient } from 'mqtt';
import type { Logger } from 'pino';
import { gatewayClientId, parseAck, parseRejection, topics, type GatewayId, type GatewayStatus } from '../protocol/index.ts';
import type { Outbox } from './outbox.ts';

export interface PublisherOptions {
  url: string;
  gateway: GatewayId;
  username?: string;
  password?: string;
  /** Envelopes published but not yet acknowledged, at most. */
  maxInFlight: number;
  /** After this long without an ack an envelope is sent again (settlement is idempotent). */
  ackTimeoutMs: number;
}

/**
 * Moves the outbox to the broker in order and deletes only what settlement acknowledges on
 * this gateway's ack topic: a broker PUBACK says nothing about the ledger.
 */
const RECONNECT_MS = 1000;

export class Publisher {
  private client?: MqttClient;
  /** Envelope id → time it was last published. */
  private readonly inFlight = new Map<string, number>();
  private lastPos = 0;
  private timer?: NodeJS.Timeout;
  private pumping = false;
  private stopping = false;
  private unreachableLogged = false;
  private retry?: NodeJS.Timeout;
  acked = 0;
  rejected = 0;

  constructor(
    private readonly opts: PublisherOptions,
    private readonly outbox: Outbox,
    private readonly log: Logger,
  ) {}

  async start(): Promise<void> {
    this.timer = setInterval(() => this.expire(), Math.min(1000, this.opts.ackTimeoutMs));
    this.connect();
  }

  /**
   * One MQTT client per connection, reconnecting by hand: mqtt.js would otherwise replay its
   * own queue of unacknowledged publishes on reconnect, ahead of the outbox's oldest entries,
   * and settlement would receive a meter's readings out of order.
   */
  private connect(): void {
    if (this.stopping) return;
    const { gateway } = this.opts;
    const offline: GatewayStatus = { v: 1, state: 'offline', ts: new Date().toISOString() };
    const options: IClientOptions = {
      clientId: gatewayClientId(gateway),
      clean: true,
      reconnectPeriod: 0,
      connectTimeout: 5000,
      will: { topic: topics.status(gateway), payload: Buffer.from(JSON.stringify(offline)), qos: 1, retain: true },
    };
    if (this.opts.username) {
      options.username = this.opts.username;
      options.password = this.opts.password;
    }
    const client = mqtt.connect(this.opts.url, options);
    this.client = client;
    client.on('connect', () => {
      // No Nagle: each envelope is a small write that should leave at once.
      (client.stream as { setNoDelay?: (on: boolean) => void }).setNoDelay?.(true);
      this.log.info({ broker: this.opts.url }, 'connected to broker');
      this.unreachableLogged = false;
      this.inFlight.clear();
      this.lastPos = 0;
      void client.subscribeAsync([topics.ack(gateway), topics.reject(gateway)], { qos: 1 }).then(() => {
        const online: GatewayStatus = { v: 1, state: 'online', ts: new Date().toISOString(), outbox: this.outbox.depth() };
        client.publish(topics.status(gateway), JSON.stringify(online), { qos: 1, retain: true });
        this.pump();
      }, (e: unknown) => this.log.warn({ err: e }, 'subscribe failed'));
    });
    client.on('close', () => {
      if (this.client !== client) return;
      // Whatever was in flight may be lost with the connection: it is sent again, in order.
      this.inFlight.clear();
      client.removeAllListeners('close');
      client.end(true);
      if (this.stopping) return;
      if (!this.unreachableLogged) {
        this.unreachableLogged = true;
        this.log.warn({ broker: this.opts.url, outbox: this.outbox.depth() }, 'broker unreachable; readings wait in the outbox');
      }
      this.retry = setTimeout(() => this.connect(), RECONNECT_MS);
    });
    client.on('error', (e) => this.log.debug({ err: e.message }, 'mqtt error'));
    client.on('message', (topic, payload) => this.onMessage(topic, payload));
  }

  /** Call after sealing a new envelope. */
  notify(): void {
    this.pump();
  }

  inFlightCount(): number {
    return this.inFlight.size;
  }

  private onMessage(topic: string, payload: Buffer): void {
    try {
      if (topic === topics.ack(this.opts.gateway)) {
        const ack = parseAck(payload);
        this.inFlight.delete(ack.id);
        if (this.outbox.acknowledge(ack.id)) this.acked++;
      } else if (topic === topics.reject(this.opts.gateway)) {
        const rej = parseRejection(payload);
        this.log.warn({ envelope: rej.id, reason: rej.reason, detail: rej.detail }, 'settlement rejected an envelope');
        if (rej.id && rej.reason !== 'duplicate') {
          this.inFlight.delete(rej.id);
          if (this.outbox.deadLetter(rej.id, rej.reason, rej.detail)) this.rejected++;
        }
      }
    } catch (e) {
      this.log.warn({ topic, err: (e as Error).message }, 'ignored malformed message from settlement');
    }
    this.pump();
  }

  /**
   * Go-back-N: when the oldest unacknowledged envelope times out, the whole window is sent
   * again from it, so settlement never sees a later envelope of a meter before an earlier one.
   */
  private expire(): void {
    const cutoff = Date.now() - this.opts.ackTimeoutMs;
    for (const at of this.inFlight.values()) {
      if (at < cutoff) {
        this.inFlight.clear();
        this.lastPos = 0;
        this.pump();
        return;
      }
    }
  }

  private pump(): void {
    const client = this.client;
    if (!client?.connected || this.pumping) return;
    this.pumping = true;
    try {
      while (this.inFlight.size < this.opts.maxInFlight) {
        const batch = this.outbox.pending(this.opts.maxInFlight, this.lastPos);
        if (batch.length === 0) break;
        for (const e of batch) {
          if (this.inFlight.size >= this.opts.maxInFlight) break;
          this.lastPos = e.pos;
          if (this.inFlight.has(e.id)) continue;
          this.inFlight.set(e.id, Date.now());
          client.publish(topics.readings(this.opts.gateway), e.payload, { qos: 1 });
        }
      }
    } finally {
      this.pumping = false;
    }
  }

  async stop(): Promise<void> {
    this.stopping = true;
    clearInterval(this.timer);
    clearTimeout(this.retry);
    const client = this.client;
    if (!client) return;
    if (client.connected) {
      const offline: GatewayStatus = { v: 1, state: 'offline', ts: new Date().toISOString(), outbox: this.outbox.depth() };
      await client.publishAsync(topics.status(this.opts.gateway), JSON.stringify(offline), { qos: 1, retain: true }).catch(() => undefined);
    }
    await client.endAsync(true);
  }
}
