import { gatewayClientId, isReservedId, isValidId, RESERVED_ID_PREFIX, TOPIC_ROOT, topics } from '../../protocol/index.ts';

/**
 * Who may publish and subscribe to what on the settlement's MQTT broker. Pure functions: the
 * embedded broker (embedded.ts) calls them from its aedes hooks, and mosquitto.ts renders the
 * same rules as a Mosquitto ACL file. docs/mqtt-security.md explains them.
 */

/** The MQTT username of the settlement service itself. */
export const SETTLEMENT_USERNAME = 'gtx-settlement';

/**
 * The settlement's usernames on an external broker: one worker logs in as `gtx-settlement`;
 * `workers` > 1 need one username each (`gtx-settlement-1` …), because a Mosquitto that binds
 * client ids to usernames (use_username_as_clientid) lets only one connection per username live.
 */
export function settlementUsernames(workers: number): string[] {
  if (!Number.isInteger(workers) || workers < 1 || workers > 999) throw new Error(`workers must be an integer from 1 to 999, got ${workers}`);
  if (workers === 1) return [SETTLEMENT_USERNAME];
  return Array.from({ length: workers }, (_, i) => `${SETTLEMENT_USERNAME}-${i + 1}`);
}

/** An authenticated MQTT client. */
export type Principal = { kind: 'settlement' } | { kind: 'gateway'; gatewayId: string };

/** A concrete topic: non-empty, no wildcards, no NUL. */
function isTopicName(topic: string): boolean {
  return topic.length > 0 && !/[+#\u0000]/.test(topic);
}

/** A syntactically valid MQTT topic filter: `+` and `#` only as whole levels, `#` only last. */
export function isValidFilter(filter: string): boolean {
  if (filter.length === 0 || filter.includes('\u0000')) return false;
  const levels = filter.split('/');
  for (let i = 0; i < levels.length; i++) {
    const l = levels[i]!;
    if (l === '#') {
      if (i !== levels.length - 1) return false;
    } else if (l !== '+' && /[+#]/.test(l)) {
      return false;
    }
  }
  return true;
}

/**
 * True when every topic `filter` matches is also matched by `pattern`, i.e. a subscription to
 * `filter` cannot deliver anything `pattern` does not allow. Both must be valid filters.
 * (`a/#` also matches `a` itself, as in MQTT.)
 */
export function filterCovers(pattern: string, filter: string): boolean {
  const p = pattern.split('/');
  const f = filter.split('/');
  for (let i = 0; ; i++) {
    const pl = p[i];
    const fl = f[i];
    if (pl === '#') return true;
    if (pl === undefined) return fl === undefined;
    if (fl === undefined) return false; // the filter stops where the pattern still needs levels
    if (fl === '#') return false; // the filter reaches any depth, the pattern does not
    if (pl === '+') continue;
    if (fl !== pl) return false; // includes fl === '+': the filter matches other values here
  }
}

/** `$share/<group>/<filter>` → `<filter>`; undefined for a malformed shared subscription. */
function unshare(filter: string): { filter: string; shared: boolean } | undefined {
  if (!filter.startsWith('$share/')) return { filter, shared: false };
  const rest = filter.slice('$share/'.length);
  const slash = rest.indexOf('/');
  if (slash <= 0) return undefined;
  const group = rest.slice(0, slash);
  if (/[+#]/.test(group)) return undefined;
  return { filter: rest.slice(slash + 1), shared: true };
}

/** Inside `gtx/v1/` (a bare `gtx/v1` is not: `gtx/v1/#` would match it in MQTT, we don't). */
function underRoot(filter: string): boolean {
  return filter.startsWith(`${TOPIC_ROOT}/`) && filterCovers(topics.everything, filter);
}

function gatewayOk(p: Principal): p is { kind: 'gateway'; gatewayId: string } {
  return p.kind === 'gateway' && isValidId(p.gatewayId) && !isReservedId(p.gatewayId);
}

/**
 * May `principal` connect with MQTT client id `clientId`? A broker ends an older connection
 * with the same client id, so an id not bound to the login would let one gateway knock another
 * off (and fire its offline will). Gateways: only `gtx-gw-<gateway id>`; the settlement: ids
 * starting with `gtx-settlement`, which no gateway can have (reserved, and `gtx-gw-` prefixed).
 */
export function clientIdAllowed(principal: Principal, clientId: string): boolean {
  if (principal.kind === 'settlement') return clientId.startsWith(RESERVED_ID_PREFIX);
  return gatewayOk(principal) && clientId === gatewayClientId(principal.gatewayId);
}

/** Topics a gateway may receive: its own acks and rejections and the public market topics. */
function gatewayReadable(gw: string): string[] {
  return [topics.ack(gw), topics.reject(gw), topics.allPrices, topics.allAuctions];
}

/**
 * May `principal` publish on `topic`? Gateways: only their own readings and status (the status
 * topic is also their last will). Settlement: any topic under `gtx/v1/`.
 */
export function canPublish(principal: Principal, topic: string): boolean {
  if (!isTopicName(topic)) return false;
  if (principal.kind === 'settlement') return underRoot(topic);
  if (!gatewayOk(principal)) return false;
  return topic === topics.readings(principal.gatewayId) || topic === topics.status(principal.gatewayId);
}

/**
 * May `principal` subscribe with `filter`? A filter is allowed only when everything it could
 * match is allowed: a gateway gets its own ack and reject topics and the market price and
 * auction topics (for all markets with `+`, or one market); `#`, `gtx/v1/#`, `gtx/v1/gw/+/ack`
 * and `gtx/v1/market/#` are refused. The settlement may subscribe to anything under `gtx/v1/`,
 * also as a shared subscription (`$share/<group>/…`); gateways may not use `$share/`.
 */
export function canSubscribe(principal: Principal, filter: string): boolean {
  const u = unshare(filter);
  if (!u || !isValidFilter(u.filter)) return false;
  if (principal.kind === 'settlement') {
    return underRoot(u.filter);
  }
  if (!gatewayOk(principal) || u.shared) return false;
  return gatewayReadable(principal.gatewayId).some((allowed) => filterCovers(allowed, u.filter));
}

/** May a message on `topic` be delivered to `principal`? (The broker's last check before sending.) */
export function canReceive(principal: Principal, topic: string): boolean {
  return isTopicName(topic) && canSubscribe(principal, topic);
}
