import type { GatewayId } from './ids.ts';

/** Every MQTT topic of the system, in one place. */
export const TOPIC_ROOT = 'gtx/v1';

export type GatewayTopicKind = 'readings' | 'status' | 'ack' | 'reject';

export const topics = {
  /** Gateway → settlement: signed envelopes (QoS 1). */
  readings: (gw: GatewayId | string) => `${TOPIC_ROOT}/gw/${gw}/readings`,
  /** Gateway status, retained; the gateway's last will sets it offline. */
  status: (gw: GatewayId | string) => `${TOPIC_ROOT}/gw/${gw}/status`,
  /** Settlement → gateway: envelope committed (accepted or duplicate). */
  ack: (gw: GatewayId | string) => `${TOPIC_ROOT}/gw/${gw}/ack`,
  /** Settlement → gateway: envelope refused, with a reason. */
  reject: (gw: GatewayId | string) => `${TOPIC_ROOT}/gw/${gw}/reject`,
  /** Market price signal, retained. */
  price: (market: string) => `${TOPIC_ROOT}/market/${market}/price`,
  /** Market auction results. */
  auction: (market: string) => `${TOPIC_ROOT}/market/${market}/auction`,
  /** Subscription filter for every gateway's readings. */
  allReadings: `${TOPIC_ROOT}/gw/+/readings`,
  allStatus: `${TOPIC_ROOT}/gw/+/status`,
  /** Subscription filter for every market's price signal (public). */
  allPrices: `${TOPIC_ROOT}/market/+/price`,
  /** Subscription filter for every market's auction results (public). */
  allAuctions: `${TOPIC_ROOT}/market/+/auction`,
  /** Filter for the whole namespace: the settlement's own reach, never a gateway's. */
  everything: `${TOPIC_ROOT}/#`,
} as const;

/**
 * QoS of the settlement's acks and rejections. Gateways connect with clean sessions, so a
 * QoS 1 reply lost with its connection is never redelivered anyway; what makes an ack
 * reliable is the gateway resending an unacknowledged envelope, which is then acked as a
 * duplicate. QoS 0 spares the broker a packet id, an in-flight record and the gateway's
 * PUBACK per envelope.
 */
export const REPLY_QOS = 0;

const GATEWAY_PREFIX = `${TOPIC_ROOT}/gw/`;
const gatewayTopicRe = new RegExp(`^${GATEWAY_PREFIX.replaceAll('/', '\\/')}([^/+#]+)\\/(readings|status|ack|reject)$`);

/** Splits a per-gateway topic into its gateway id and kind; null for any other topic. */
export function parseGatewayTopic(topic: string): { gateway: string; kind: GatewayTopicKind } | null {
  const m = gatewayTopicRe.exec(topic);
  if (!m) return null;
  return { gateway: m[1]!, kind: m[2] as GatewayTopicKind };
}

/**
 * The gateway a settlement reply goes to (its `ack` or `reject` topic), or undefined for any
 * other topic (as parseGatewayTopic would say). The embedded broker asks for every reply it
 * publishes, so the prefix and suffix are compared as strings before the id is looked at.
 */
export function replyTopicGateway(topic: string): string | undefined {
  const end = topic.endsWith('/ack') ? topic.length - 4 : topic.endsWith('/reject') ? topic.length - 7 : -1;
  if (end <= GATEWAY_PREFIX.length || !topic.startsWith(GATEWAY_PREFIX)) return undefined;
  const gateway = topic.slice(GATEWAY_PREFIX.length, end);
  return /[/+#]/.test(gateway) ? undefined : gateway;
}
