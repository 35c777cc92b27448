import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { GENESIS_PREV, meterId, readingHash, type Reading } from '../../../protocol/index.ts';
import { estimateDueGaps } from '../../../settlement/ledger/gap-estimates.ts';
import { auditRec } from '../../../settlement/audit/rec.ts';
import { RecMinter } from '../../../settlement/recs/minting.ts';
import { groupHours } from '../../../settlement/recs/rules.ts';
import { MoneyStore } from '../../../settlement/store/money-store.ts';
import { EnvelopeFactory, verifiedEnvelope } from '../../support/envelopes.ts';
import { engines, type OpenedLedger } from '../../support/ledgers.ts';
import { TEST_MARKET, enrollTestGateway } from '../../support/registry.ts';

/**
 * Certificates minted from verified exact export, on each engine: one per meter and hour, the
 * readings they rest on named, and never the same Wh twice — a second run, a second worker, a
 * late fill of a gap (certified as the difference), estimated energy (never certified).
 */
const H = 3_600_000;
const T = Date.parse('2026-11-30T10:00:00Z');
const CTX = { ratedPowerW: 100_000, market: TEST_MARKET, timeZone: 'Asia/Bangkok', intervalMs: 900_000 };

describe('grouping hours into certificates', () => {
  const hours = (whs: number[]) => whs.map((wh, i) => ({ hourStartMs: T + i * H, wh }));
  it('one certificate per hour with the default minimum of 1 Wh', () => {
    expect(groupHours(hours([5, 7, 1]), { minVolumeWh: 1, maxPeriodMs: 24 * H }, T + 3 * H)).toEqual([[T], [T + H], [T + 2 * H]]);
  });
  it('accumulates hours up to the minimum; a remainder waits while its period can still grow, and goes once it cannot', () => {
    const rules = { minVolumeWh: 1000, maxPeriodMs: 4 * H };
    const hs = hours([400, 400, 400, 300, 300]);
    expect(groupHours(hs, rules, T + 5 * H)).toEqual([[T, T + H, T + 2 * H]]);
    expect(groupHours(hs, rules, T + 7 * H)).toEqual([[T, T + H, T + 2 * H], [T + 3 * H, T + 4 * H]]);
    // Never past the maximum period, even below the minimum.
    expect(groupHours(hours([100, 100, 100, 100, 100, 900]), rules, T + 6 * H)).toEqual([[T, T + H, T + 2 * H, T + 3 * H], [T + 4 * H, T + 5 * H]]);
  });
});

for (const engine of engines) {
  describe.skipIf(engine.skip)(`REC minting on ${engine.name}`, () => {
    let opened: OpenedLedger;
    let now = T + 3 * H;
    let minter: RecMinter;
    let gw: EnvelopeFactory;

    beforeEach(async () => {
      now = T + 3 * H;
      opened = await engine.open();
      gw = new EnvelopeFactory('gw-pv');
      await enrollTestGateway(opened.ledger, 'gw-pv', gw.publicKeyPem, ['pv-1', 'pv-2']);
      minter = new RecMinter(opened.ledger, new MoneyStore(opened.ledger.db, opened.ledger.engine), { now: () => now, settleMs: 0, lookbackMs: 35 * 24 * H });
    });
    afterEach(() => opened.cleanup());

    /** A chain of readings of `meter` (seq 1, 2, …) at T + minutes, export growing 100 Wh per 10 minutes. */
    function chain(meter: string, minutes: number[]): Reading[] {
      const rs: Reading[] = [];
      minutes.forEach((m, i) => {
        rs.push({
          meter: meterId(meter),
          seq: i + 1,
          ts: new Date(T + m * 60_000).toISOString(),
          importWh: 0,
          exportWh: 10_000 + m * 10,
          powerW: -600,
          prev: i === 0 ? GENESIS_PREV : readingHash(rs[i - 1]!),
        });
      });
      return rs;
    }

    async function commit(rs: Reading[]) {
      const outcomes = await opened.ledger.commitEnvelopes([verifiedEnvelope(gw.sign(rs), CTX, now)], { nowMs: now });
      expect(outcomes.map((o) => o.status)).toEqual(['accepted']);
    }

    it('mints one certificate per complete hour of exact export, with its readings, and nothing more on a second run', async () => {
      await commit(chain('pv-1', [0, 10, 20, 30, 40, 50, 60, 70, 80, 90, 100, 110, 120, 130, 150]));
      now = T + 2 * H + 40 * 60_000; // 12:40: hours 10 and 11 have ended, 12 not
      const { minted } = await minter.mintDue();
      expect(minted.map((r) => [new Date(r.periodStartMs).toISOString(), r.volumeWh, r.firstSeq, r.lastSeq, r.energySource, r.status])).toEqual([
        ['2026-11-30T10:00:00.000Z', 600, 1, 7, 'Solar', 'active'],
        ['2026-11-30T11:00:00.000Z', 600, 7, 13, 'Solar', 'active'],
      ]);
      expect(minted[0]!.envelopes).toHaveLength(1);
      expect(minted[0]!.owner).toBe('owner-gw-pv');
      expect((await minter.mintDue()).minted).toEqual([]);
      now += H;
      expect((await minter.mintDue()).minted.map((r) => r.volumeWh)).toEqual([300]); // 12:00–12:30 … 12:30 read at 12:30, then nothing
    });

    it('certifies a late fill of a gap as the difference, and never estimated energy', async () => {
      // 10:00, 10:10, then nothing until 11:00: a gap over seq 3–6.
      const rs = chain('pv-2', [0, 10, 20, 30, 40, 50, 60, 70]);
      await commit(rs.slice(0, 2));
      await commit(rs.slice(6));
      now = T + 2 * H;
      const first = (await minter.mintDue()).minted;
      // 10:00–10:10 and 11:00–11:10 are all that is exact.
      expect(first.map((r) => [new Date(r.periodStartMs).toISOString(), r.volumeWh])).toEqual([
        ['2026-11-30T10:00:00.000Z', 100],
        ['2026-11-30T11:00:00.000Z', 100],
      ]);
      // The gap's energy booked as estimated: still nothing new to certify.
      await estimateDueGaps(opened.ledger.db, opened.ledger.engine, { nowMs: now, graceMs: 0, maxSpanMs: 35 * 24 * H, limit: 10 });
      expect((await minter.mintDue()).minted).toEqual([]);
      // The missing readings arrive: their exact energy replaces the estimate and is certified, once.
      await commit(rs.slice(2, 6));
      const late = (await minter.mintDue()).minted;
      expect(late.map((r) => [new Date(r.periodStartMs).toISOString(), r.volumeWh])).toEqual([['2026-11-30T10:00:00.000Z', 500]]);
      expect((await minter.mintDue()).minted).toEqual([]);
      const all = await minter.recs.list({ meter: 'pv-2' });
      expect(all.filter((r) => r.periodStartMs === T).reduce((a, r) => a + r.volumeWh, 0)).toBe(600);
    });

    it('two workers minting at once certify each Wh once', async () => {
      await commit(chain('pv-1', [0, 30, 60, 90, 120]));
      now = T + 2 * H;
      const other = engine.name === 'postgres' ? await opened.reopen() : opened.ledger;
      const minter2 = new RecMinter(other, new MoneyStore(other.db, other.engine), { now: () => now, settleMs: 0, lookbackMs: 35 * 24 * H });
      const runs = await Promise.all([minter.mintDue(), minter2.mintDue(), minter.mintDue()]);
      const volumes = runs.flatMap((r) => r.minted).map((r) => r.volumeWh);
      expect(volumes.reduce((a, b) => a + b, 0)).toBe(1200);
      expect((await minter.recs.list({ meter: 'pv-1' })).reduce((a, r) => a + r.volumeWh, 0)).toBe(1200);
    });

    it('with a minimum volume, accumulates hours into one certificate, certifies the rest once its period cannot grow, and each audits', async () => {
      const rules = { minVolumeWh: 1500, maxPeriodMs: 4 * H };
      const acc = new RecMinter(opened.ledger, new MoneyStore(opened.ledger.db, opened.ledger.engine), { now: () => now, settleMs: 0, lookbackMs: 35 * 24 * H, rules });
      await commit(chain('pv-1', [0, 30, 60, 90, 120, 150, 180, 210, 240, 270, 300])); // 600 Wh per hour, 10:00–15:00
      now = T + 5 * H;
      const first = (await acc.mintDue()).minted;
      expect(first.map((r) => [new Date(r.periodStartMs).toISOString(), new Date(r.periodEndMs).toISOString(), r.volumeWh, r.firstSeq, r.lastSeq])).toEqual([
        ['2026-11-30T10:00:00.000Z', '2026-11-30T13:00:00.000Z', 1800, 1, 7],
      ]);
      expect((await acc.mintDue()).minted).toEqual([]); // 13:00–15:00 has 1200 Wh and may still grow
      now = T + 7 * H;
      const rest = (await acc.mintDue()).minted;
      expect(rest.map((r) => [new Date(r.periodStartMs).toISOString(), new Date(r.periodEndMs).toISOString(), r.volumeWh, r.firstSeq, r.lastSeq])).toEqual([
        ['2026-11-30T13:00:00.000Z', '2026-11-30T15:00:00.000Z', 1200, 7, 11],
      ]);
      for (const rec of [...first, ...rest]) {
        const report = (await auditRec(opened.ledger, rec.id))!;
        expect([report.ok, report.provenWh, report.certifiedWh, report.recordedWh, report.pendingWh]).toEqual([true, rec.volumeWh, rec.volumeWh, rec.volumeWh, 0]);
      }
    });

    it('the audit of overlapping certificates checks them together and reports energy still pending', async () => {
      const rules = { minVolumeWh: 1000, maxPeriodMs: 4 * H };
      const acc = new RecMinter(opened.ledger, new MoneyStore(opened.ledger.db, opened.ledger.engine), { now: () => now, settleMs: 0, lookbackMs: 35 * 24 * H, rules });
      const rs = chain('pv-2', [0, 10, 20, 30, 40, 50, 60, 90, 120, 150]);
      await commit(rs.slice(0, 2)); // 10:00, 10:10, then a gap to 11:00
      await commit(rs.slice(6));
      now = T + 5 * H;
      // 100 Wh in hour 10 and 600 Wh in hour 11 (11:00–12:00), 300 in hour 12: 1000 Wh over 10:00–13:00.
      const [a] = (await acc.mintDue()).minted;
      expect([a!.volumeWh, new Date(a!.periodEndMs).toISOString()]).toEqual([1000, '2026-11-30T13:00:00.000Z']);
      await commit(rs.slice(2, 6)); // the gap fills: 500 Wh more in hour 10, below the minimum
      const report = (await auditRec(opened.ledger, a!.id))!;
      expect([report.ok, report.provenWh, report.certifiedWh, report.pendingWh]).toEqual([true, 1500, 1000, 500]);
      now = T + 15 * H; // its period (from 10:00) can no longer grow: certified anyway
      const [b] = (await acc.mintDue()).minted;
      expect([b!.volumeWh, new Date(b!.periodStartMs).toISOString(), new Date(b!.periodEndMs).toISOString()]).toEqual([500, '2026-11-30T10:00:00.000Z', '2026-11-30T11:00:00.000Z']);
      const both = (await auditRec(opened.ledger, b!.id))!;
      expect([both.ok, both.provenWh, both.certifiedWh, both.pendingWh, both.certificates.length]).toEqual([true, 1500, 1500, 0, 2]);
    });
  });
}
