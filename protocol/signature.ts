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

/** Chain link: SHA-256 (hex) of a reading's canonical bytes; the next reading's `prev`. */
export function readingHash(r: Reading): string {
  return sha256Hex(canonicalBytes(r));
}

export { GENESIS_PREV };
