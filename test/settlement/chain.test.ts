import { describe, expect, it } from 'vitest';
import { GENESIS_PREV } from '../../protocol/index.ts';
import { decideReading } from '../../settlement/ingest/chain.ts';

const h = (c: string) => c.repeat(64);
const base = { meter: 'm', seq: 5, prev: h('a'), hash: h('b'), tsMs: 3_600_000, importWh: 1000, exportWh: 50 };
const before = { hash: h('a'), prev: h('9'), tsMs: 0, importWh: 0, exportWh: 50 };
const after = { hash: h('c'), prev: h('b'), tsMs: 7_200_000, importWh: 1500, exportWh: 50 };

describe('decideReading', () => {
  it('accepts a reading that links both ways with plausible energy', () => {
    expect(decideReading(base, { before, after }, { ratedPowerW: 1000 })).toEqual({ kind: 'new' });
  });

  it('treats the same content as a duplicate and other content as a seq regression', () => {
    expect(decideReading(base, { same: { hash: h('b') } }).kind).toBe('duplicate');
    expect(decideReading(base, { same: { hash: h('d') } })).toMatchObject({ kind: 'reject', reason: 'seq_regression' });
  });

  it('checks the genesis rule and both links', () => {
    expect(decideReading({ ...base, seq: 1 }, {})).toMatchObject({ reason: 'broken_chain' });
    expect(decideReading({ ...base, prev: GENESIS_PREV }, {})).toMatchObject({ reason: 'seq_regression' });
    expect(decideReading(base, { before: { ...before, hash: h('e') } })).toMatchObject({ reason: 'broken_chain' });
    expect(decideReading(base, { after: { ...after, prev: h('e') } })).toMatchObject({ reason: 'broken_chain' });
  });

  it('refuses counters that go backwards, on either side', () => {
    expect(decideReading(base, { before: { ...before, importWh: 1001 } })).toMatchObject({ reason: 'counter_regression' });
    expect(decideReading(base, { after: { ...after, exportWh: 49 } })).toMatchObject({ reason: 'counter_regression' });
  });

  it('refuses time that does not advance', () => {
    expect(decideReading(base, { before: { ...before, tsMs: 3_600_000 } })).toMatchObject({ reason: 'time_regression' });
  });

  it('refuses energy the rated power cannot deliver, with tolerance', () => {
    // 1000 Wh in one hour at 1000 W: fine; at 800 W (×1.1 + 16 Wh = 896 Wh): refused.
    expect(decideReading(base, { before }, { ratedPowerW: 1000 }).kind).toBe('new');
    const d = decideReading(base, { before }, { ratedPowerW: 800 });
    expect(d).toMatchObject({ kind: 'reject', reason: 'exceeds_rated_power' });
    expect(d.kind === 'reject' && d.detail).toMatch(/1000 Wh in 3600 s exceeds what 800 W/);
    // Without a rated power (unregistered meter) only the other rules apply.
    expect(decideReading(base, { before }).kind).toBe('new');
  });
});
