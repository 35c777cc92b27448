import { homedir } from 'node:os';
import { isAbsolute, join } from 'node:path';
import type { NodeDef } from './red.ts';

/**
 * A node's settings as the editor stored them are untrusted input: a hand-edited or imported
 * flow can put anything there. Each reader returns a value of the right type and range or throws
 * a NodeSettingsError saying which field and what is expected.
 */
export class NodeSettingsError extends Error {
  override readonly name = 'NodeSettingsError';
}

const fail = (field: string, want: string, got: unknown): never => {
  throw new NodeSettingsError(`${field} must be ${want}, got ${JSON.stringify(got) ?? String(got)}`);
};

/** A trimmed string, or undefined when empty or absent. */
export function optionalString(def: NodeDef | Record<string, unknown>, field: string, maxLength = 1024): string | undefined {
  const v = def[field];
  if (v === undefined || v === null || v === '') return undefined;
  if (typeof v !== 'string' || v.length > maxLength) return fail(field, `text of at most ${maxLength} characters`, v);
  const t = v.trim();
  return t === '' ? undefined : t;
}

export function requiredString(def: NodeDef, field: string, what: string): string {
  return optionalString(def, field) ?? fail(field, what, def[field]);
}

/** A number within [min, max]; the editor stores numbers as strings or numbers. */
export function numberIn(def: NodeDef, field: string, min: number, max: number, fallback: number, integer = true): number {
  const raw = def[field];
  if (raw === undefined || raw === null || raw === '') return fallback;
  const n = typeof raw === 'number' ? raw : typeof raw === 'string' && /^-?\d+(\.\d+)?$/.test(raw.trim()) ? Number(raw) : NaN;
  if (!Number.isFinite(n) || n < min || n > max || (integer && !Number.isInteger(n))) {
    return fail(field, `${integer ? 'a whole number' : 'a number'} from ${min} to ${max}`, raw);
  }
  return n;
}

export function oneOf<T extends string>(def: NodeDef, field: string, allowed: readonly T[], fallback: T): T {
  const v = optionalString(def, field) ?? fallback;
  return (allowed as readonly string[]).includes(v) ? (v as T) : fail(field, `one of ${allowed.join(', ')}`, v);
}

/** A URL whose scheme is one of `schemes` (e.g. ['mqtt:', 'mqtts:']). */
export function urlWithScheme(value: string, field: string, schemes: readonly string[]): string {
  let u: URL;
  try {
    u = new URL(value);
  } catch {
    return fail(field, `a URL such as ${schemes[0]}//127.0.0.1`, value);
  }
  if (!schemes.includes(u.protocol)) return fail(field, `a ${schemes.map((s) => s.slice(0, -1)).join(' or ')} URL`, value);
  return value;
}

/**
 * An absolute path, or one under the home directory written `~/…`. A relative path would depend
 * on the folder Node-RED was started from, which an installer does not see.
 */
export function absolutePath(value: string, field: string): string {
  if (value.includes('\0')) return fail(field, 'a path', value);
  if (value === '~' || value.startsWith('~/')) return join(homedir(), value.slice(1));
  return isAbsolute(value) ? value : fail(field, 'an absolute path (or ~/…)', value);
}
