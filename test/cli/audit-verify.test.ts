import Database from 'better-sqlite3';
import { createHash, createPublicKey } from 'node:crypto';
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import mqtt from 'mqtt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { encodeEnvelope, readingHash, topics, type Envelope, type Reading } from '../../protocol/index.ts';
import type { MeterAuditReport } from '../../settlement/audit/verify.ts';
import { startSettlement } from '../../settlement/main.ts';
import { EnvelopeFactory } from '../support/envelopes.ts';
import { enrollTestGateway } from '../support/registry.ts';
import { settlementConfig, testLog } from '../support/stack.ts';
import { gtx, ledgerCopy as copyLedger } from '../support/ledger-copies.ts';
import { tempDir } from '../support/tmp.ts';
import { waitFor } from '../support/wait.ts';

type JsonReport = MeterAuditReport & { result: 'PASS' | 'FAIL'; generatedAt: string; ledger: { engine: string; location: string } };

// Readings of meter-a every 15 minutes from T0: seq k is stamped T0 + (k-1) * 15 min. T0 is
// midnight UTC three days ago: a fixed date would fall out of the settlement's backfill window.
const T0 = Math.floor((Date.now() - 3 * 86_400_000) / 86_400_000) * 86_400_000;
const DAY0 = new Date(T0).toISOString().slice(0, 10);
const QUARTER = 15 * 60_000;
const tsOf = (seq: number) => new Date(T0 + (seq - 1) * QUARTER).toISOString();
const fingerprint = (pem: string) => createHash('sha256').update(createPublicKey(pem).export({ type: 'spki', format: 'der' })).digest('hex');

describe('gtx audit verify', { timeout: 60_000 }, () => {
  const dir = tempDir();
  const baseLedger = join(dir.path, 'base', 'ledger.sqlite');
  const gwA = new EnvelopeFactory('gw-audit');
  const gwB = new EnvelopeFactory('gw-two');

  const ledgerCopy = (name: string, tamper?: (db: Database.Database) => void) => copyLedger(dir.path, baseLedger, name, tamper);
  const envelopeOf = (db: Database.Database, seq: number) =>
    db
      .prepare("SELECT e.id FROM readings r JOIN envelopes e ON e.ref = r.envelope_ref WHERE r.meter = 'meter-a' AND r.seq = ?")
      .pluck()
      .get(seq) as string;
  const verifyJson = (config: string, ...extra: string[]) => {
    const r = gtx(['audit', 'verify', '--meter', 'meter-a', '--config', config, '--json', ...extra]);
    return { status: r.status, stderr: r.stderr, report: JSON.parse(r.stdout) as JsonReport };
  };

  beforeAll(async () => {
    const cfg = settlementConfig(join(dir.path, 'unused'));
    cfg.ledger.sqlitePath = baseLedger;
    delete cfg.ledger.databaseUrl;
    const settlement = await startSettlement(cfg, { log: testLog('settlement') });
    await enrollTestGateway(settlement.ledger, gwA.gateway, gwA.publicKeyPem, ['meter-a', 'meter-b']);
    // meter-a seq 1..20 in five envelopes of gw-audit (each with one meter-b reading too),
    // then gw-audit is replaced: revoked, and gw-two enrolled for meter-a sends seq 21..24 in
    // one envelope; gw-two is revoked afterwards.
    const batch = (from: number, n: number): Reading[] => {
      const rs: Reading[] = [];
      for (let seq = from; seq < from + n; seq++) {
        const r = gwA.nextReading('meter-a', {}, T0 + (seq - 1) * QUARTER);
        gwA.advance(r);
        rs.push(r);
      }
      return rs;
    };
    const envelopes: Array<[string, Envelope]> = [];
    for (let i = 0; i < 5; i++) {
      const b = gwA.nextReading('meter-b', {}, T0 + i * QUARTER);
      gwA.advance(b);
      envelopes.push(['gw-audit', gwA.sign([...batch(i * 4 + 1, 4), b])]);
    }
    const client = await mqtt.connectAsync(settlement.brokerUrl);
    for (const [gw, env] of envelopes) await client.publishAsync(topics.readings(gw), encodeEnvelope(env), { qos: 1 });
    await waitFor(async () => (await settlement.ledger.counts()).readings === 25, '25 readings');
    await settlement.revokeGateway('gw-audit');
    await enrollTestGateway(settlement.ledger, gwB.gateway, gwB.publicKeyPem, ['meter-a']);
    await client.publishAsync(topics.readings('gw-two'), encodeEnvelope(gwB.sign(batch(21, 4))), { qos: 1 });
    await waitFor(async () => (await settlement.ledger.counts()).readings === 29, '29 readings');
    await client.endAsync();
    await settlement.revokeGateway('gw-two');
    await settlement.stop();
  });
  afterAll(() => dir.remove());

  it('passes a clean ledger and prints a report an auditor can file', () => {
    const config = ledgerCopy('clean');
    const r = gtx(['audit', 'verify', '--meter', 'meter-a', '--config', config]);
    expect(r.status, r.stderr).toBe(0);
    const out = r.stdout;
    expect(out).toMatch(/^meter:\s+meter-a$/m);
    expect(out).toContain(join(dir.path, 'clean', 'data', 'ledger.sqlite'));
    expect(out).toMatch(/^time range:\s+all readings$/m);
    expect(out).toMatch(/^envelopes checked:\s+6 /m);
    expect(out).toMatch(/^readings checked:\s+24$/m);
    expect(out).toMatch(new RegExp(`^first reading:\\s+seq 1 at ${tsOf(1)}$`, 'm'));
    expect(out).toMatch(new RegExp(`^last reading:\\s+seq 24 at ${tsOf(24)}$`, 'm'));
    expect(out).toMatch(/^energy:\s+import 230 Wh \(1010 -> 1240\), export 0 Wh/m);
    expect(out).toMatch(/^gaps:\s+none$/m);
    expect(out).toMatch(/^chain rules:\s+23 neighbouring pairs \(0 across gaps\): time forward, counters never down, energy within 100000 W rated power$/m);
    expect(out).toMatch(/^hand-overs:\s+1 \(each seq must be signed by the gateway holding the meter then\)$/m);
    expect(out).toMatch(/^ {2}from seq 21: gw-audit -> gw-two \(recorded \d{4}-\d{2}-\d{2}T[\d:.]+Z\)$/m);
    expect(out).toMatch(/^failures:\s+none$/m);
    // A revoked key still proves authenticity of what it signed before revocation.
    expect(out).toContain(`gw-audit  revoked  ${fingerprint(gwA.publicKeyPem)}  5 envelopes`);
    expect(out).toContain(`gw-two  revoked  ${fingerprint(gwB.publicKeyPem)}  1 envelope`);
    expect(out).toMatch(/^RESULT: PASS$/m);
    expect(out).toMatch(/^generated at \d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/m);
  });

  it('--json gives the whole report', () => {
    const { status, report } = verifyJson(ledgerCopy('json'));
    expect(status).toBe(0);
    expect(report).toMatchObject({
      meter: 'meter-a',
      range: { from: null, to: null },
      envelopesChecked: 6,
      readingsChecked: 24,
      readingsInLedger: 24,
      firstSeq: 1,
      lastSeq: 24,
      firstTs: tsOf(1),
      lastTs: tsOf(24),
      gaps: [],
      failures: [],
      energy: { firstImportWh: 1010, lastImportWh: 1240, importWh: 230, firstExportWh: 0, lastExportWh: 0, exportWh: 0 },
      gateways: [
        { id: 'gw-audit', status: 'revoked', keyFingerprint: fingerprint(gwA.publicKeyPem), envelopes: 5 },
        { id: 'gw-two', status: 'revoked', keyFingerprint: fingerprint(gwB.publicKeyPem), envelopes: 1 },
      ],
      chainRules: { pairsChecked: 23, acrossGaps: 0, ratedPowerW: 100_000, skipped: [] },
      // gw-two was enrolled for meter-a after gw-audit's revocation: a recorded hand-over.
      handovers: [{ oldGateway: 'gw-audit', newGateway: 'gw-two', fromSeq: 21, at: expect.stringMatching(/Z$/) }],
      ok: true,
      result: 'PASS',
      ledger: { engine: 'sqlite', location: join(dir.path, 'json', 'data', 'ledger.sqlite') },
    });
    expect(Date.parse(report.generatedAt)).toBeGreaterThan(0);
  });

  it('catches an edited reading row, and the stored counters it leaves running backwards', () => {
    let envelopeId = '';
    const config = ledgerCopy('edited-row', (db) => {
      envelopeId = envelopeOf(db, 6);
      db.prepare("UPDATE readings SET import_wh = import_wh + 1000 WHERE meter = 'meter-a' AND seq = 6").run();
    });
    const text = gtx(['audit', 'verify', '--meter', 'meter-a', '--config', config]);
    expect(text.status).toBe(1);
    expect(text.stdout).toMatch(/\[row_mismatch\] seq 6, envelope [0-9a-f]{16}: importWh stored 2060, signed 1060/);
    expect(text.stdout).toMatch(/\[counter_regression\] seq 7 \(after seq 6\), envelope [0-9a-f]{16}: seq 6 → 7: import counter went backwards \(2060 → 1070 Wh\)/);
    expect(text.stdout).toMatch(/^RESULT: FAIL \(2 problems\)$/m);
    const { status, report } = verifyJson(config);
    expect(status).toBe(1);
    expect(report.ok).toBe(false);
    expect(report.result).toBe('FAIL');
    // Seq 7 is in the same envelope as seq 6 (seq 5-8).
    expect(report.failures).toEqual([
      { kind: 'row_mismatch', seq: 6, envelopeId, detail: 'importWh stored 2060, signed 1060' },
      { kind: 'counter_regression', seq: 7, neighbourSeq: 6, envelopeId, detail: 'seq 6 → 7: import counter went backwards (2060 → 1070 Wh)' },
    ]);
  });

  it('catches a changed byte in a stored envelope as a bad signature', () => {
    let envelopeId = '';
    const config = ledgerCopy('edited-raw', (db) => {
      envelopeId = envelopeOf(db, 9);
      const raw = db.prepare('SELECT signed FROM envelopes WHERE id = ?').pluck().get(envelopeId) as string;
      // Still valid JSON and a valid envelope: only the signature can tell.
      const changed = raw.replace(/"importWh":(\d+)/, (_m, n: string) => `"importWh":${Number(n) + 1}`);
      expect(changed).not.toBe(raw);
      db.prepare('UPDATE envelopes SET signed = ? WHERE id = ?').run(changed, envelopeId);
    });
    const { status, report } = verifyJson(config);
    expect(status).toBe(1);
    expect(report.failures).toHaveLength(1);
    expect(report.failures[0]).toMatchObject({ kind: 'bad_signature', envelopeId, seq: 9 });
    // The other meter of that envelope fails too.
    const b = gtx(['audit', 'verify', '--meter', 'meter-b', '--config', config]);
    expect(b.status).toBe(1);
    expect(b.stdout).toMatch(/\[bad_signature\]/);
  });

  it('reports a deleted reading as a gap, not a failure, and no false broken chain across it', () => {
    const config = ledgerCopy('deleted-row', (db) => {
      db.prepare("DELETE FROM readings WHERE meter = 'meter-a' AND seq IN (10, 17, 18)").run();
    });
    const { status, report } = verifyJson(config);
    expect(status).toBe(0);
    expect(report.failures).toEqual([]);
    expect(report.readingsChecked).toBe(21);
    // The rules still hold across the gaps: each reading met its nearest stored neighbour.
    expect(report.chainRules).toMatchObject({ pairsChecked: 20, acrossGaps: 2 });
    // The signed envelopes still hold the removed readings: the report says so.
    expect(report.gaps).toEqual([
      { fromSeq: 10, toSeq: 10, signedInLedger: 1 },
      { fromSeq: 17, toSeq: 18, signedInLedger: 2 },
    ]);
    const text = gtx(['audit', 'verify', '--meter', 'meter-a', '--config', config]);
    expect(text.status).toBe(0);
    expect(text.stdout).toMatch(/^gaps:\s+2 gaps, 3 seqs missing/m);
    expect(text.stdout).toContain('seq 17-18 (2 still in a signed envelope: readings row removed)');
    expect(text.stdout).toMatch(/^RESULT: PASS$/m);
  });

  it('catches a row rewritten with a recomputed hash as a hash mismatch and a broken chain', () => {
    const config = ledgerCopy('rehashed-row', (db) => {
      const row = db.prepare("SELECT * FROM readings WHERE meter = 'meter-a' AND seq = 14").get() as Record<string, number | string>;
      const forged: Reading = {
        meter: 'meter-a' as Reading['meter'],
        seq: 14,
        ts: tsOf(14),
        importWh: Number(row.import_wh) - 5,
        exportWh: Number(row.export_wh),
        powerW: Number(row.power_w),
        prev: String(row.prev),
      };
      db.prepare("UPDATE readings SET import_wh = ?, hash = ? WHERE meter = 'meter-a' AND seq = 14").run(forged.importWh, readingHash(forged));
    });
    const { status, report } = verifyJson(config);
    expect(status).toBe(1);
    expect(report.failures.map((f) => [f.kind, f.seq])).toEqual([
      ['row_mismatch', 14],
      ['hash_mismatch', 14],
      ['broken_chain', 15],
    ]);
  });

  it('reports an unparseable envelope, an unregistered gateway and a forged genesis', () => {
    let unparseable = '';
    let unknown = '';
    const config = ledgerCopy('assorted', (db) => {
      unparseable = envelopeOf(db, 5);
      unknown = envelopeOf(db, 21);
      db.prepare('UPDATE envelopes SET signed = ? WHERE id = ?').run('{"v":1,"gateway":', unparseable);
      db.prepare("DELETE FROM gateways WHERE id = 'gw-two'").run();
      db.prepare(`UPDATE readings SET prev = '${'1'.repeat(64)}' WHERE meter = 'meter-a' AND seq = 1`).run();
    });
    const { status, report } = verifyJson(config);
    expect(status).toBe(1);
    expect(report.failures.map((f) => [f.kind, f.seq, f.envelopeId ?? null])).toEqual([
      ['row_mismatch', 1, expect.any(String)],
      ['broken_chain', 1, expect.any(String)],
      ['unparseable', 5, unparseable],
      ['unknown_gateway', 21, unknown],
    ]);
    expect(report.gateways.find((g) => g.id === 'gw-two')).toEqual({ id: 'gw-two', status: 'unregistered', keyFingerprint: null, envelopes: 1 });
    const text = gtx(['audit', 'verify', '--meter', 'meter-a', '--config', config]);
    expect(text.stdout).toMatch(/^RESULT: FAIL \(4 problems\)$/m);
  });

  it('--from/--to restrict the audit to readings stamped in [from, to)', () => {
    const clean = ledgerCopy('range');
    const { status, report } = verifyJson(clean, '--from', tsOf(5), '--to', tsOf(13));
    expect(status).toBe(0);
    expect(report).toMatchObject({
      range: { from: tsOf(5), to: tsOf(13) },
      envelopesChecked: 2,
      readingsChecked: 8,
      readingsInLedger: 24,
      firstSeq: 5,
      lastSeq: 12,
      firstTs: tsOf(5),
      lastTs: tsOf(12),
      gaps: [],
      energy: { importWh: 70 },
      gateways: [{ id: 'gw-audit', envelopes: 2 }],
      ok: true,
    });
    // A date with an offset means the same instant.
    const offset = verifyJson(clean, '--from', `${DAY0}T07:00:00+07:00`, '--to', `${DAY0}T01:00:00Z`);
    expect(offset.report).toMatchObject({ readingsChecked: 4, firstSeq: 1, lastSeq: 4 });
    const text = gtx(['audit', 'verify', '--meter', 'meter-a', '--config', clean, '--from', tsOf(5), '--to', tsOf(13)]);
    expect(text.stdout).toMatch(new RegExp(`^time range:\\s+${tsOf(5)} <= reading ts < ${tsOf(13)}$`, 'm'));
    expect(text.stdout).toMatch(/^readings checked:\s+8 \(of 24 stored for this meter\)$/m);

    // Tampering outside the range is not this range's business; inside it is, even when the
    // edited row's own timestamp was moved out of the range.
    const edited = ledgerCopy('range-edited', (db) => {
      db.prepare("UPDATE readings SET import_wh = 1 WHERE meter = 'meter-a' AND seq = 3").run();
      db.prepare("UPDATE readings SET ts_ms = ? WHERE meter = 'meter-a' AND seq = 6").run(Date.parse('2020-01-01T00:00:00Z'));
    });
    expect(verifyJson(edited, '--from', tsOf(13)).report.ok).toBe(true);
    const inRange = verifyJson(edited, '--from', tsOf(5), '--to', tsOf(13));
    expect(inRange.status).toBe(1);
    expect(inRange.report.failures).toEqual([
      expect.objectContaining({ kind: 'row_mismatch', seq: 6, detail: `ts stored 2020-01-01T00:00:00.000Z, signed ${tsOf(6)}` }),
      // The stored time now runs backwards from seq 5, just outside the edit.
      expect.objectContaining({ kind: 'time_regression', seq: 6, neighbourSeq: 5 }),
    ]);
    // An empty range is a pass with nothing checked, and says so.
    const empty = gtx(['audit', 'verify', '--meter', 'meter-a', '--config', clean, '--from', new Date(T0 + 7 * 86_400_000).toISOString().slice(0, 10)]);
    expect(empty.status).toBe(0);
    expect(empty.stdout).toMatch(/^readings checked:\s+0 \(no readings of this meter in the range; 24 stored in all\)$/m);
  });

  it('refuses bad usage with exit code 2 and a message to act on', () => {
    const config = ledgerCopy('usage');
    const cases: Array<[string[], RegExp]> = [
      [['--meter', 'nope'], /meter nope has no readings in the ledger .*gtx audit meters lists the known ids/],
      [['--meter', 'meter-a', '--from', 'yesterday'], /--from "yesterday" is not an ISO-8601 date/],
      [['--meter', 'meter-a', '--to', '2026-02-30'], /--to "2026-02-30" is not a real date/],
      [['--meter', 'meter-a', '--from', '2026-11-01T00:00:00'], /--from "2026-11-01T00:00:00" is not an ISO-8601 date or date-time with a zone/],
      [['--meter', 'meter-a', '--from', '2026-11-02', '--to', '2026-11-01'], /--from \(2026-11-02\) must be before --to \(2026-11-01\)/],
      [[], /--meter is required/],
    ];
    for (const [args, message] of cases) {
      const r = gtx(['audit', 'verify', '--config', config, ...args]);
      expect(r.status, args.join(' ')).toBe(2);
      expect(r.stderr).toMatch(message);
      expect(r.stderr).not.toMatch(/at .*\.ts:\d+/);
    }
    mkdirSync(join(dir.path, 'empty'));
    const emptyConfig = join(dir.path, 'empty', 'settlement.toml');
    writeFileSync(emptyConfig, `[settlement]\ndata_dir = "data"\n`);
    // No ledger at the configured path: every audit command says so and creates none.
    const missing = join(dir.path, 'empty', 'data', 'ledger.sqlite');
    for (const args of [
      ['verify', '--meter', 'meter-a'],
      ['meters'],
      ['export', '--meter', 'meter-a', '--out', join(dir.path, 'empty', 'out')],
    ]) {
      const noLedger = gtx(['audit', ...args, '--config', emptyConfig]);
      expect(noLedger.status, args.join(' ')).toBe(2);
      expect(noLedger.stderr).toContain(`gtx: no ledger at ${missing}: check --config / [ledger] sqlite_path, or DATABASE_URL`);
      expect(noLedger.stderr).not.toMatch(/at .*\.ts:\d+/);
    }
    expect(existsSync(join(dir.path, 'empty', 'data'))).toBe(false);
    expect(existsSync(join(dir.path, 'empty', 'out'))).toBe(false);
  });
});
