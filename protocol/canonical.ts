/**
 * RFC 8785 (JCS) canonical JSON: object members sorted by the UTF-16 code units of their
 * names, no whitespace, strings escaped as ECMAScript's JSON.stringify does, numbers in
 * ECMAScript's shortest form. This is what gets hashed and signed (gateways sign with it,
 * audits re-verify with it; the settlement's intake uses signedBytesOfValidEnvelope, checked
 * against this). Written for speed (no per-character loops in JavaScript, no intermediate
 * arrays) and checked against the `canonicalize` package, the reference implementation, in
 * test/protocol/canonical.test.ts.
 */

const SURROGATE = /[\uD800-\uDFFF]/;
/** Anything JSON.stringify would escape, or a surrogate; most ids, hashes and instants have none. */
const SPECIAL = /["\\\u0000-\u001F\uD800-\uDFFF]/;
const MAX_DEPTH = 256;

export class CanonicalJsonError extends Error {}

/** RFC 8785 canonical JSON text of a value. */
export function canonicalJson(value: unknown): string {
  const text = write(value, 0);
  if (text === undefined) throw new CanonicalJsonError('value cannot be canonicalised');
  return text;
}

/** RFC 8785 canonical bytes (UTF-8) of a value: what gets hashed and signed. */
export function canonicalBytes(value: unknown): Buffer {
  return Buffer.from(canonicalJson(value), 'utf8');
}

function string(s: string): string {
  if (!SPECIAL.test(s)) return '"' + s + '"';
  // RFC 8785 refuses lone surrogates (JSON.stringify would escape them); pairs are fine.
  if (SURROGATE.test(s) && hasLoneSurrogate(s)) throw new CanonicalJsonError('lone surrogate is not allowed');
  return JSON.stringify(s);
}

function hasLoneSurrogate(s: string): boolean {
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c >= 0xd800 && c <= 0xdbff) {
      const next = s.charCodeAt(i + 1);
      if (!(next >= 0xdc00 && next <= 0xdfff)) return true;
      i++;
    } else if (c >= 0xdc00 && c <= 0xdfff) {
      return true;
    }
  }
  return false;
}

/** undefined for values JSON leaves out (undefined, functions, symbols). */
function write(value: unknown, depth: number): string | undefined {
  switch (typeof value) {
    case 'string':
      return string(value);
    case 'number':
      if (!Number.isFinite(value)) throw new CanonicalJsonError(`${value} is not allowed in JSON`);
      // ECMAScript's Number::toString, as RFC 8785 specifies (and -0 becomes "0").
      return String(value);
    case 'boolean':
      return value ? 'true' : 'false';
    case 'bigint':
      throw new CanonicalJsonError('a BigInt cannot be canonicalised');
    case 'object':
      break;
    default:
      return undefined;
  }
  if (value === null) return 'null';
  if (depth >= MAX_DEPTH) throw new CanonicalJsonError(`nested deeper than ${MAX_DEPTH} levels (circular?)`);
  const toJSON = (value as { toJSON?: unknown }).toJSON;
  if (typeof toJSON === 'function') return write(toJSON.call(value), depth + 1);
  if (Array.isArray(value)) {
    let out = '[';
    for (let i = 0; i < value.length; i++) {
      if (i > 0) out += ',';
      out += write(value[i], depth + 1) ?? 'null';
    }
    return out + ']';
  }
  const obj = value as Record<string, unknown>;
  // Default sort compares UTF-16 code units, as RFC 8785 requires.
  const keys = Object.keys(obj).sort();
  let out = '{';
  let first = true;
  for (const k of keys) {
    const v = write(obj[k], depth + 1);
    if (v === undefined) continue;
    if (!first) out += ',';
    first = false;
    out += string(k) + ':' + v;
  }
  return out + '}';
}
