/**
 * The SQLite ledger's commit alone, without MQTT, verification or the writer thread: how long
 * `commitEnvelopes` takes per reading for batches like those of the ingest benchmark's max
 * phases (32 gateways × 4 meters, chained readings 10 s apart). For comparing two versions of
 * the commit on one machine, interleaved; docs/benchmarks.md quotes it by this command:
 *
 *   node --import tsx test/bench/commit-only.ts [readings per envelope = 16] [envelopes per batch = 470] [batches = 20]
 *
 * Prints the median batch time; every envelope must be accepted, or it exits 1.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { openLedger } from '../../settlement/ledger/open.ts';
import type { VerifiedEnvelope } from '../../settlement/ledger/ledger.ts';
import type { Reading } from '../../protocol/index.ts';
import { EnvelopeFactory, verifiedEnvelope } from '../support/envelopes.ts';
import { enrollTestGateway, TEST_MARKET } from '../support/registry.ts';

const GATEWAYS = 32;
const METERS = 4;
const [perEnvelope, batchSize, batches] = [2, 3, 4].map((i, k) => {
  const v = Number(process.argv[i] ?? [16, 470, 20][k]);
  if (!Number.isInteger(v) || v < 1) {
    process.stderr.write(`usage: node --import tsx test/bench/commit-only.ts [readings per envelope] [envelopes per batch] [batches]\n`);
    process.exit(2);
  }
  return v;
}) as [number, number, number];

const dir = mkdtempSync(join(tmpdir(), 'gtx-commit-only-'));
const ledger = await openLedger({ sqlitePath: join(dir, 'ledger.sqlite') });
try {
  // As the registry hands it to the commit for the test market.
  const context = { ratedPowerW: 100_000, market: TEST_MARKET, timeZone: 'Asia/Bangkok', intervalMs: 900_000 };
  const factories = Array.from({ length: GATEWAYS }, (_, g) => new EnvelopeFactory(`gw-${g}`));
  for (const [g, f] of factories.entries()) {
    await enrollTestGateway(ledger, `gw-${g}`, f.publicKeyPem, Array.from({ length: METERS }, (_, m) => `m-${g}-${m}`));
  }
  // Signed before the clock starts: the envelopes of each gateway take its meters in turn.
  const all: VerifiedEnvelope[][] = [];
  let n = 0;
  for (let b = 0; b < batches; b++) {
    const batch: VerifiedEnvelope[] = [];
    for (let i = 0; i < batchSize; i++, n++) {
      const g = n % GATEWAYS;
      const f = factories[g]!;
      const meter = `m-${g}-${Math.floor(n / GATEWAYS) % METERS}`;
      const readings: Reading[] = [];
      for (let j = 0; j < perEnvelope; j++) {
        const r = f.nextReading(meter);
        f.advance(r);
        readings.push(r);
      }
      batch.push(verifiedEnvelope(f.sign(readings), context));
    }
    all.push(batch);
  }
  const times: number[] = [];
  for (const batch of all) {
    const t0 = performance.now();
    const outcomes = await ledger.commitEnvelopes(batch);
    times.push(performance.now() - t0);
    const bad = outcomes.find((o) => o.status !== 'accepted');
    if (bad) throw new Error(`not accepted: ${JSON.stringify(bad)}`);
  }
  times.sort((a, b) => a - b);
  const median = times[times.length >> 1]!;
  console.log(
    `median ${median.toFixed(1)} ms per batch of ${batchSize} envelopes × ${perEnvelope} readings: ` +
      `${((median * 1000) / batchSize / perEnvelope).toFixed(2)} µs per reading, ${((median * 1000) / batchSize).toFixed(0)} µs per envelope`,
  );
} finally {
  await ledger.close();
  rmSync(dir, { recursive: true, force: true });
}
