import Database from 'better-sqlite3';
import { join } from 'node:path';
import mqtt from 'mqtt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { GENESIS_PREV, encodeEnvelope, meterId, readingHash, topics, type Reading } from '../../protocol/index.ts';
import type { MeterAuditReport } from '../../settlement/audit/verify.ts';
import { startSettlement } from '../../settlement/main.ts';
import { EnvelopeFactory } from '../support/envelopes.ts';
import { TEST_MARKET, enrollTestGateway } from '../support/registry.ts';
import { settlementConfig, testLog } from '../support/stack.ts';
import { gtx, ledgerCopy as copyLedger, storeSigned } from '../support/ledger-copies.ts';
import { tempDir } from '../support/tmp.ts';
import { waitFor } from '../support/wait.ts';

/**
 * `gtx audit verify` across a real gateway hand-over: gw-old signs seq 1-6 and 9-12 of the meter
 * (7-8 never arrive), is revoked, and gw-new, enrolled for the same meter through the
 * settlement's Enrollment (which records the hand-over), continues the chain from seq 13.
 */

type JsonReport = MeterAuditReport & { result: 'PASS' | 'FAIL' };

const METER = 'meter-h';
const METER_SPEC = { id: METER, model: 'eastron-sdm120', role: 'bidirectional', ratedPowerW: 4000, energySource: 'Solar' } as const;
// Midnight UTC three days ago: inside the settlement's backfill window whenever the test runs.
const T0 = Math.floor((Date.now() - 3 * 86_400_000) / 86_400_000) * 86_400_000;
const QUARTER = 15 * 60_000;
const tsOf = (seq: number) => new Date(T0 + (seq - 1) * QUARTER).toISOString();
const readingAt = (seq: number, prev: string): Reading => ({ meter: meterId(METER), seq, ts: tsOf(seq), importWh: 1000 + 100 * seq, exportWh: 0, powerW: 400, prev });

describe('gtx audit verify across a gateway hand-over', { timeout: 60_000 }, () => {
  const dir = tempDir();
  const baseLedger = join(dir.path, 'base', 'ledger.sqlite');
  const gwOld = new EnvelopeFactory('gw-old');
  const gwNew = new EnvelopeFactory('gw-new');
  let handedOverAtMs = 0;

  const ledgerCopy = (name: string, tamper?: (db: Database.Database) => void) => copyLedger(dir.path, baseLedger, name, tamper);

  /** The signed reading stored for `seq`. */
  const storedReading = (db: Database.Database, seq: number): Reading => {
    const signed = db
      .prepare('SELECT e.signed FROM readings r JOIN envelopes e ON e.ref = r.envelope_ref WHERE r.meter = ? AND r.seq = ?')
      .pluck()
      .get(METER, seq) as string;
    return (JSON.parse(signed) as { readings: Reading[] }).readings.find((r) => r.seq === seq)!;
  };

  const verifyJson = (config: string) => {
    const r = gtx(['audit', 'verify', '--meter', METER, '--config', config, '--json']);
    return { status: r.status, stderr: r.stderr, report: JSON.parse(r.stdout) as JsonReport };
  };

  beforeAll(async () => {
    const cfg = settlementConfig(join(dir.path, 'unused'));
    cfg.ledger.sqlitePath = baseLedger;
    delete cfg.ledger.databaseUrl;
    const settlement = await startSettlement(cfg, { log: testLog('settlement') });
    await enrollTestGateway(settlement.ledger, gwOld.gateway, gwOld.publicKeyPem, [METER_SPEC]);
    const client = await mqtt.connectAsync(settlement.brokerUrl);
    let prev = GENESIS_PREV;
    for (let seq = 1; seq <= 12; seq++) {
      const r = readingAt(seq, prev);
      prev = readingHash(r);
      if (seq !== 7 && seq !== 8) await client.publishAsync(topics.readings(gwOld.gateway), encodeEnvelope(gwOld.sign([r])), { qos: 1 });
    }
    await waitFor(async () => (await settlement.ledger.counts()).readings === 10, '10 readings of the old gateway');

    // The old gateway breaks and is revoked; its replacement enrolls the same meter.
    await settlement.ledger.setGatewayStatus(gwOld.gateway, 'revoked', Date.now());
    const { code } = await settlement.enrollment.issueCode({ market: TEST_MARKET, owner: `owner-${gwOld.gateway}`, ttlMs: 600_000 });
    handedOverAtMs = Date.now();
    const enrolled = await settlement.enrollment.enroll({ code, gateway: gwNew.gateway, publicKeyPem: gwNew.publicKeyPem, meters: [METER_SPEC] });
    const head = enrolled.chainHeads.find((h) => h.meter === METER)!;
    expect(head.seq).toBe(12);

    // The new gateway continues the chain where the ledger has it.
    prev = head.hash;
    for (let seq = 13; seq <= 16; seq++) {
      const r = readingAt(seq, prev);
      prev = readingHash(r);
      await client.publishAsync(topics.readings(gwNew.gateway), encodeEnvelope(gwNew.sign([r])), { qos: 1 });
    }
    await waitFor(async () => (await settlement.ledger.counts()).readings === 14, '14 readings across the hand-over');
    await client.endAsync();
    await settlement.stop();
  });
  afterAll(() => dir.remove());

  it('passes, and lists the hand-over', () => {
    const config = ledgerCopy('clean');
    const { status, report } = verifyJson(config);
    expect(status).toBe(0);
    expect(report).toMatchObject({
      readingsChecked: 14,
      failures: [],
      gaps: [{ fromSeq: 7, toSeq: 8, signedInLedger: 0 }],
      handovers: [{ oldGateway: 'gw-old', newGateway: 'gw-new', fromSeq: 13, at: expect.any(String) }],
      gateways: [
        { id: 'gw-new', status: 'active', envelopes: 4 },
        { id: 'gw-old', status: 'revoked', envelopes: 10 },
      ],
      result: 'PASS',
    });
    const at = Date.parse(report.handovers[0]!.at);
    expect(at).toBeGreaterThanOrEqual(handedOverAtMs);
    expect(at).toBeLessThanOrEqual(Date.now());
    const text = gtx(['audit', 'verify', '--meter', METER, '--config', config]);
    expect(text.status).toBe(0);
    expect(text.stdout).toMatch(/^hand-overs:\s+1 \(each seq must be signed by the gateway holding the meter then\)$/m);
    expect(text.stdout).toContain(`  from seq 13: gw-old -> gw-new (recorded ${report.handovers[0]!.at})`);
    expect(text.stdout).toMatch(/^RESULT: PASS$/m);
  });

  it('fails a row after the hand-over re-attributed to an envelope of the old gateway', () => {
    let oldEnvelope = '';
    const config = ledgerCopy('reattributed', (db) => {
      const ref = db.prepare('SELECT envelope_ref FROM readings WHERE meter = ? AND seq = 12').pluck().get(METER) as number;
      oldEnvelope = db.prepare('SELECT id FROM envelopes WHERE ref = ?').pluck().get(ref) as string;
      db.prepare("UPDATE readings SET envelope_ref = ?, gateway = 'gw-old' WHERE meter = ? AND seq = 14").run(ref, METER);
    });
    const { status, report } = verifyJson(config);
    expect(status).toBe(1);
    expect(report.failures).toEqual([
      { kind: 'row_mismatch', seq: 14, envelopeId: oldEnvelope, detail: `the signed envelope holds no reading of ${METER} with seq 14` },
      {
        kind: 'handover_mismatch',
        seq: 14,
        envelopeId: oldEnvelope,
        detail: 'signed by gw-old, but seq 14 is covered by the hand-over from gw-old to gw-new from seq 13 on',
      },
    ]);
    const text = gtx(['audit', 'verify', '--meter', METER, '--config', config]);
    expect(text.status).toBe(1);
    expect(text.stdout).toMatch(/^ {2}\[handover_mismatch\] seq 14, envelope [0-9a-f]{16}: signed by gw-old, but seq 14 is covered by the hand-over/m);
    expect(text.stdout).toMatch(/^RESULT: FAIL \(2 problems\)$/m);
  });

  it("fails a reading after the hand-over signed with the old gateway's key, though signature, row and chain check out", () => {
    let id = '';
    const config = ledgerCopy('old-key', (db) => {
      // The same reading, so the same hash: seq 15 still links to it.
      id = storeSigned(db, gwOld, storedReading(db, 14));
    });
    const { status, report } = verifyJson(config);
    expect(status).toBe(1);
    expect(report.failures).toEqual([
      { kind: 'handover_mismatch', seq: 14, envelopeId: id, detail: 'signed by gw-old, but seq 14 is covered by the hand-over from gw-old to gw-new from seq 13 on' },
    ]);
  });

  it("fails the new gateway's reading spliced into the old gateway's gap with falling counters", () => {
    let id = '';
    const config = ledgerCopy('splice', (db) => {
      id = storeSigned(db, gwNew, { ...readingAt(7, readingHash(storedReading(db, 6))), importWh: 300 });
    });
    const { status, report } = verifyJson(config);
    expect(status).toBe(1);
    expect(report.failures).toEqual([
      { kind: 'counter_regression', seq: 7, neighbourSeq: 6, envelopeId: id, detail: 'seq 6 → 7: import counter went backwards (1600 → 300 Wh)' },
      { kind: 'handover_mismatch', seq: 7, envelopeId: id, detail: 'signed by gw-new, but seq 7 precedes the hand-over from gw-old to gw-new at seq 13' },
    ]);
  });
});
