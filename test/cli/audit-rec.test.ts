import type Database from 'better-sqlite3';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { GENESIS_PREV, meterId, readingHash, type Reading } from '../../protocol/index.ts';
import { openLedger } from '../../settlement/ledger/open.ts';
import { RecMinter } from '../../settlement/recs/minting.ts';
import { MoneyStore } from '../../settlement/store/money-store.ts';
import { EnvelopeFactory, verifiedEnvelope } from '../support/envelopes.ts';
import { gtx, ledgerCopy as copyLedger } from '../support/ledger-copies.ts';
import { TEST_MARKET, enrollTestGateway } from '../support/registry.ts';
import { tempDir } from '../support/tmp.ts';

/**
 * `gtx audit rec ID` on a real SQLite ledger: a certificate checked down to its signed readings
 * passes; a changed volume, a changed reading or a changed envelope list fails with exit 1.
 */
const H = 3_600_000;
const T = Math.floor((Date.now() - 2 * 86_400_000) / H) * H; // two days ago, on the hour

describe('gtx audit rec', { timeout: 60_000 }, () => {
  const dir = tempDir();
  const base = join(dir.path, 'base', 'ledger.sqlite');
  let recId = '';
  const ledgerCopy = (name: string, tamper?: (db: Database.Database) => void) => copyLedger(dir.path, base, name, tamper);
  afterAll(() => dir.remove());

  beforeAll(async () => {
    const ledger = await openLedger({ sqlitePath: base });
    try {
      const gw = new EnvelopeFactory('gw-rec-audit');
      await enrollTestGateway(ledger, 'gw-rec-audit', gw.publicKeyPem, ['rec-audit-pv']);
      const rs: Reading[] = [];
      for (const [i, m] of [0, 20, 40, 60, 80].entries()) {
        rs.push({ meter: meterId('rec-audit-pv'), seq: i + 1, ts: new Date(T + m * 60_000).toISOString(), importWh: 0, exportWh: 1000 + m * 25, powerW: -1500, prev: i === 0 ? GENESIS_PREV : readingHash(rs[i - 1]!) });
      }
      // Two envelopes, so the certificate's list has more than one.
      const ctx = { ratedPowerW: 100_000, market: TEST_MARKET, timeZone: 'Asia/Bangkok', intervalMs: 900_000 };
      for (const part of [rs.slice(0, 2), rs.slice(2)]) {
        const [o] = await ledger.commitEnvelopes([verifiedEnvelope(gw.sign(part), ctx, T + 2 * H)], { nowMs: T + 2 * H });
        expect(o!.status).toBe('accepted');
      }
      const minter = new RecMinter(ledger, new MoneyStore(ledger.db, ledger.engine), { now: () => T + 3 * H, settleMs: 0, lookbackMs: 35 * 86_400_000 });
      const { minted } = await minter.mintDue();
      expect(minted.map((r) => r.volumeWh)).toEqual([1500, 500]);
      recId = minted[0]!.id;
    } finally {
      await ledger.close();
    }
  });

  it('passes for a certificate as minted, with its provenance', () => {
    const r = gtx(['audit', 'rec', recId, '--config', ledgerCopy('intact')]);
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout).toContain(`certificate ${recId}: 1500 Wh Solar from meter rec-audit-pv`);
    expect(r.stdout).toMatch(/readings seq 1\.\.4 in 2 envelopes: signatures, signed originals and chain verify/);
    expect(r.stdout).toContain('the readings prove 1500 Wh exported; 1 certificate(s) certify 1500 Wh, the ledger records 1500 Wh certified\n');
    expect(r.stdout.trim().split('\n').at(-1)).toBe('PASS');
    const json = JSON.parse(gtx(['audit', 'rec', recId, '--config', ledgerCopy('json'), '--json']).stdout) as { result: string; provenWh: number };
    expect(json).toMatchObject({ result: 'PASS', provenWh: 1500 });
  });

  it('fails (exit 1) when the volume, a reading or the envelope list was changed behind the ledger’s back', () => {
    const cases: Array<[string, (db: Database.Database) => void, RegExp]> = [
      ['volume', (db) => db.prepare('UPDATE recs SET volume_wh = volume_wh + 1 WHERE id = ?').run(recId), /certify 1501 Wh, the ledger records 1500 Wh/],
      [
        'volume and coverage',
        (db) => {
          db.prepare('UPDATE recs SET volume_wh = volume_wh + 1 WHERE id = ?').run(recId);
          db.prepare("UPDATE rec_coverage SET certified_wh = certified_wh + 1 WHERE meter = 'rec-audit-pv' AND hour_start_ms = ?").run(T);
        },
        /hour .*: 1501 Wh certified, the readings prove only 1500 Wh/,
      ],
      ['reading', (db) => db.prepare("UPDATE readings SET export_wh = export_wh + 100 WHERE meter = 'rec-audit-pv' AND seq = 3").run(), /failures/],
      ['envelopes', (db) => db.prepare("UPDATE recs SET envelopes = '[]' WHERE id = ?").run(recId), /does NOT match/],
    ];
    for (const [name, tamper, message] of cases) {
      const r = gtx(['audit', 'rec', recId, '--config', ledgerCopy(name, tamper)]);
      expect([name, r.status]).toEqual([name, 1]);
      expect(r.stdout).toMatch(message);
      expect(r.stdout.trim().split('\n').at(-1)).toBe('FAIL');
    }
  });

  it('says so for an unknown certificate or a missing id (exit 2)', () => {
    const unknown = gtx(['audit', 'rec', 'rec_nosuch', '--config', ledgerCopy('unknown')]);
    expect([unknown.status, unknown.stderr.split('\n')[0]]).toEqual([2, 'gtx: no certificate rec_nosuch in the ledger (GET /api/v1/recs lists them)']);
    expect(gtx(['audit', 'rec', '--config', ledgerCopy('noid')]).status).toBe(2);
  });
});
