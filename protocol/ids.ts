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
