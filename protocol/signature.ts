import { createPrivateKey, createPublicKey, generateKeyPairSync, sign, verify, type KeyObject } from 'node:crypto';
import { canonicalBytes, canonicalJson } from './canonical.ts';
import { sha256Hex } from './hash.ts';
import { GENESIS_PREV, ReadingSchema, UnsignedEnvelopeSchema, assertMembers, unsigned, type Envelope, type Reading, type UnsignedEnvelope } from './envelope.ts';
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

/**
 * The signed bytes of an envelope that passed the schema (`asEnvelope`), with each reading's
 * chain hash, written straight in RFC 8785 member order instead of through the generic
 * canonicaliser: the schema fixes every member name, admits only strings JSON never escapes
 * (ids, hex digests, instants) and only safe integers, so canonical JSON reduces to
 * concatenation. This runs for every envelope received; test/protocol/envelope.test.ts checks
 * it against `signedBytes` and `readingHash` on generated envelopes. Not for unchecked input.
 */
export function signedBytesOfValidEnvelope(env: Envelope): { text: string; bytes: Buffer; hashes: string[] } {
  const hashes: string[] = [];
  let text = '{"gateway":"' + env.gateway + '","readings":[';
  for (let i = 0; i < env.readings.length; i++) {
    const r = env.readings[i]!;
    // Members in UTF-16 code unit order: currentMilliA exportWh frequencyMilliHz importWh
    // meter powerW prev seq ts voltageMilliV.
    let t = '{';
    if (r.currentMilliA !== undefined) t += '"currentMilliA":' + r.currentMilliA + ',';
    t += '"exportWh":' + r.exportWh + ',';
    if (r.frequencyMilliHz !== undefined) t += '"frequencyMilliHz":' + r.frequencyMilliHz + ',';
    t += '"importWh":' + r.importWh + ',"meter":"' + r.meter + '","powerW":' + r.powerW + ',"prev":"' + r.prev;
    t += '","seq":' + r.seq + ',"ts":"' + r.ts + '"';
    if (r.voltageMilliV !== undefined) t += ',"voltageMilliV":' + r.voltageMilliV;
    t += '}';
    hashes.push(sha256Hex(t));
    text += i === 0 ? t : ',' + t;
  }
  text += '],"v":' + env.v + '}';
  return { text, bytes: Buffer.from(text, 'latin1'), hashes };
}

/**
 * The one wire form of a signed envelope: the RFC 8785 canonical JSON of the whole envelope,
 * `sig` included. The settlement accepts no other byte sequence for the same envelope
 * (`non_canonical`), so what it archives is exactly what was signed.
 */
export function encodeEnvelope(env: Envelope): string {
  return canonicalJson(env);
}

/**
 * Whether `payload` is exactly the canonical form of the envelope whose signed bytes are
 * `signed` (as `signedBytesOfValidEnvelope` writes them) and whose signature is `sig`. In RFC 8785
 * member order `sig` falls between `readings` and `v`, which is the last member, so the payload
 * must be the signed bytes with `,"sig":"…"` inserted before `,"v":`. Compared in place, without
 * building the expected payload.
 */
export function isCanonicalPayload(payload: Buffer, signed: Buffer, sig: string): boolean {
  const sigMember = ',"sig":"' + sig + '"';
  if (payload.length !== signed.length + sigMember.length) return false;
  const cut = signed.lastIndexOf(',"v":');
  if (cut < 0) return false;
  return (
    payload.compare(signed, 0, cut, 0, cut) === 0 &&
    payload.toString('latin1', cut, cut + sigMember.length) === sigMember &&
    payload.compare(signed, cut, signed.length, cut + sigMember.length, payload.length) === 0
  );
}

/** The canonical payload of a stored envelope: its signed bytes with the signature put back. */
export function payloadOf(signed: string, sig: string): string {
  const cut = signed.lastIndexOf(',"v":');
  return signed.slice(0, cut) + ',"sig":"' + sig + '"' + signed.slice(cut);
}

// The members signedBytesOfValidEnvelope writes, checked against the schema when this loads.
assertMembers('signedBytesOfValidEnvelope (readings)', ReadingSchema, [
  'currentMilliA', 'exportWh', 'frequencyMilliHz', 'importWh', 'meter', 'powerW', 'prev', 'seq', 'ts', 'voltageMilliV',
]);
assertMembers('signedBytesOfValidEnvelope (envelope)', UnsignedEnvelopeSchema, ['gateway', 'readings', 'v']);

/** Chain link: SHA-256 (hex) of a reading's canonical bytes; the next reading's `prev`. */
export function readingHash(r: Reading): string {
  return sha256Hex(canonicalBytes(r));
}

export { GENESIS_PREV };
