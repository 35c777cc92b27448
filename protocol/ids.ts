// Branded ids: a MeterId can't be passed where a GatewayId is expected.
export type GatewayId = string & { readonly __brand: 'GatewayId' };
export type MeterId = string & { readonly __brand: 'MeterId' };
/** Hex SHA-256 of an envelope's canonical (unsigned) bytes. */
export type EnvelopeId = string & { readonly __brand: 'EnvelopeId' };

/** Ids travel inside MQTT topics, so they must not contain '/', '+', '#' or spaces. */
export const ID_PATTERN = '^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$';
const idRe = new RegExp(ID_PATTERN);

export function isValidId(s: string): boolean {
  return idRe.test(s);
}

function brand<T extends string>(kind: string, s: string): T {
  if (!isValidId(s)) {
    throw new Error(`invalid ${kind} id "${s}": use 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit`);
  }
  return s as T;
}

export const gatewayId = (s: string): GatewayId => brand<GatewayId>('gateway', s);
export const meterId = (s: string): MeterId => brand<MeterId>('meter', s);

/**
 * Names that belong to the settlement itself: its MQTT username (`gtx-settlement`), its worker
 * usernames (`gtx-settlement-2`, …) and client ids (`gtx-settlement-<host>-<pid>`). No gateway may
 * be enrolled, or log in, under one of them (compared case-insensitively, so no look-alike either).
 */
export const RESERVED_ID_PREFIX = 'gtx-settlement';

export function isReservedId(s: string): boolean {
  return s.toLowerCase().startsWith(RESERVED_ID_PREFIX);
}

/**
 * The only MQTT client id a gateway may connect with. Brokers hand a client id to whoever
 * connects with it last, so an id that is not bound to the login would let one gateway knock
 * another off (and fire its offline last will). docs/protocol.md, "Identity on the broker".
 */
export function gatewayClientId(gateway: string): string {
  return `gtx-gw-${gateway}`;
}
