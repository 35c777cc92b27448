import Database from 'better-sqlite3';
import { join } from 'node:path';
import mqtt from 'mqtt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { GENESIS_PREV, encodeEnvelope, meterId, readingHash, topics, type Reading } from '../../protocol/index.ts';
import type { MeterAuditReport } from '../../settlement/audit/verify.ts';
import { startSettlement } from '../../settlement/main.ts';
import { EnvelopeFactory } from '../support/envelopes.ts';
import { enrollTestGateway } from '../support/registry.ts';
import { settlementConfig, testLog } from '../support/stack.ts';
import { gtx, ledgerCopy as copyLedger, storeSigned } from '../support/ledger-copies.ts';
import { tempDir } from '../support/tmp.ts';
import { waitFor } from '../support/wait.ts';

/**
 * `gtx audit verify` applies the commit's chain rules between each stored reading and its
 * nearest stored neighbours, across gaps too. The forged histories here are re-signed with the
 * gateway's own key, so signatures, rows and hash links all check out: only the rules can tell.
 */

type JsonReport = MeterAuditReport & { result: 'PASS' | 'FAIL' };

const METER = 'meter-c';
const RATED_W = 4000;
// Midnight UTC three days ago: inside the settlement's backfill window whenever the test runs.
const T0 = Math.floor((Date.now() - 3 * 86_400_000) / 86_400_000) * 86_400_000;
const QUARTER = 15 * 60_000;
const HOUR = 3_600_000;
const tsOf = (seq: number) => new Date(T0 + (seq - 1) * QUARTER).toISOString();
/** Seq k: stamped T0 + (k-1) quarters, import counter 1000 + 100 k Wh (400 W, well under the rating). */
const readingAt = (seq: number, prev: string): Reading => ({ meter: meterId(METER), seq, ts: tsOf(seq), importWh: 1000 + 100 * seq, exportWh: 0, powerW: 400, prev });

interface ReadingRowRef {
  seq: number;
  ref: number;
  signed: string;
}

describe('gtx audit verify: chain rules across gaps', { timeout: 60_000 }, () => {
  const dir = tempDir();
  const baseLedger = join(dir.path, 'base', 'ledger.sqlite');
  const gw = new EnvelopeFactory('gw-chain');

  const ledgerCopy = (name: string, tamper?: (db: Database.Database) => void) => copyLedger(dir.path, baseLedger, name, tamper);

  const writeSigned = (db: Database.Database, r: Reading, ref?: number) => storeSigned(db, gw, r, ref);

  /** Re-signs every stored reading from `fromSeq` on as `edit` changes it, keeping the hash links intact. */
  function resignFrom(db: Database.Database, fromSeq: number, edit: (r: Reading) => Reading): string[] {
    const rows = db
      .prepare('SELECT r.seq, r.envelope_ref AS ref, e.signed FROM readings r JOIN envelopes e ON e.ref = r.envelope_ref WHERE r.meter = ? AND r.seq >= ? ORDER BY r.seq')
      .all(METER, fromSeq) as ReadingRowRef[];
    let before: Reading | undefined;
    return rows.map((row) => {
      const signed = (JSON.parse(row.signed) as { readings: Reading[] }).readings;
      expect(signed).toHaveLength(1);
      const r = edit(signed[0]!);
      if (before && before.seq === r.seq - 1) r.prev = readingHash(before);
      before = r;
      return writeSigned(db, r, row.ref);
    });
  }

  const verifyJson = (config: string) => {
    const r = gtx(['audit', 'verify', '--meter', METER, '--config', config, '--json']);
    return { status: r.status, stderr: r.stderr, report: JSON.parse(r.stdout) as JsonReport };
  };

  beforeAll(async () => {
    const cfg = settlementConfig(join(dir.path, 'unused'));
    cfg.ledger.sqlitePath = baseLedger;
    delete cfg.ledger.databaseUrl;
    const settlement = await startSettlement(cfg, { log: testLog('settlement') });
    await enrollTestGateway(settlement.ledger, gw.gateway, gw.publicKeyPem, [
      { id: METER, model: 'eastron-sdm120', role: 'bidirectional', ratedPowerW: RATED_W, energySource: 'Solar' },
    ]);
    // Seq 1..16, one reading per envelope; seq 7 and 8 never arrive: a gap.
    const client = await mqtt.connectAsync(settlement.brokerUrl);
    let prev = GENESIS_PREV;
    for (let seq = 1; seq <= 16; seq++) {
      const r = readingAt(seq, prev);
      prev = readingHash(r);
      if (seq !== 7 && seq !== 8) await client.publishAsync(topics.readings(gw.gateway), encodeEnvelope(gw.sign([r])), { qos: 1 });
    }
    await waitFor(async () => (await settlement.ledger.counts()).readings === 14, '14 readings');
    await client.endAsync();
    await settlement.stop();
  });
  afterAll(() => dir.remove());

  it('passes a clean ledger with a gap, every rule checked across it', () => {
    const config = ledgerCopy('clean');
    const { status, report } = verifyJson(config);
    expect(status).toBe(0);
    expect(report).toMatchObject({
      readingsChecked: 14,
      gaps: [{ fromSeq: 7, toSeq: 8, signedInLedger: 0 }],
      failures: [],
      chainRules: { pairsChecked: 13, acrossGaps: 1, ratedPowerW: RATED_W, skipped: [] },
      handovers: [],
      result: 'PASS',
    });
    const text = gtx(['audit', 'verify', '--meter', METER, '--config', config]);
    expect(text.status).toBe(0);
    expect(text.stdout).toMatch(/^chain rules:\s+13 neighbouring pairs \(1 across gaps\): time forward, counters never down, energy within 4000 W rated power$/m);
    expect(text.stdout).toMatch(/^hand-overs:\s+none$/m);
    expect(text.stdout).toMatch(/^RESULT: PASS$/m);
  });

  it('catches a clock stepped back an hour across the gap', () => {
    let ids: string[] = [];
    const config = ledgerCopy('clock-back', (db) => {
      ids = resignFrom(db, 9, (r) => ({ ...r, ts: new Date(Date.parse(r.ts) - HOUR).toISOString() }));
    });
    const { status, report } = verifyJson(config);
    expect(status).toBe(1);
    // Seq 9 is stamped 15 minutes before seq 6; everything after it runs forward again.
    expect(report.failures).toEqual([
      {
        kind: 'time_regression',
        seq: 9,
        neighbourSeq: 6,
        envelopeId: ids[0],
        detail: `seq 6 → 9 (across 2 missing): timestamp does not advance (${tsOf(6)} → ${new Date(T0 + 4 * QUARTER).toISOString()})`,
      },
    ]);
    const text = gtx(['audit', 'verify', '--meter', METER, '--config', config]);
    expect(text.status).toBe(1);
    expect(text.stdout).toMatch(/^ {2}\[time_regression\] seq 9 \(after seq 6\), envelope [0-9a-f]{16}: seq 6 → 9 \(across 2 missing\): timestamp does not advance/m);
    expect(text.stdout).toMatch(/^RESULT: FAIL \(1 problem\)$/m);
  });

  it('catches a reading spliced into the gap with falling counters', () => {
    let id = '';
    const config = ledgerCopy('splice', (db) => {
      const six = db.prepare('SELECT hash FROM readings WHERE meter = ? AND seq = 6').pluck().get(METER) as string;
      // It links to seq 6, and seq 8 is still missing: no hash link can object.
      id = writeSigned(db, { ...readingAt(7, six), importWh: 500 });
    });
    const { status, report } = verifyJson(config);
    expect(status).toBe(1);
    expect(report.failures).toEqual([
      { kind: 'counter_regression', seq: 7, neighbourSeq: 6, envelopeId: id, detail: 'seq 6 → 7: import counter went backwards (1600 → 500 Wh)' },
    ]);
    expect(report.gaps).toEqual([{ fromSeq: 8, toSeq: 8, signedInLedger: 0 }]);
  });

  it('catches more energy across the gap than the rated power allows, and skips that check for a meter not in the registry', () => {
    let ids: string[] = [];
    const jump = (r: Reading): Reading => ({ ...r, importWh: r.importWh + 5000 });
    const config = ledgerCopy('rated', (db) => {
      ids = resignFrom(db, 9, jump);
    });
    const { status, report } = verifyJson(config);
    expect(status).toBe(1);
    // 45 minutes at 4 kW is 3 kWh; with the commit's 10% and 16 Wh of slack, 3316 Wh.
    expect(report.failures).toEqual([
      {
        kind: 'exceeds_rated_power',
        seq: 9,
        neighbourSeq: 6,
        envelopeId: ids[0],
        detail: 'seq 6 → 9 (across 2 missing): 5300 Wh in 2700 s exceeds what 4000 W rated power allows (3316 Wh)',
      },
    ]);

    const unregistered = ledgerCopy('rated-unregistered', (db) => {
      resignFrom(db, 9, jump);
      db.prepare('DELETE FROM meters WHERE id = ?').run(METER);
    });
    const skipped = verifyJson(unregistered);
    expect(skipped.status).toBe(0);
    expect(skipped.report.failures).toEqual([]);
    expect(skipped.report.chainRules).toEqual({
      pairsChecked: 13,
      acrossGaps: 1,
      ratedPowerW: null,
      skipped: [`exceeds_rated_power: meter ${METER} is not in the registry, so its rated power is unknown`],
    });
    const text = gtx(['audit', 'verify', '--meter', METER, '--config', unregistered]);
    expect(text.stdout).toMatch(/^chain rules:\s+13 neighbouring pairs \(1 across gaps\): time forward, counters never down, energy check skipped$/m);
    expect(text.stdout).toContain(`  skipped exceeds_rated_power: meter ${METER} is not in the registry, so its rated power is unknown`);
    expect(text.stdout).toMatch(/^RESULT: PASS$/m);
  });

  it('does not flag a span longer than the backfill window: that bounds intake, not stored data', () => {
    const config = ledgerCopy('long-span', (db) => {
      // Seq 1-6 moved 40 days back: seq 6 → 9 now spans more than the 35-day window.
      db.prepare('DELETE FROM readings WHERE meter = ? AND seq <= 6').run(METER);
      let prev = GENESIS_PREV;
      for (let seq = 1; seq <= 6; seq++) {
        const r = { ...readingAt(seq, prev), ts: new Date(Date.parse(tsOf(seq)) - 40 * 86_400_000).toISOString() };
        prev = readingHash(r);
        writeSigned(db, r);
      }
    });
    const { status, report } = verifyJson(config);
    expect(report.failures).toEqual([]);
    expect(status).toBe(0);
  });
});
