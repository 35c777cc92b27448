import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { asUnsignedEnvelope, loadPublicKey, verifySignature } from '../../protocol/index.ts';
import type { Ledger } from '../ledger/ledger.ts';

export interface ExportedEnvelope {
  name: string;
  gateway: string;
  bin: string;
  sig: string;
  key: string;
  /** Checked here before writing, so the files are known to verify. */
  verified: boolean;
}

/**
 * Writes, for every stored envelope holding `meter`: NAME.bin (the exact canonical bytes
 * that were signed, as the ledger keeps them), NAME.sig (the raw 64-byte Ed25519 signature) and GATEWAY.pem (SPKI),
 * so anyone can check them with `openssl pkeyutl -verify -rawin` and nothing of ours.
 */
export async function exportMeterEnvelopes(
  ledger: Ledger,
  meter: string,
  outDir: string,
  onProgress?: (done: number, total: number) => void,
): Promise<ExportedEnvelope[]> {
  const envelopes = await ledger.envelopesWithMeter(meter);
  mkdirSync(outDir, { recursive: true });
  const keys = new Map<string, { file: string; key: ReturnType<typeof loadPublicKey> }>();
  const out: ExportedEnvelope[] = [];
  for (const [i, stored] of envelopes.entries()) {
    let gwKey = keys.get(stored.gateway);
    if (!gwKey) {
      const gw = await ledger.getGateway(stored.gateway);
      if (!gw) throw new Error(`gateway ${stored.gateway} of envelope ${stored.id} is missing from the registry`);
      gwKey = { file: join(outDir, `${stored.gateway}.pem`), key: loadPublicKey(gw.publicKeyPem) };
      writeFileSync(gwKey.file, gw.publicKeyPem);
      keys.set(stored.gateway, gwKey);
    }
    // The archive keeps exactly the bytes that were signed: they are written out as they are.
    const env = asUnsignedEnvelope(JSON.parse(stored.signed));
    const bytes = Buffer.from(stored.signed, 'utf8');
    const sig = stored.sig;
    const seqs = env.readings.filter((r) => r.meter === meter).map((r) => r.seq);
    const name = `${meter}-seq${String(Math.min(...seqs)).padStart(8, '0')}-${stored.id.slice(0, 12)}`;
    const bin = join(outDir, `${name}.bin`);
    const sigFile = join(outDir, `${name}.sig`);
    writeFileSync(bin, bytes);
    writeFileSync(sigFile, sig);
    const verified = verifySignature(bytes, sig.toString('base64'), gwKey.key);
    out.push({ name, gateway: stored.gateway, bin, sig: sigFile, key: gwKey.file, verified });
    onProgress?.(i + 1, envelopes.length);
  }
  return out;
}
