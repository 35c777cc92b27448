import { Type, type Static } from '@sinclair/typebox';
import { TypeCompiler } from '@sinclair/typebox/compiler';
import { ID_PATTERN, type EnvelopeId, type GatewayId, type MeterId } from './ids.ts';

/**
 * The signed envelope: one gateway, one or more readings, one Ed25519 signature over the
 * RFC 8785 canonical bytes of everything except `sig`. This file is the single definition
 * of the wire format; see docs/protocol.md.
 */
export const PROTOCOL_VERSION = 1;
export const MAX_READINGS_PER_ENVELOPE = 256;

/** `prev` of the first reading of a meter (seq 1): 32 zero bytes, hex. */
export const GENESIS_PREV = '0'.repeat(64);

const SafeUInt = Type.Integer({ minimum: 0, maximum: Number.MAX_SAFE_INTEGER });
const SafeInt = Type.Integer({ minimum: -Number.MAX_SAFE_INTEGER, maximum: Number.MAX_SAFE_INTEGER });
const Id = Type.String({ pattern: ID_PATTERN });
// Millisecond ISO-8601 in UTC, exactly as Date.prototype.toISOString prints it.
const Instant = Type.String({ pattern: '^\\d{4}-\\d{2}-\\d{2}T\\d{2}:\\d{2}:\\d{2}\\.\\d{3}Z$' });
const Sha256Hex = Type.String({ pattern: '^[0-9a-f]{64}$' });

export const ReadingSchema = Type.Object(
  {
    meter: Id,
    /** Per-meter sequence number, starting at 1, +1 per reading. */
    seq: Type.Integer({ minimum: 1, maximum: Number.MAX_SAFE_INTEGER }),
    ts: Instant,
    /** Cumulative imported energy counter, Wh. */
    importWh: SafeUInt,
    /** Cumulative exported energy counter, Wh. */
    exportWh: SafeUInt,
    /** Active power, W; negative = export. */
    powerW: SafeInt,
    /** SHA-256 (hex) of the canonical bytes of this meter's previous reading; GENESIS_PREV for seq 1. */
    prev: Sha256Hex,
    voltageMilliV: Type.Optional(SafeUInt),
    currentMilliA: Type.Optional(SafeUInt),
    frequencyMilliHz: Type.Optional(SafeUInt),
  },
  { additionalProperties: false },
);

const envelopeFields = {
  v: Type.Literal(PROTOCOL_VERSION),
  gateway: Id,
  readings: Type.Array(ReadingSchema, { minItems: 1, maxItems: MAX_READINGS_PER_ENVELOPE }),
};

export const UnsignedEnvelopeSchema = Type.Object(envelopeFields, { additionalProperties: false });
export const EnvelopeSchema = Type.Object(
  { ...envelopeFields, sig: Type.String({ pattern: '^[A-Za-z0-9+/]{86}==$' }) },
  { additionalProperties: false },
);

type Branded<T, K extends keyof T, B> = Omit<T, K> & { [P in K]: B };
export type Reading = Branded<Static<typeof ReadingSchema>, 'meter', MeterId>;
export type UnsignedEnvelope = Omit<Branded<Static<typeof UnsignedEnvelopeSchema>, 'gateway', GatewayId>, 'readings'> & {
  readings: Reading[];
};
export type Envelope = UnsignedEnvelope & { sig: string };

/**
 * For code that writes or copies a schema's members by hand, for speed (signature.ts,
 * signedBytesOfValidEnvelope; the settlement's verifiedReading): throws at load time when the
 * schema's members and the hand-written list differ, so that a field added to the schema can
 * never be dropped silently.
 */
export function assertMembers(what: string, schema: { properties: Record<string, unknown> }, written: readonly string[]): void {
  const want = Object.keys(schema.properties).sort();
  const have = [...written].sort();
  if (want.join() !== have.join()) {
    throw new Error(`${what} handles the members ${have.join(', ')} but the schema has ${want.join(', ')}: update it with the schema`);
  }
}

const envelopeCheck = TypeCompiler.Compile(EnvelopeSchema);
const unsignedCheck = TypeCompiler.Compile(UnsignedEnvelopeSchema);

export class EnvelopeFormatError extends Error {
  override readonly name = 'EnvelopeFormatError';
}

/** Validates an already-parsed JSON value as an Envelope; throws EnvelopeFormatError naming the field. */
export function asEnvelope(value: unknown): Envelope {
  return checked(envelopeCheck, value) as Envelope;
}

/** The same for the signed part of an envelope (what the archive keeps beside the signature). */
export function asUnsignedEnvelope(value: unknown): UnsignedEnvelope {
  return checked(unsignedCheck, value) as UnsignedEnvelope;
}

function checked(check: typeof unsignedCheck | typeof envelopeCheck, value: unknown): Static<typeof UnsignedEnvelopeSchema> {
  if (!check.Check(value)) {
    const first = check.Errors(value).First();
    const where = first?.path || '/';
    throw new EnvelopeFormatError(`${where}: ${first?.message ?? 'invalid envelope'}`);
  }
  const readings = (value as Static<typeof UnsignedEnvelopeSchema>).readings;
  for (let i = 0; i < readings.length; i++) {
    // The pattern admits impossible dates like 2026-02-30.
    if (!isRealInstant(readings[i]!.ts)) throw new EnvelopeFormatError(`/readings/${i}/ts: not a real UTC instant`);
  }
  return value as Static<typeof UnsignedEnvelopeSchema>;
}

const DAYS_IN_MONTH = [31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];

/** Digits at [from, to) of a string the Instant pattern already matched. */
function digits(s: string, from: number, to: number): number {
  let n = 0;
  for (let i = from; i < to; i++) n = n * 10 + s.charCodeAt(i) - 48;
  return n;
}

/**
 * Whether a string of the Instant pattern (YYYY-MM-DDTHH:MM:SS.sssZ) names a real instant.
 * Arithmetic on the digits, no Date round trip: it runs for every reading received.
 */
export function isRealInstant(ts: string): boolean {
  const year = digits(ts, 0, 4);
  const month = digits(ts, 5, 7);
  const day = digits(ts, 8, 10);
  if (month < 1 || month > 12 || day < 1) return false;
  const leap = year % 4 === 0 && (year % 100 !== 0 || year % 400 === 0);
  if (day > (month === 2 && leap ? 29 : DAYS_IN_MONTH[month - 1]!)) return false;
  return digits(ts, 11, 13) < 24 && digits(ts, 14, 16) < 60 && digits(ts, 17, 19) < 60;
}

export function unsigned(env: Envelope): UnsignedEnvelope {
  const { sig: _sig, ...rest } = env;
  return rest;
}

export type { EnvelopeId };
