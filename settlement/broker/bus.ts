import mqtt, { type IClientOptions, type MqttClient } from 'mqtt';
import type { Aedes, AedesPublishPacket } from 'aedes';

/**
 * How the settlement talks MQTT: subscribe to its filters, publish acks and signals. With the
 * embedded broker it sits inside aedes (no socket, no second parse of every message); with an
 * external broker it is an mqtt.js client.
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

export interface Bus {
  subscribe(filters: string[], onMessage: OnMessage): Promise<void>;
  publish(topic: string, payload: string, opts?: PublishOptions): Promise<void>;
  close(): Promise<void>;
}

export class ClientBus implements Bus {
  private constructor(private readonly client: MqttClient) {}

  static async connect(url: string, options: IClientOptions, onError: (e: Error) => void): Promise<ClientBus> {
    const client = await mqtt.connectAsync(url, options);
    client.on('error', onError);
    // No Nagle: acks are small writes that should leave at once (set again after a reconnect).
    const noDelay = () => (client.stream as { setNoDelay?: (on: boolean) => void }).setNoDelay?.(true);
    noDelay();
    client.on('connect', noDelay);
    return new ClientBus(client);
  }

  async subscribe(filters: string[], onMessage: OnMessage): Promise<void> {
    // handleMessage, not the 'message' event: mqtt.js waits for its callback before it sends
    // the PUBACK and reads the next packet.
    this.client.handleMessage = (packet, callback) => {
      const held = onMessage(packet.topic, Buffer.isBuffer(packet.payload) ? packet.payload : Buffer.from(packet.payload));
      if (held) held.then(() => callback(), () => callback());
      else callback();
    };
    let granted;
    try {
      granted = await this.client.subscribeAsync(filters, { qos: 1 });
    } catch (e) {
      throw new Error(`the broker refused the settlement's subscriptions ${filters.join(', ')}: check its ACL (${(e as Error).message})`);
    }
    const refused = granted.filter((g) => g.qos === 128).map((g) => g.topic);
    if (refused.length > 0) throw new Error(`the broker refused the settlement's subscriptions ${refused.join(', ')}: check its ACL`);
  }

  async publish(topic: string, payload: string, opts: PublishOptions = {}): Promise<void> {
    await this.client.publishAsync(topic, payload, { qos: opts.qos ?? 1, retain: opts.retain ?? false });
  }

  async close(): Promise<void> {
    await this.client.endAsync();
  }
}

export class AedesBus implements Bus {
  private readonly subs: Array<{ filter: string; fn: (packet: AedesPublishPacket, cb: () => void) => void }> = [];

  constructor(private readonly aedes: Aedes) {}

  async subscribe(filters: string[], onMessage: OnMessage): Promise<void> {
    const fn = (packet: AedesPublishPacket, cb: () => void) => {
      if (packet.topic.startsWith('$SYS')) return cb();
      // aedes calls back the publishing client (which then reads its next packet) only after cb.
      const held = onMessage(packet.topic, Buffer.isBuffer(packet.payload) ? packet.payload : Buffer.from(packet.payload));
      if (held) held.then(() => cb(), () => cb());
      else cb();
    };
    for (const filter of filters) {
      await new Promise<void>((resolve) => this.aedes.subscribe(filter, fn, () => resolve()));
      this.subs.push({ filter, fn });
    }
  }

  publish(topic: string, payload: string, opts: PublishOptions = {}): Promise<void> {
    return new Promise((resolve, reject) =>
      this.aedes.publish(
        { cmd: 'publish', topic, payload: Buffer.from(payload), qos: opts.qos ?? 1, retain: opts.retain ?? false, dup: false },
        (err?: Error) => (err ? reject(err) : resolve()),
      ),
    );
  }

  async close(): Promise<void> {
    for (const { filter, fn } of this.subs.splice(0)) {
      await new Promise<void>((resolve) => this.aedes.unsubscribe(filter, fn, () => resolve()));
    }
  }
}
