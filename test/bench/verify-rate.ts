/**
 * The baseline: how many Ed25519 signatures `node:crypto` verifies per second on this core,
 * on the canonical bytes of a typical envelope, with the same kind of key object (a
 * KeyObject from SPKI PEM) the settlement verifies with. Nothing else in the loop.
 */
import { verify } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import { loadPublicKey, signedBytes } from '../../protocol/index.ts';
import { EnvelopeFactory } from '../support/envelopes.ts';
import { median } from './stats.ts';

export interface VerifyRate {
  /** Median of the rounds, verifies per second. */
  perSecond: number;
  rounds: number[];
  bytes: number;
}

/** Verifies per second over `rounds` rounds of `roundMs` each; the median is the figure. */
export function measureVerifyRate(readingsPerEnvelope: number, roundMs: number, rounds = 3): VerifyRate {
  const f = new EnvelopeFactory('bench-baseline');
  const readings = Array.from({ length: readingsPerEnvelope }, (_, i) => {
    const r = f.nextReading(`bench-baseline-m${i % 4}`, { voltageMilliV: 230_100, currentMilliA: 31_300, frequencyMilliHz: 50_010 });
    f.advance(r);
    return r;
  });
  const env = f.sign(readings);
  const bytes = signedBytes(env);
  const sig = Buffer.from(env.sig, 'base64');
  const key = loadPublicKey(f.publicKeyPem);
  if (!verify(null, bytes, key, sig)) throw new Error('baseline signature does not verify');

  const results: number[] = [];
  for (let round = 0; round < rounds; round++) {
    let n = 0;
    let ok = true;
    const t0 = performance.now();
    let t = t0;
    while (t - t0 < roundMs) {
      for (let i = 0; i < 64; i++) ok = verify(null, bytes, key, sig) && ok;
      n += 64;
      t = performance.now();
    }
    if (!ok) throw new Error('baseline verify failed');
    results.push((n * 1000) / (t - t0));
  }
  return { perSecond: median(results), rounds: results, bytes: bytes.length };
}
