import { describe, expect, it } from 'vitest';
import { ClockGuard, MAX_HELD_SAMPLES, RELEASE_FLOOR_MS } from '../../gateway/clock.ts';
import { meterId } from '../../protocol/index.ts';
import { capturedLog } from './captured-log.ts';

const M1 = meterId('m1');
const M2 = meterId('m2');
const values = (importWh: number) => ({ importWh, exportWh: 0, powerW: 10 });

/** A guard with a wall clock and a monotonic clock the test sets by hand. */
function setup(opts: { wall: number; lastReadingMs?: Array<[string, number]>; maxHeld?: number }) {
  const clocks = { wall: opts.wall, mono: 1_000 };
  const { log, lines, warnings } = capturedLog();
  const guard = new ClockGuard({
    log,
    wallNow: () => clocks.wall,
    monoNow: () => clocks.mono,
    lastReadingMs: opts.lastReadingMs,
    maxHeld: opts.maxHeld,
  });
  /** Time passes: both clocks move on together. */
  const pass = (ms: number) => {
    clocks.wall += ms;
    clocks.mono += ms;
  };
  return { clocks, guard, lines, warnings, pass };
}

describe('gateway clock sanity', () => {
  it('has a release floor and a cap on held readings', () => {
    expect(new Date(RELEASE_FLOOR_MS).toISOString()).toBe('2026-11-01T00:00:00.000Z');
    expect(MAX_HELD_SAMPLES).toBe(10_000);
  });

  it('holds readings while the clock is before the release floor, then seals them with the time they were read', () => {
    // A Pi without RTC boots in 1970.
    const { clocks, guard, warnings, pass } = setup({ wall: 60_000 });
    expect(guard.stamp(M1, values(1))).toEqual([]);
    pass(5_000);
    expect(guard.stamp(M1, values(2))).toEqual([]);
    expect(guard.state()).toMatchObject({ ok: false, problem: 'before_release_floor', held: 2, dropped: 0, clockMs: 65_000 });
    // One warning per episode, with the clock value and the reason.
    const warned = warnings(/clock implausible/);
    expect(warned).toHaveLength(1);
    expect(warned[0]).toMatchObject({ clock: '1970-01-01T00:01:00.000Z', reason: 'before_release_floor', releaseFloor: '2026-11-01T00:00:00.000Z' });

    // 3 s later NTP sets the clock; the monotonic clock went on undisturbed.
    clocks.mono += 3_000;
    clocks.wall = Date.parse('2026-11-30T12:00:00.000Z');
    const released = guard.tick();
    expect(released.map((s) => [s.meter, new Date(s.tsMs).toISOString(), s.values.importWh])).toEqual([
      ['m1', '2026-11-30T11:59:52.000Z', 1],
      ['m1', '2026-11-30T11:59:57.000Z', 2],
    ]);
    expect(guard.state()).toMatchObject({ ok: true, problem: null, held: 0, dropped: 0, newestReadingMs: Date.parse('2026-11-30T11:59:57.000Z') });
    pass(5_000);
    expect(guard.stamp(M1, values(3)).map((s) => s.tsMs)).toEqual([Date.parse('2026-11-30T12:00:05.000Z')]);
    expect(warnings(/clock implausible/)).toHaveLength(1);
  });

  it('holds readings while the clock is behind the newest sealed reading; drops those whose read time is still not after it', () => {
    const last = Date.parse('2026-11-30T12:00:00.000Z');
    const { clocks, guard, warnings, lines, pass } = setup({ wall: last - 3_600_000, lastReadingMs: [['m1', last]] });
    expect(guard.stamp(M1, values(1))).toEqual([]); // read at "last + 0.5 s" by the real clock, say
    expect(guard.state()).toMatchObject({ ok: false, problem: 'behind_last_reading', held: 1, newestReadingMs: last });
    expect(warnings(/clock implausible/)[0]).toMatchObject({ reason: 'behind_last_reading', newestReading: '2026-11-30T12:00:00.000Z' });
    pass(10_000);
    expect(guard.stamp(M2, values(2))).toEqual([]);

    // The clock comes back only 5 s past the last reading: the first sample would be stamped
    // 5 s before it (read 10 s ago) and is dropped; the second was read just now.
    clocks.mono += 1;
    clocks.wall = last + 5_000;
    const released = guard.tick();
    expect(released.map((s) => [s.meter, s.tsMs])).toEqual([['m2', last + 4_999]]);
    expect(guard.state()).toMatchObject({ ok: true, held: 0, dropped: 1 });
    expect(lines.find((l) => /dropped held readings/.test(l.msg))).toMatchObject({ released: 1, dropped: 1 });
  });

  it('caps the held readings, dropping the oldest and counting them', () => {
    const { clocks, guard, warnings, pass } = setup({ wall: 1_000, maxHeld: 3 });
    for (let i = 1; i <= 5; i++) {
      guard.stamp(M1, values(i));
      pass(1_000);
    }
    expect(guard.state()).toMatchObject({ held: 3, dropped: 2 });
    expect(warnings(/at their cap/)).toHaveLength(1);
    clocks.wall = RELEASE_FLOOR_MS + 86_400_000;
    expect(guard.tick().map((s) => s.values.importWh)).toEqual([3, 4, 5]);
    expect(guard.dropped).toBe(2);
  });

  it('warns again for a new episode, and never stamps a meter twice in one millisecond', () => {
    const start = Date.parse('2026-11-30T12:00:00.000Z');
    const { clocks, guard, warnings } = setup({ wall: start });
    expect(guard.stamp(M1, values(1))).toHaveLength(1);
    expect(guard.stamp(M1, values(2))).toEqual([]); // same ms: time would not advance
    expect(guard.stamp(M2, values(3))).toHaveLength(1); // another meter may share it
    expect(guard.dropped).toBe(1);
    for (const jump of [-60_000, +120_000, -300_000, +600_000]) {
      clocks.wall += jump;
      clocks.mono += 1_000;
      guard.stamp(M1, values(4));
    }
    expect(warnings(/clock implausible/)).toHaveLength(2);
  });
});
