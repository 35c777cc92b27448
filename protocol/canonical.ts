import canonicalizeImport from 'canonicalize';

// The package ships a CJS default export; normalise its type for ESM callers.
const canonicalize = canonicalizeImport as unknown as (value: unknown) => string | undefined;

/** RFC 8785 (JCS) canonical JSON text of a value. */
export function canonicalJson(value: unknown): string {
  const text = canonicalize(value);
  if (text === undefined) throw new Error('value cannot be canonicalised');
  return text;
}

/** RFC 8785 canonical bytes (UTF-8) of a value: what gets hashed and signed. */
export function canonicalBytes(value: unknown): Buffer {
  return Buffer.from(canonicalJson(value), 'utf8');
}
