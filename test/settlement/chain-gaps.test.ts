import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { Envelope, Reading } from '../../protocol/index.ts';
import { splitIntoIntervals } from '../../settlement/energy/intervals.ts';
import { estimateDueGaps } from '../../settlement/ledger/gap-estimates.ts';
import type { CommitOutcome, IntervalRow, Ledger, MeterContext, VerifiedEnvelope } from '../../settlement/ledger/ledger.ts';
import { EnvelopeFactory, verifiedEnvelope } from '../support/envelopes.ts';
import { engines, skipPostgres, type OpenedLedger } from '../support/ledgers.ts';
import { TEST_MARKET, enrollTestGateway } from '../support/registry.ts';

/**
 * The chain is checked against the nearest stored reading on each side, gap or no gap, and the
 * energy across a gap that stays open is booked as estimated until a fill replaces it: on both
 * engines.
 */

const CONTEXT: MeterContext = { ratedPowerW: 10_000, market: TEST_MARKET, timeZone: 'Asia/Bangkok', intervalMs: 900_000 };
const MIN = 60_000;
const DAY = 86_400_000;
/** 2025-01-06 12:00 in Bangkok: an interval boundary there. */
const T0 = Date.UTC(2025, 0, 6, 5, 0, 0);
const GRACE = 3600_000;

const verified = (env: Envelope): VerifiedEnvelope => verifiedEnvelope(env, CONTEXT);

/** Readings of `meter` at [ms after T0, importWh], chained 1..n (commit any subset). */
function chain(f: EnvelopeFactory, meter: string, points: Array<[number, number]>): Reading[] {
  return points.map(([at, importWh]) => {
    const r = f.nextReading(meter, { importWh, exportWh: 0 }, T0 + at);
    f.advance(r);
    return r;
  });
}

const sum = (rows: IntervalRow[], k: keyof IntervalRow) => rows.reduce((n, r) => n + r[k], 0);
const ranges = (gs: Array<{ fromSeq: number; toSeq: number; estimated: boolean }>) => gs.map(({ fromSeq, toSeq, estimated }) => ({ fromSeq, toSeq, estimated }));

function exactIntervals(rs: Reading[]): IntervalRow[] {
  const byStart = new Map<number, IntervalRow>();
  for (let i = 1; i < rs.length; i++) {
    const a = { tsMs: Date.parse(rs[i - 1]!.ts), importWh: rs[i - 1]!.importWh, exportWh: rs[i - 1]!.exportWh };
    const b = { tsMs: Date.parse(rs[i]!.ts), importWh: rs[i]!.importWh, exportWh: rs[i]!.exportWh };
    for (const e of splitIntoIntervals(a, b, CONTEXT.intervalMs, CONTEXT.timeZone)) {
      const row = byStart.get(e.startMs) ?? { startMs: e.startMs, importWh: 0, exportWh: 0, estImportWh: 0, estExportWh: 0 };
      row.importWh += e.importWh;
      row.exportWh += e.exportWh;
      byStart.set(e.startMs, row);
    }
  }
  return [...byStart.values()].sort((a, b) => a.startMs - b.startMs);
}

const rejected = (o: CommitOutcome | undefined) => (o?.status === 'rejected' ? { reason: o.reason, detail: o.detail } : o?.status);

describe.each(engines)('$name ledger: chains across gaps and estimated energy', (engine) => {
  describe.skipIf(engine.skip)('', () => {
    let opened: OpenedLedger;
    let ledger: Ledger;
    let f: EnvelopeFactory;

    beforeEach(async () => {
      opened = await engine.open();
      ledger = opened.ledger;
      f = new EnvelopeFactory('gw-gaps');
      await enrollTestGateway(ledger, 'gw-gaps', f.publicKeyPem, ['m', 'n', 'p', 'q'].map((id) => ({ id, model: 'eastron-sdm120', role: 'consumption', ratedPowerW: 10_000 })));
    });
    afterEach(async () => opened.cleanup());

    const commit = async (rs: Reading[], nowMs?: number) => (await ledger.commitEnvelopes([verified(f.sign(rs))], nowMs === undefined ? {} : { nowMs }))[0];

    it('refuses a reading whose time goes back across a gap (a clock stepped back an hour)', async () => {
      const rs = chain(f, 'm', [[0, 100], [MIN, 110], [2 * MIN, 120], [3 * MIN, 130]]);
      expect((await commit(rs.slice(0, 2)))?.status).toBe('accepted');
      // seq 4, an hour before seq 2: its own prev is the (missing) seq 3, so only the gap rule sees it.
      const stepped = { ...rs[3]!, ts: new Date(T0 + MIN - 3600_000).toISOString() };
      expect(rejected(await commit([stepped]))).toEqual({ reason: 'time_regression', detail: expect.stringMatching(/seq 2 → 4 \(across 1 missing\): timestamp does not advance/) as string });
      expect((await ledger.readings('m')).map((r) => r.seq)).toEqual([1, 2]);
    });

    it("refuses a replacement's reading spliced into a gap with falling counters or time", async () => {
      // Stored: 1, 2, 3 and 5 (4 missing). A reading 4 stamped after 5, or counting more than 5, cannot be.
      const rs = chain(f, 'n', [[0, 100], [MIN, 110], [2 * MIN, 120], [3 * MIN, 130], [4 * MIN, 140]]);
      expect((await commit([rs[0]!, rs[1]!, rs[2]!]))?.status).toBe('accepted');
      expect((await commit([rs[4]!]))?.status).toBe('accepted');
      const late = { ...rs[3]!, ts: new Date(T0 + 5 * MIN).toISOString() };
      const more = { ...rs[3]!, importWh: 150 };
      // Their hashes differ from what seq 5 links to: both the link and the span rule refuse them.
      expect(rejected(await commit([late]))).toMatchObject({ reason: 'broken_chain' });
      expect(rejected(await commit([more]))).toMatchObject({ reason: 'broken_chain' });
      // Across a wider gap there is no link to check: the span rules do it. Stored 1 and 5 of p.
      const ps = chain(f, 'p', [[0, 100], [10 * MIN, 200], [20 * MIN, 300], [30 * MIN, 400], [40 * MIN, 500]]);
      await commit([ps[0]!]);
      await commit([ps[4]!]);
      expect(rejected(await commit([{ ...ps[2]!, ts: new Date(T0 + 45 * MIN).toISOString() }]))).toMatchObject({
        reason: 'time_regression',
        detail: expect.stringMatching(/seq 3 → 5 \(across 1 missing\)/) as string,
      });
      expect(rejected(await commit([{ ...ps[2]!, importWh: 600 }]))).toMatchObject({ reason: 'counter_regression' });
      expect(rejected(await commit([{ ...ps[2]!, importWh: 50 }]))).toMatchObject({ reason: 'counter_regression' });
      expect((await commit([ps[2]!]))?.status).toBe('accepted');
      expect((await ledger.readings('p')).map((r) => r.seq)).toEqual([1, 3, 5]);
    });

    it('refuses energy across a gap that the rated power cannot deliver in its span', async () => {
      const rs = chain(f, 'q', [[0, 100], [20 * 1000, 110], [40 * 1000, 120], [60 * 1000, 5100]]);
      await commit([rs[0]!]);
      // 5000 Wh in 60 s is 300 kW from a 10 kW meter.
      expect(rejected(await commit([rs[3]!]))).toMatchObject({ reason: 'exceeds_rated_power', detail: expect.stringMatching(/across 2 missing/) as string });
    });

    it('refuses a span longer than the backfill window and a 1970 timestamp, promptly and without a stack overflow', async () => {
      const rs = chain(f, 'm', [[0, 100], [DAY, 200], [36 * DAY, 300]]);
      await commit([rs[0]!]);
      expect(rejected(await commit([rs[2]!]))).toMatchObject({ reason: 'span_too_long', detail: expect.stringMatching(/36 days/) as string });
      // A reading stamped 1970 after one of today (a Pi without a battery clock, rebooted).
      const n1 = f.nextReading('n', { importWh: 100 }, Date.now());
      f.advance(n1);
      const n2 = f.nextReading('n', { importWh: 101 }, 0);
      await commit([n1]);
      expect(rejected(await commit([n2]))).toMatchObject({ reason: 'time_regression' });
      // And a first reading stamped 1970, followed by one of today.
      const p1 = f.nextReading('p', { importWh: 100 }, 0);
      f.advance(p1);
      const p2 = f.nextReading('p', { importWh: 101 }, Date.now());
      await commit([p1]);
      const t = Date.now();
      expect(rejected(await commit([p2]))).toMatchObject({ reason: 'span_too_long' });
      expect(Date.now() - t).toBeLessThan(5_000);
    });

    it('splits a 30-day gap fill over its 2,880 intervals exactly, without recursion', async () => {
      const rs = chain(f, 'm', [[0, 1_000], [DAY, 2_000], [30 * DAY, 3_000_000]]);
      await commit([rs[0]!]);
      expect((await commit([rs[2]!]))?.status).toBe('accepted');
      expect((await commit([rs[1]!]))?.status).toBe('accepted');
      const rows = await ledger.intervalEnergy('m', 0, Number.MAX_SAFE_INTEGER);
      expect(rows.length).toBe(30 * 96);
      expect(sum(rows, 'importWh')).toBe(3_000_000 - 1_000);
      expect(rows).toEqual(exactIntervals(rs));
    });

    it('books the energy across a gap as estimated after the grace period; fills replace it exactly', async () => {
      const rs = chain(f, 'm', [[0, 1000], [10 * MIN, 1100], [20 * MIN, 1200], [30 * MIN, 1300], [40 * MIN, 1400]]);
      const opened0 = 1_000_000;
      await commit([rs[0]!], opened0);
      await commit([rs[4]!], opened0);
      expect(ranges(await ledger.gaps('m'))).toEqual([{ fromSeq: 2, toSeq: 4, estimated: false }]);
      expect(await ledger.intervalEnergy('m', 0, Number.MAX_SAFE_INTEGER)).toEqual([]);

      const estimate = (nowMs: number) => estimateDueGaps(ledger.db, ledger.engine, { nowMs, graceMs: GRACE, maxSpanMs: 35 * DAY, limit: 10 });
      expect(await estimate(opened0 + GRACE - 1)).toEqual({ estimated: 0, unestimable: 0 });
      expect(await estimate(opened0 + GRACE)).toEqual({ estimated: 1, unestimable: 0 });
      expect(await estimate(opened0 + GRACE + 1)).toEqual({ estimated: 0, unestimable: 0 });

      let rows = await ledger.intervalEnergy('m', 0, Number.MAX_SAFE_INTEGER);
      expect(sum(rows, 'importWh')).toBe(400);
      expect(sum(rows, 'estImportWh')).toBe(400);
      expect(rows.map((r) => r.startMs)).toEqual(exactIntervals(rs).map((r) => r.startMs));
      expect(ranges(await ledger.gaps('m'))).toEqual([{ fromSeq: 2, toSeq: 4, estimated: true }]);
      const market = await ledger.marketIntervals(TEST_MARKET, 0, Number.MAX_SAFE_INTEGER);
      expect(market.reduce((n, r) => n + r.estDemandWh, 0)).toBe(400);
      expect(market.reduce((n, r) => n + r.demandWh, 0)).toBe(400);

      // A fill in the middle: the estimate goes, both halves are estimated again at once.
      expect((await commit([rs[2]!], opened0 + 2 * GRACE))?.status).toBe('accepted');
      expect(ranges(await ledger.gaps('m'))).toEqual([
        { fromSeq: 2, toSeq: 2, estimated: true },
        { fromSeq: 4, toSeq: 4, estimated: true },
      ]);
      rows = await ledger.intervalEnergy('m', 0, Number.MAX_SAFE_INTEGER);
      expect([sum(rows, 'importWh'), sum(rows, 'estImportWh')]).toEqual([400, 400]);

      // The last fills, in one batch: all exact, nothing estimated left, as if in order.
      const outcomes = await ledger.commitEnvelopes([verified(f.sign([rs[1]!])), verified(f.sign([rs[3]!]))]);
      expect(outcomes.map((o) => o.status)).toEqual(['accepted', 'accepted']);
      expect(await ledger.gaps('m')).toEqual([]);
      expect(await ledger.intervalEnergy('m', 0, Number.MAX_SAFE_INTEGER)).toEqual(exactIntervals(rs));
      expect((await ledger.marketIntervals(TEST_MARKET, 0, Number.MAX_SAFE_INTEGER)).every((r) => r.estDemandWh === 0)).toBe(true);
    });

    it('marks a gap it cannot estimate and books nothing for it', async () => {
      const rs = chain(f, 'n', [[0, 1000], [10 * MIN, 1100], [20 * MIN, 1200]]);
      await commit([rs[0]!], 0);
      await commit([rs[2]!], 0);
      // A window shorter than the span (say, lowered since): not estimable.
      expect(await estimateDueGaps(ledger.db, ledger.engine, { nowMs: GRACE, graceMs: GRACE, maxSpanMs: MIN, limit: 10 })).toEqual({ estimated: 0, unestimable: 1 });
      expect(ranges(await ledger.gaps('n'))).toEqual([{ fromSeq: 2, toSeq: 2, estimated: true }]);
      expect(await ledger.intervalEnergy('n', 0, Number.MAX_SAFE_INTEGER)).toEqual([]);
      await commit([rs[1]!]);
      expect(await ledger.intervalEnergy('n', 0, Number.MAX_SAFE_INTEGER)).toEqual(exactIntervals(rs));
    });
  });
});

// SQLite has one writer per file by design (ledger/writer.ts); PostgreSQL workers share one ledger.
describe.skipIf(skipPostgres)('postgres ledger: two workers estimating gaps', () => {
  let opened: OpenedLedger;
  let ledger: Ledger;
  let f: EnvelopeFactory;

  beforeEach(async () => {
    opened = await engines.find((e) => e.name === 'postgres')!.open();
    ledger = opened.ledger;
    f = new EnvelopeFactory('gw-gaps');
    await enrollTestGateway(ledger, 'gw-gaps', f.publicKeyPem, [{ id: 'p', model: 'eastron-sdm120', role: 'consumption', ratedPowerW: 10_000 }]);
  });
  afterEach(async () => opened.cleanup());

  const commit = async (rs: Reading[], nowMs: number) => (await ledger.commitEnvelopes([verified(f.sign(rs))], { nowMs }))[0];

  it('estimates each gap once when two workers run the estimate at the same moment', async () => {
    const rs = chain(f, 'p', [[0, 1000], [10 * MIN, 1100], [20 * MIN, 1200], [30 * MIN, 1300]]);
    await commit([rs[0]!], 0);
    await commit([rs[2]!], 0);
    await commit([rs[3]!], 0);
    const other = await opened.reopen();
    const opts = { nowMs: GRACE, graceMs: GRACE, maxSpanMs: 35 * DAY, limit: 10 };
    const runs = await Promise.all([estimateDueGaps(ledger.db, ledger.engine, opts), estimateDueGaps(other.db, other.engine, opts)]);
    expect(runs.reduce((n, r) => n + r.estimated, 0)).toBe(1);
    const rows = await ledger.intervalEnergy('p', 0, Number.MAX_SAFE_INTEGER);
    expect([sum(rows, 'importWh'), sum(rows, 'estImportWh')]).toEqual([300, 200]);
  });
});
