import mqtt, { type IClientOptions, type MqttClient } from 'mqtt';
import { performance } from 'node:perf_hooks';
import type { Logger } from 'pino';
import {
  gatewayClientId,
  isRetryable,
  parseAck,
  parseRejection,
  topics,
  type GatewayId,
  type GatewayStatus,
  type Rejection,
} from '../protocol/index.ts';
import type { ClockProblem } from './clock.ts';
import type { Outbox } from './outbox.ts';

/** First wait after a retryable refusal; it doubles with each refusal of the same envelope … */
export const RETRY_FIRST_MS = 10_000;
/** … up to this. */
export const RETRY_MAX_MS = 30 * 60_000;

/** How long to wait before sending an envelope again after its `attempts`-th retryable refusal. */
export function retryDelayMs(attempts: number, firstMs = RETRY_FIRST_MS, maxMs = RETRY_MAX_MS): number {
  return Math.min(maxMs, firstMs * 2 ** Math.min(Math.max(attempts - 1, 0), 40));
}

export const NO_ACK_HINT = "is this the settlement's broker? see gtx gateway status";

/** What the gateway persists (outbox gateway_state 'ack_wait') while settlement does not answer. */
export interface AckWait {
  sinceMs: number;
  broker: string;
  oldestUnackedAgeMs: number;
}

export interface PublisherOptions {
  url: string;
  gateway: GatewayId;
  username?: string;
  password?: string;
  /** For mqtts://: PEM contents of a CA to trust, and of a client certificate and its key. */
  tls?: { ca?: Buffer; cert?: Buffer; key?: Buffer };
  /** Envelopes published but not yet acknowledged, at most. */
  maxInFlight: number;
  /** After this long without an ack an envelope is sent again (settlement is idempotent). */
  ackTimeoutMs: number;
  /** Retry backoff after a retryable refusal (defaults RETRY_FIRST_MS, RETRY_MAX_MS; tests shorten it). */
  retryFirstMs?: number;
  retryMaxMs?: number;
}

const RECONNECT_MS = 1000;

/** A rejection; one from a settlement older than the `retryable` flag is judged by its reason. */
function readRejection(payload: Buffer): Rejection & { retryable: boolean } {
  const rej = parseRejection(payload);
  return { ...rej, retryable: rej.retryable ?? isRetryable(rej.reason) };
}

/**
 * Moves the outbox to the broker, oldest eligible entry first, and deletes only what settlement
 * acknowledges on this gateway's ack topic: a broker PUBACK says nothing about the ledger. A
 * retryable refusal keeps the envelope for a later attempt (backoff per envelope); any other
 * refusal sets it aside as a dead letter.
 */
export class Publisher {
  private client?: MqttClient;
  /** Subscribed to ack and reject on the current connection: only then is anything published. */
  private ready = false;
  /** Envelope id → monotonic time it was last published. */
  private readonly inFlight = new Map<string, number>();
  /** Envelope id → wall time it was first published and not answered since (for the no-ack warning). */
  private readonly firstSent = new Map<string, number>();
  private timer?: NodeJS.Timeout;
  private pumping = false;
  private stopping = false;
  private unreachableLogged = false;
  private waitingForAck = false;
  private clock: ClockProblem | null = null;
  private retry?: NodeJS.Timeout;
  /** Other topics heard on this connection (the market price): a gateway has one login and one client id. */
  private readonly listeners = new Map<string, (payload: Buffer) => void>();
  private readonly retryFirstMs: number;
  private readonly retryMaxMs: number;
  acked = 0;
  /** Refused for good (dead-lettered). */
  rejected = 0;
  /** Refused for now (kept for a later attempt). */
  deferred = 0;
  /** Times the oldest in-flight envelope went unacknowledged past the ack timeout. */
  ackTimeouts = 0;

  constructor(
    private readonly opts: PublisherOptions,
    private readonly outbox: Outbox,
    private readonly log: Logger,
  ) {
    this.retryFirstMs = opts.retryFirstMs ?? RETRY_FIRST_MS;
    this.retryMaxMs = opts.retryMaxMs ?? RETRY_MAX_MS;
  }

  get url(): string {
    return this.opts.url;
  }

  /** Connected and subscribed to its ack topics. */
  get connected(): boolean {
    return this.ready;
  }

  async start(): Promise<void> {
    // Also the retry clock: entries whose backoff ended are picked up on the next tick.
    this.timer = setInterval(() => this.tick(), Math.min(1000, this.opts.ackTimeoutMs));
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
      // mqtt-packet would otherwise build a table of all 65,536 two-byte numbers (~6 MiB) on the first publish.
      writeCache: false,
      will: { topic: topics.status(gateway), payload: Buffer.from(JSON.stringify(offline)), qos: 1, retain: true },
    };
    if (this.opts.username) {
      options.username = this.opts.username;
      options.password = this.opts.password;
    }
    // The certificate is always checked (rejectUnauthorized); a private CA is trusted by naming it.
    if (this.opts.tls?.ca) options.ca = this.opts.tls.ca;
    if (this.opts.tls?.cert) options.cert = this.opts.tls.cert;
    if (this.opts.tls?.key) options.key = this.opts.tls.key;
    const client = mqtt.connect(this.opts.url, options);
    this.client = client;
    this.ready = false;
    client.on('connect', () => {
      // No Nagle: each envelope is a small write that should leave at once.
      (client.stream as { setNoDelay?: (on: boolean) => void }).setNoDelay?.(true);
      this.log.info({ broker: this.opts.url }, 'connected to broker');
      this.unreachableLogged = false;
      this.inFlight.clear();
      void client.subscribeAsync([topics.ack(gateway), topics.reject(gateway)], { qos: 1 }).then(() => {
        if (this.client !== client) return;
        this.ready = true;
        this.publishStatus();
        this.pump();
        this.subscribeListeners(client);
      }, (e: unknown) => this.log.warn({ err: e, broker: this.opts.url }, 'subscribe failed'));
    });
    client.on('close', () => {
      if (this.client !== client) return;
      // Whatever was in flight may be lost with the connection: it is sent again, in order.
      this.ready = false;
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

  /**
   * Hears `topic` (a plain topic, no wildcards) on this connection, from the next connect on.
   * Subscribed apart from the ack topics, so a broker refusing it never holds up publishing.
   */
  listen(topic: string, onMessage: (payload: Buffer) => void): void {
    this.listeners.set(topic, onMessage);
    if (this.ready && this.client) this.subscribeListeners(this.client);
  }

  private subscribeListeners(client: MqttClient): void {
    if (this.listeners.size === 0) return;
    void client.subscribeAsync([...this.listeners.keys()], { qos: 1 }).catch((e: unknown) => this.log.warn({ err: e, broker: this.opts.url }, 'subscribe failed'));
  }

  /** Call after sealing a new envelope. */
  notify(): void {
    this.pump();
  }

  inFlightCount(): number {
    return this.inFlight.size;
  }

  /** Tells the broker (retained status) whether this gateway's clock can be trusted. */
  setClock(problem: ClockProblem | null): void {
    if (problem === this.clock) return;
    this.clock = problem;
    this.publishStatus();
  }

  private publishStatus(): void {
    if (!this.ready || !this.client) return;
    const online: GatewayStatus = { v: 1, state: 'online', ts: new Date().toISOString(), outbox: this.outbox.depth(), clock: this.clock ?? 'ok' };
    this.client.publish(topics.status(this.opts.gateway), JSON.stringify(online), { qos: 1, retain: true });
  }

  private onMessage(topic: string, payload: Buffer): void {
    const listener = this.listeners.get(topic);
    if (listener) {
      try {
        listener(payload);
      } catch (e) {
        this.log.warn({ topic, err: (e as Error).message }, 'message handler failed');
      }
      return;
    }
    try {
      if (topic === topics.ack(this.opts.gateway)) {
        const ack = parseAck(payload);
        this.answered(ack.id);
        if (this.outbox.acknowledge(ack.id)) this.acked++;
      } else if (topic === topics.reject(this.opts.gateway)) {
        this.onRejection(readRejection(payload));
      }
    } catch (e) {
      this.log.warn({ topic, err: (e as Error).message }, 'ignored malformed message from settlement');
    }
    this.pump();
  }

  private onRejection(rej: Rejection): void {
    const fields = { envelope: rej.id, reason: rej.reason, detail: rej.detail };
    if (!rej.id || rej.reason === 'duplicate') {
      // No envelope to act on, or already stored: its ack settles it (or the ack timeout resends it).
      this.log.debug(fields, 'settlement rejection without action');
      this.heard();
      return;
    }
    this.answered(rej.id);
    if (rej.retryable) {
      const r = this.outbox.defer(rej.id, rej.reason, rej.detail, Date.now(), (n) => retryDelayMs(n, this.retryFirstMs, this.retryMaxMs));
      if (!r) return;
      this.deferred++;
      this.log.warn(
        { ...fields, attempts: r.attempts, retryInS: Math.round((r.nextAttemptMs - Date.now()) / 1000), nextAttempt: new Date(r.nextAttemptMs).toISOString() },
        'settlement refused an envelope for now; keeping it to send again',
      );
    } else if (this.outbox.deadLetter(rej.id, rej.reason, rej.detail)) {
      this.rejected++;
      this.log.warn(fields, 'settlement refused an envelope for good; moved to dead letters (gtx gateway status, gtx gateway requeue)');
    }
  }

  /** Settlement answered about `id`: it hears this gateway. */
  private answered(id: string): void {
    this.inFlight.delete(id);
    this.firstSent.delete(id);
    this.heard();
  }

  private heard(): void {
    if (this.waitingForAck) {
      this.waitingForAck = false;
      this.outbox.setState('ack_wait', undefined);
      this.log.info({ broker: this.opts.url }, 'settlement answers again');
    }
  }

  /**
   * Go-back-N: when the oldest unacknowledged envelope times out, the whole window is sent
   * again in outbox order, so settlement never sees a later envelope of a meter before an
   * earlier one (unless the earlier one waits out a retry backoff). Then fills the window.
   */
  private tick(): void {
    const cutoff = performance.now() - this.opts.ackTimeoutMs;
    let expired = false;
    for (const at of this.inFlight.values()) {
      if (at < cutoff) {
        expired = true;
        break;
      }
    }
    if (expired) {
      this.ackTimeouts++;
      if (!this.waitingForAck) this.warnNoAck();
      this.inFlight.clear();
    }
    this.pump();
  }

  /** Once per episode: a broker that takes the readings but no settlement that answers. */
  private warnNoAck(): void {
    this.waitingForAck = true;
    const now = Date.now();
    let oldest = now;
    for (const id of this.inFlight.keys()) oldest = Math.min(oldest, this.firstSent.get(id) ?? now);
    const wait: AckWait = { sinceMs: now, broker: this.opts.url, oldestUnackedAgeMs: now - oldest };
    this.outbox.setState('ack_wait', wait);
    this.log.warn(
      {
        broker: this.opts.url,
        oldestUnackedAgeS: Math.round(wait.oldestUnackedAgeMs / 1000),
        inFlight: this.inFlight.size,
        outbox: this.outbox.depth(),
        ackTimeoutS: this.opts.ackTimeoutMs / 1000,
        hint: NO_ACK_HINT,
      },
      `no acknowledgement from settlement within the ack timeout; ${NO_ACK_HINT}`,
    );
  }

  private pump(): void {
    const client = this.client;
    if (!client?.connected || !this.ready || this.pumping) return;
    this.pumping = true;
    try {
      const free = this.opts.maxInFlight - this.inFlight.size;
      if (free <= 0) return;
      const mono = performance.now();
      const wall = Date.now();
      for (const e of this.outbox.due(wall, free, this.inFlight, this.retryMaxMs)) {
        this.inFlight.set(e.id, mono);
        if (!this.firstSent.has(e.id)) this.firstSent.set(e.id, wall);
        client.publish(topics.readings(this.opts.gateway), e.payload, { qos: 1 });
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
