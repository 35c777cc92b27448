import { chmodSync, existsSync, mkdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';
import { createHash, createPublicKey, type KeyObject } from 'node:crypto';
import { gatewayId, generateGatewayKeyPair, loadPrivateKey, publicKeyPemOf, type GatewayId } from '../protocol/index.ts';

export interface GatewayKey {
  privateKey: KeyObject;
  publicKeyPem: string;
  created: boolean;
}

/**
 * Loads the gateway's Ed25519 key, creating it on first run. The file is PKCS#8 PEM with
 * mode 0600: whoever reads it can sign readings in this gateway's name.
 */
export function loadOrCreateKey(path: string): GatewayKey {
  let created = false;
  if (!existsSync(path)) {
    mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
    const pair = generateGatewayKeyPair();
    // 'wx' refuses to overwrite a key another process just created; then that key is the one.
    try {
      writeFileSync(path, pair.privateKeyPem, { mode: 0o600, flag: 'wx' });
      created = true;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
    }
  }
  const mode = statSync(path).mode & 0o777;
  if (mode & 0o077) chmodSync(path, 0o600);
  const pem = readFileSync(path, 'utf8');
  let privateKey: KeyObject;
  try {
    privateKey = loadPrivateKey(pem);
  } catch (e) {
    throw new Error(`${path} is not an Ed25519 private key (${(e as Error).message}); move it away to generate a new one`);
  }
  return { privateKey, publicKeyPem: publicKeyPemOf(pem), created };
}

/** gw- and the first 10 hex digits of the SHA-256 of the public key (SPKI): stable for the key, unique enough per site. */
export function idFromKey(publicKeyPem: string): GatewayId {
  const der = createPublicKey(publicKeyPem).export({ type: 'spki', format: 'der' });
  return gatewayId(`gw-${createHash('sha256').update(der).digest('hex').slice(0, 10)}`);
}
