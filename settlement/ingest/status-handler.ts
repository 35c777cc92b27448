import type { Logger } from 'pino';
import { parseGatewayTopic } from '../../protocol/index.ts';

/**
 * Tracks which gateways are online from their retained status topic (the MQTT last will
 * flips it to offline), for /metrics and the operator's status line.
 */
export class StatusHandler {
  private readonly online = new Set<string>();

  constructor(private readonly log: Logger) {}

  handle(topic: string, payload: Buffer): void {
    const t = parseGatewayTopic(topic);
    if (!t || t.kind !== 'status') return;
    let state: unknown;
    try {
      state = (JSON.parse(payload.toString()) as { state?: unknown }).state;
    } catch {
      state = undefined;
    }
    if (state === 'online') {
      if (!this.online.has(t.gateway)) this.log.info({ gateway: t.gateway }, 'gateway online');
      this.online.add(t.gateway);
    } else if (state === 'offline' || payload.length === 0) {
      if (this.online.delete(t.gateway)) this.log.info({ gateway: t.gateway }, 'gateway offline');
    } else {
      this.log.warn({ topic }, 'ignored a malformed gateway status');
    }
  }

  onlineCount(): number {
    return this.online.size;
  }
}
