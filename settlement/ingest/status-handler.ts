import type { Logger } from 'pino';
import { parseGatewayTopic } from '../../protocol/index.ts';

/** What a gateway last said on its retained status topic (the MQTT last will says offline). */
export interface GatewayPresence {
  state: 'online' | 'offline';
  /** When the settlement received that status. */
  atMs: number;
  /** Envelopes waiting in the gateway's outbox, as it reported. */
  outbox?: number;
}

/** Gateways whose last status is kept; past this the longest-known entries go (anyone can invent topic names on an open broker). */
const MAX_TRACKED = 100_000;

/**
 * Tracks which gateways are online from their retained status topic (the MQTT last will
 * flips it to offline), for /metrics, the operator's status line and GET /api/v1/gateways.
 */
export class StatusHandler {
  private readonly online = new Set<string>();
  private readonly last = new Map<string, GatewayPresence>();

  constructor(
    private readonly log: Logger,
    private readonly now: () => number = Date.now,
  ) {}

  handle(topic: string, payload: Buffer): void {
    const t = parseGatewayTopic(topic);
    if (!t || t.kind !== 'status') return;
    let status: { state?: unknown; outbox?: unknown } | undefined;
    try {
      status = JSON.parse(payload.toString()) as { state?: unknown; outbox?: unknown };
    } catch {
      status = undefined;
    }
    const state = status?.state;
    if (state === 'online') {
      if (!this.online.has(t.gateway)) this.log.info({ gateway: t.gateway }, 'gateway online');
      this.online.add(t.gateway);
    } else if (state === 'offline' || payload.length === 0) {
      if (this.online.delete(t.gateway)) this.log.info({ gateway: t.gateway }, 'gateway offline');
    } else {
      this.log.warn({ topic }, 'ignored a malformed gateway status');
      return;
    }
    const outbox = status?.outbox;
    this.last.delete(t.gateway);
    if (this.last.size >= MAX_TRACKED) this.last.delete(this.last.keys().next().value!);
    this.last.set(t.gateway, {
      state: state === 'online' ? 'online' : 'offline',
      atMs: this.now(),
      ...(typeof outbox === 'number' && Number.isSafeInteger(outbox) && outbox >= 0 ? { outbox } : {}),
    });
  }

  onlineCount(): number {
    return this.online.size;
  }

  /** The gateway's last status since this process started, if it sent one. */
  presence(gateway: string): GatewayPresence | undefined {
    return this.last.get(gateway);
  }
}
