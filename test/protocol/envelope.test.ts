import { Type } from '@sinclair/typebox';
import { describe, expect, it } from 'vitest';
import {
  GENESIS_PREV,
  ReadingSchema,
  assertMembers,
  asEnvelope,
  isRealInstant,
  canonicalJson,
  envelopeIdOf,
  generateGatewayKeyPair,
  loadPrivateKey,
  loadPublicKey,
  meterId,
  gatewayId,
  readingHash,
  signedBytesOfValidEnvelope,
  signEnvelope,
  signedBytes,
  verifySignature,
  type Envelope,
  type UnsignedEnvelope,
} from '../../protocol/index.ts';

const keys = generateGatewayKeyPair();
const priv = loadPrivateKey(keys.privateKeyPem);
const pub = loadPublicKey(keys.publicKeyPem);

function sample(): UnsignedEnvelope {
  return {
    v: 1,
    gateway: gatewayId('gw-test'),
    readings: [
      {
        meter: meterId('m-1'),
        seq: 1,
        ts: '2026-11-25T10:00:00.000Z',
        importWh: 1234567,
        exportWh: 89,
        powerW: -420,
        prev: GENESIS_PREV,
        voltageMilliV: 230100,
      },
    ],
  };
}

describe('envelope signatures', () => {
  it('round-trips sign and verify', () => {
    const env = signEnvelope(sample(), priv);
    expect(asEnvelope(JSON.parse(JSON.stringify(env)))).toEqual(env);
    expect(verifySignature(signedBytes(env), env.sig, pub)).toBe(true);
  });

  it('fails verification when any byte of the signed bytes changes', () => {
    const env = signEnvelope(sample(), priv);
    const bytes = signedBytes(env);
    for (let i = 0; i < bytes.length; i++) {
      const copy = Buffer.from(bytes);
      copy[i] = copy[i]! ^ 0x01;
      expect(verifySignature(copy, env.sig, pub), `byte ${i}`).toBe(false);
    }
    const sig = Buffer.from(env.sig, 'base64');
    for (let i = 0; i < sig.length; i++) {
      const copy = Buffer.from(sig);
      copy[i] = copy[i]! ^ 0x80;
      expect(verifySignature(bytes, copy.toString('base64'), pub), `sig byte ${i}`).toBe(false);
    }
  });

  it('fails verification when a field value changes', () => {
    const env = signEnvelope(sample(), priv);
    const tampered: Envelope = { ...env, readings: [{ ...env.readings[0]!, importWh: 1234568 }] };
    expect(verifySignature(signedBytes(tampered), tampered.sig, pub)).toBe(false);
  });

  it('rejects a signature from another key', () => {
    const other = loadPublicKey(generateGatewayKeyPair().publicKeyPem);
    const env = signEnvelope(sample(), priv);
    expect(verifySignature(signedBytes(env), env.sig, other)).toBe(false);
  });

  it('canonical bytes do not depend on key order', () => {
    const a = sample();
    const r = a.readings[0]!;
    const reordered = JSON.parse(
      `{"readings":[{"voltageMilliV":${r.voltageMilliV},"prev":"${r.prev}","powerW":${r.powerW},"exportWh":${r.exportWh},` +
        `"importWh":${r.importWh},"ts":"${r.ts}","seq":${r.seq},"meter":"${r.meter}"}],"gateway":"gw-test","v":1}`,
    );
    expect(signedBytes(reordered).equals(signedBytes(a))).toBe(true);
    expect(envelopeIdOf(signedBytes(reordered))).toBe(envelopeIdOf(signedBytes(a)));
    // RFC 8785: keys sorted by UTF-16 code units, no whitespace.
    expect(canonicalJson(a)).toMatch(/^\{"gateway":"gw-test","readings":\[\{"exportWh":89,"importWh":1234567,"meter":"m-1",/);
    const signed = signEnvelope(reordered, priv);
    expect(verifySignature(signedBytes(a), signed.sig, pub)).toBe(true);
  });

  it('chains readings by the hash of the previous one', () => {
    const r1 = sample().readings[0]!;
    const r2 = { ...r1, seq: 2, importWh: r1.importWh + 5, prev: readingHash(r1) };
    expect(r2.prev).toMatch(/^[0-9a-f]{64}$/);
    expect(readingHash({ ...r1 })).toBe(r2.prev);
    expect(readingHash({ ...r1, powerW: 1 })).not.toBe(r2.prev);
  });
});

describe('envelope schema', () => {
  const good = () => JSON.parse(JSON.stringify(signEnvelope(sample(), priv)));
  const cases: Array<[string, (e: any) => void, RegExp]> = [
    ['string energy', (e) => (e.readings[0].importWh = '12'), /importWh/],
    ['fractional energy', (e) => (e.readings[0].importWh = 1.5), /importWh/],
    ['negative energy', (e) => (e.readings[0].exportWh = -1), /exportWh/],
    ['unknown field', (e) => (e.extra = 1), /\//],
    ['no readings', (e) => (e.readings = []), /readings/],
    ['bad timestamp', (e) => (e.readings[0].ts = '2026-02-30T00:00:00.000Z'), /ts/],
    ['local timestamp', (e) => (e.readings[0].ts = '2026-11-25T10:00:00+07:00'), /ts/],
    ['bad meter id', (e) => (e.readings[0].meter = 'a/b'), /meter/],
    ['seq zero', (e) => (e.readings[0].seq = 0), /seq/],
    ['short sig', (e) => (e.sig = 'AAAA'), /sig/],
    ['wrong version', (e) => (e.v = 2), /v/],
  ];
  for (const [name, mutate, where] of cases) {
    it(`refuses ${name} naming the field`, () => {
      const e = good();
      mutate(e);
      expect(() => asEnvelope(e)).toThrow(where);
    });
  }
});

describe('isRealInstant', () => {
  it('agrees with a Date round trip on every day of leap and common years and on out-of-range fields', () => {
    const roundTrip = (ts: string) => {
      const ms = Date.parse(ts);
      return Number.isFinite(ms) && new Date(ms).toISOString() === ts;
    };
    const two = (n: number) => String(n).padStart(2, '0');
    let checked = 0;
    for (const year of [1900, 1999, 2000, 2024, 2026, 2100, 2400]) {
      for (let month = 0; month <= 13; month++) {
        for (let day = 0; day <= 32; day++) {
          for (const [h, m, sec] of [[0, 0, 0], [23, 59, 59], [24, 0, 0], [12, 60, 0], [12, 0, 60]]) {
            const ts = `${year}-${two(month)}-${two(day)}T${two(h!)}:${two(m!)}:${two(sec!)}.123Z`;
            expect(isRealInstant(ts), ts).toBe(roundTrip(ts));
            checked++;
          }
        }
      }
    }
    expect(checked).toBeGreaterThan(15_000);
  });
});

describe('signed bytes written directly for a schema-checked envelope', () => {
  it('equal the generic canonical bytes and per-reading hashes, for any mix of meters and optional fields', () => {
    let seed = 7;
    const rnd = (n: number) => (seed = (seed * 1103515245 + 12345) % 2 ** 31) % n;
    for (let round = 0; round < 50; round++) {
      const readings = Array.from({ length: 1 + rnd(20) }, (_, i) => {
        const r: Parameters<typeof readingHash>[0] = {
          meter: meterId(`m-${rnd(3)}`),
          seq: 1 + i,
          ts: new Date(1_790_000_000_000 + rnd(1e9)).toISOString(),
          importWh: rnd(1e9),
          exportWh: rnd(1e6),
          powerW: rnd(20000) - 10000,
          prev: rnd(2) ? GENESIS_PREV : 'ab'.repeat(32),
        };
        if (rnd(2)) r.voltageMilliV = rnd(250000);
        if (rnd(2)) r.currentMilliA = rnd(100000);
        if (rnd(2)) r.frequencyMilliHz = rnd(51000);
        if (rnd(5) === 0) r.importWh = Number.MAX_SAFE_INTEGER - rnd(1000);
        return r;
      });
      const env = signEnvelope({ v: 1, gateway: gatewayId(`gw-${rnd(100)}.site_${rnd(9)}`), readings }, priv);
      // As the settlement receives it: parsed from the wire and schema-checked.
      const received = asEnvelope(JSON.parse(JSON.stringify(env)));
      const fast = signedBytesOfValidEnvelope(received);
      expect(fast.bytes.equals(signedBytes(env))).toBe(true);
      expect(fast.hashes).toEqual(readings.map(readingHash));
    }
  });
});

describe('hand-written member lists', () => {
  it('are checked against the schema when their module loads: a member added to the schema cannot be dropped silently', () => {
    const written = ['currentMilliA', 'exportWh', 'frequencyMilliHz', 'importWh', 'meter', 'powerW', 'prev', 'seq', 'ts', 'voltageMilliV'];
    expect(() => assertMembers('signedBytesOfValidEnvelope (readings)', ReadingSchema, written)).not.toThrow();
    // What the check says the day someone adds a field to the reading schema and not to the writer.
    const grown = Type.Object({ ...ReadingSchema.properties, reactiveVarh: Type.Integer() });
    expect(() => assertMembers('signedBytesOfValidEnvelope (readings)', grown, written)).toThrow(
      /signedBytesOfValidEnvelope \(readings\) handles the members .* but the schema has .*reactiveVarh.*: update it with the schema/,
    );
  });
});
