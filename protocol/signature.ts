import { createPrivateKey, createPublicKey, generateKeyPairSync, sign, verify, type KeyObject } from 'node:crypto';
import { canonicalBytes } from './canonical.ts';
import { sha256Hex } from './hash.ts';
import { GENESIS_PREV, unsigned, type Envelope, type Reading, type UnsignedEnvelope } from './envelope.ts';
import type { EnvelopeId } from './ids.ts';

export interface GatewayKeyPair {
  privateKeyPem: string;
  publicKeyPem: string;
}

export function generateGatewayKeyPair(): GatewayKeyPair {
  const { privateKey, publicKey } = generateKeyPairSync('ed25519');
  return {
    privateKeyPem: privateKey.export({ type: 'pkcs8', format: 'pem' }).toString(),
    publicKeyPem: publicKey.export({ type: 'spki', format: 'pem' }).toString(),
  };
}

export function loadPrivateKey(pem: string): KeyObject {
  const key = createPrivateKey(pem);
  if (key.asymmetricKeyType !== 'ed25519') throw new Error(`expected an Ed25519 private key, got ${key.asymmetricKeyType}`);
  return key;
}

export function loadPublicKey(pem: string): KeyObject {
  const key = createPublicKey(pem);
  if (key.asymmetricKeyType !== 'ed25519') throw new Error(`expected an Ed25519 public key, got ${key.asymmetricKeyType}`);
  return key;
}

export function publicKeyPemOf(privateKeyPem: string): string {
  return createPublicKey(loadPrivateKey(privateKeyPem)).export({ type: 'spki', format: 'pem' }).toString();
}

/** The exact bytes a gateway signs: RFC 8785 canonical JSON of the envelope without `sig`. */
export function signedBytes(env: UnsignedEnvelope | Envelope): Buffer {
  return canonicalBytes('sig' in env ? unsigned(env) : env);
}

export function envelopeIdOf(bytes: Buffer): EnvelopeId {
  return sha256Hex(bytes) as EnvelopeId;
}

export function signEnvelope(env: UnsignedEnvelope, privateKey: KeyObject): Envelope {
  const sig = sign(null, signedBytes(env), privateKey).toString('base64');
  return { ...env, sig };
}

export function verifySignature(bytes: Buffer, sigBase64: string, publicKey: KeyObject): boolean {
  const sig = Buffer.from(sigBase64, 'base64');
  if (sig.length !== 64) return false;
  return verify(null, bytes, publicKey, sig);
}

/**
 * The same check on libuv's thread pool (the callback form of `crypto.verify`), so that a
 * busy intake verifies signatures in parallel with its MQTT and ledger work instead of
 * spending ~90 µs of event loop on each.
 */
export function verifySignatureAsync(bytes: Buffer, sigBase64: string, publicKey: KeyObject): Promise<boolean> {
  const sig = Buffer.from(sigBase64, 'base64');
  if (sig.length !== 64) return Promise.resolve(false);
  return new Promise((resolve, reject) => {
    verify(null, bytes, publicKey, sig, (err, ok) => (err ? reject(err) : resolve(ok)));
  });
}

/** Chain link: SHA-256 (hex) of a reading's canonical bytes; the next reading's `prev`. */
export function readingHash(r: Reading): string {
  return sha256Hex(canonicalBytes(r));
}

export { GENESIS_PREV };

const READINGS_KEY = Buffer.from('"readings":[');
const OPEN = 0x7b; // {
const CLOSE = 0x7d; // }
const END = 0x5d; // ]

/**
 * The chain hashes of all readings of an envelope, sliced out of its canonical bytes instead
 * of canonicalising each reading again: RFC 8785 writes an array element exactly as it would
 * write that value alone, so each reading's canonical bytes are a substring of the envelope's.
 * Only for envelopes that passed the schema (no braces inside any string value); it falls back
 * to readingHash when the slices don't match the readings.
 */
export function readingHashesFromSigned(env: UnsignedEnvelope | Envelope, signed: Buffer): string[] {
  const out: string[] = [];
  let i = signed.indexOf(READINGS_KEY);
  if (i >= 0) {
    i += READINGS_KEY.length;
    let depth = 0;
    let start = -1;
    for (; i < signed.length; i++) {
      const c = signed[i];
      if (c === OPEN) {
        if (depth++ === 0) start = i;
      } else if (c === CLOSE) {
        if (--depth === 0) out.push(sha256Hex(signed.subarray(start, i + 1)));
      } else if (c === END && depth === 0) break;
    }
  }
  return out.length === env.readings.length ? out : env.readings.map(readingHash);
}
