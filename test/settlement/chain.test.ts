import { describe, expect, it } from 'vitest';
import { GENESIS_PREV } from '../../protocol/index.ts';
import { decideReading } from '../../settlement/chain/rules.ts';

const h = (c: string) => c.repeat(64);
const base = { seq: 5, prev: h('a'), hash: h('b'), tsMs: 3_600_000, importWh: 1000, exportWh: 50 };
const below = { seq: 4, hash: h('a'), prev: h('9'), tsMs: 0, importWh: 0, exportWh: 50 };
const above = { seq: 6, hash: h('c'), prev: h('b'), tsMs: 7_200_000, importWh: 1500, exportWh: 50 };
const decide = (r = base, n = {}, limits = {}) => decideReading('m', r, n, limits);

describe('decideReading', () => {
  it('accepts a reading that links both ways with plausible energy', () => {
    expect(decide(base, { below, above }, { ratedPowerW: 1000 })).toEqual({ kind: 'new' });
  });

  it('treats the same content as a duplicate and other content as a seq regression', () => {
    expect(decide(base, { same: { hash: h('b') } }).kind).toBe('duplicate');
    expect(decide(base, { same: { hash: h('d') } })).toMatchObject({ kind: 'reject', reason: 'seq_regression' });
  });

  it('checks the genesis rule and both links', () => {
    expect(decide({ ...base, seq: 1 })).toMatchObject({ reason: 'broken_chain' });
    expect(decide({ ...base, prev: GENESIS_PREV })).toMatchObject({ reason: 'seq_regression' });
    expect(decide(base, { below: { ...below, hash: h('e') } })).toMatchObject({ reason: 'broken_chain' });
    expect(decide(base, { above: { ...above, prev: h('e') } })).toMatchObject({ reason: 'broken_chain' });
  });

  it('refuses counters that go backwards, on either side', () => {
    expect(decide(base, { below: { ...below, importWh: 1001 } })).toMatchObject({ reason: 'counter_regression' });
    expect(decide(base, { above: { ...above, exportWh: 49 } })).toMatchObject({ reason: 'counter_regression' });
  });

  it('refuses time that does not advance', () => {
    expect(decide(base, { below: { ...below, tsMs: 3_600_000 } })).toMatchObject({ reason: 'time_regression' });
  });

  it('applies the span rules across missing seqs too, where no hash link can be checked', () => {
    const far = { ...below, seq: 2, hash: h('f') };
    expect(decide(base, { below: far }).kind).toBe('new');
    expect(decide(base, { below: { ...far, tsMs: 3_600_001 } })).toMatchObject({ reason: 'time_regression', detail: 'meter m: seq 2 → 5 (across 2 missing): timestamp does not advance (1970-01-01T01:00:00.001Z → 1970-01-01T01:00:00.000Z)' });
    expect(decide(base, { below: { ...far, importWh: 1001 } })).toMatchObject({ reason: 'counter_regression' });
    const farAbove = { ...above, seq: 9, prev: h('0') };
    expect(decide(base, { above: { ...farAbove, tsMs: 3_599_999 } })).toMatchObject({ reason: 'time_regression' });
    expect(decide(base, { below: far }, { ratedPowerW: 800 })).toMatchObject({ reason: 'exceeds_rated_power' });
  });

  it('refuses a span longer than the backfill window', () => {
    expect(decide(base, { below }, { maxSpanMs: 3_600_000 }).kind).toBe('new');
    expect(decide(base, { below }, { maxSpanMs: 3_599_999 })).toMatchObject({ reason: 'span_too_long' });
  });

  it('refuses energy the rated power cannot deliver, with tolerance', () => {
    // 1000 Wh in one hour at 1000 W: fine; at 800 W (×1.1 + 16 Wh = 896 Wh): refused.
    expect(decide(base, { below }, { ratedPowerW: 1000 }).kind).toBe('new');
    const d = decide(base, { below }, { ratedPowerW: 800 });
    expect(d).toMatchObject({ kind: 'reject', reason: 'exceeds_rated_power' });
    expect(d.kind === 'reject' && d.detail).toMatch(/1000 Wh in 3600 s exceeds what 800 W/);
    // Without a rated power (unregistered meter) only the other rules apply.
    expect(decide(base, { below }).kind).toBe('new');
  });
});
