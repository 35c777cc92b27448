import { performance } from 'node:perf_hooks';
import type { Logger } from 'pino';
import type { DecodedReading } from '../devices/decoder.ts';
import type { MeterId } from '../protocol/index.ts';
import type { Sample } from './outbox.ts';

/**
 * No reading can be older than the software that signs it. A Raspberry Pi has no battery-backed
 * clock: until NTP answers it runs from 1970 or from its image's build time, and a reading
 * stamped then is energy at the wrong price in the wrong interval. RAISE WITH EACH RELEASE
 * (to about the release date).
 */
export const RELEASE_FLOOR_MS = Date.UTC(2026, 10, 1); // 2026-11-01T00:00:00.000Z

/** Samples kept in memory while the clock is implausible; beyond this the oldest are dropped. */
export const MAX_HELD_SAMPLES = 10_000;

/** Why the wall clock cannot be trusted to stamp a reading. */
export type ClockProblem = 'before_release_floor' | 'behind_last_reading';

export interface ClockState {
  ok: boolean;
  problem: ClockProblem | null;
  /** The wall clock when last looked at, ms epoch. */
  clockMs: number;
  /** The newest timestamp this gateway has put on a reading, ms epoch. */
  newestReadingMs: number | null;
  /** Samples read while the clock was implausible, waiting for it to be sane. */
  held: number;
  /** Samples dropped since start: cap overflow, or a read time that was still implausible. */
  dropped: number;
}

export interface ClockGuardOptions {
  log: Logger;
  /** Wall clock, ms epoch (Date.now). */
  wallNow?: () => number;
  /** Monotonic clock, ms (performance.now): it never jumps when the wall clock is set. */
  monoNow?: () => number;
  floorMs?: number;
  maxHeld?: number;
  /** Each meter's newest sealed reading time (the outbox's meter heads). */
  lastReadingMs?: Iterable<readonly [string, number]>;
}

interface Held {
  meter: MeterId;
  values: DecodedReading;
  monoMs: number;
}

/** ISO-8601 for any clock value, however wrong (Date throws beyond ±8.64e15 ms). */
export const iso = (ms: number): string => (Number.isFinite(ms) && Math.abs(ms) <= 8.64e15 ? new Date(ms).toISOString() : String(ms));

/**
 * Stamps samples with the wall clock only while that clock is plausible: not before the release
 * floor, not behind the newest reading already stamped. Otherwise it holds them with their
 * monotonic read time and, once the clock is sane, stamps each with the time it was really read
 * (wallNow − (monoNow − monoAtRead)), so an NTP correction never back-dates or future-dates energy.
 */
export class ClockGuard {
  private readonly wall: () => number;
  private readonly mono: () => number;
  private readonly floorMs: number;
  private readonly maxHeld: number;
  private readonly log: Logger;
  private readonly lastMs = new Map<string, number>();
  private newestMs = -Infinity;
  private held: Held[] = [];
  private problem: ClockProblem | null = null;
  private episodeStartMono = 0;
  private capLogged = false;
  private lastClockMs = 0;
  dropped = 0;

  constructor(opts: ClockGuardOptions) {
    this.log = opts.log;
    this.wall = opts.wallNow ?? Date.now;
    this.mono = opts.monoNow ?? (() => performance.now());
    this.floorMs = opts.floorMs ?? RELEASE_FLOOR_MS;
    this.maxHeld = opts.maxHeld ?? MAX_HELD_SAMPLES;
    for (const [meter, ms] of opts.lastReadingMs ?? []) this.noteStamped(meter, ms);
  }

  /**
   * A sample just read from `meter`: returns the samples now ready to seal, oldest first (any
   * held ones released by a sane clock come before it), or nothing while the clock is implausible.
   */
  stamp(meter: MeterId, values: DecodedReading): Sample[] {
    const wall = this.wall();
    const mono = this.mono();
    const ready = this.check(wall, mono);
    if (this.problem) {
      this.hold({ meter, values, monoMs: mono });
      return ready;
    }
    // Same millisecond as this meter's last reading: settlement needs time to advance.
    if (wall <= (this.lastMs.get(meter) ?? -Infinity)) {
      this.dropped++;
      this.log.warn({ meter, clock: iso(wall), lastReading: iso(this.lastMs.get(meter)!) }, 'dropped a reading: its time does not advance past the meter\'s last one');
      return ready;
    }
    this.noteStamped(meter, wall);
    ready.push({ meter, tsMs: wall, values });
    return ready;
  }

  /** Looks at the clock without a new sample (every poll), releasing held samples once it is sane. */
  tick(): Sample[] {
    return this.check(this.wall(), this.mono());
  }

  state(): ClockState {
    return {
      ok: this.problem === null,
      problem: this.problem,
      clockMs: this.lastClockMs,
      newestReadingMs: Number.isFinite(this.newestMs) ? this.newestMs : null,
      held: this.held.length,
      dropped: this.dropped,
    };
  }

  private check(wall: number, mono: number): Sample[] {
    this.lastClockMs = wall;
    const problem: ClockProblem | null = wall < this.floorMs ? 'before_release_floor' : wall < this.newestMs ? 'behind_last_reading' : null;
    if (problem) {
      if (!this.problem) {
        this.episodeStartMono = mono;
        this.capLogged = false;
        this.log.warn(
          {
            clock: iso(wall),
            reason: problem,
            releaseFloor: iso(this.floorMs),
            newestReading: Number.isFinite(this.newestMs) ? iso(this.newestMs) : null,
          },
          'clock implausible: not sealing readings; holding them until the clock is set (check NTP)',
        );
      }
      this.problem = problem;
      return [];
    }
    if (!this.problem) return [];
    this.problem = null;
    return this.release(wall, mono);
  }

  private hold(h: Held): void {
    this.held.push(h);
    if (this.held.length <= this.maxHeld) return;
    this.held.shift();
    this.dropped++;
    if (!this.capLogged) {
      this.capLogged = true;
      this.log.warn({ held: this.held.length, maxHeld: this.maxHeld }, 'clock still implausible: held readings at their cap, dropping the oldest');
    }
  }

  private release(wall: number, mono: number): Sample[] {
    const held = this.held;
    this.held = [];
    const out: Sample[] = [];
    let dropped = 0;
    for (const h of held) {
      const readAt = Math.round(wall - (mono - h.monoMs));
      if (readAt < this.floorMs || readAt <= (this.lastMs.get(h.meter) ?? -Infinity)) {
        dropped++;
        continue;
      }
      this.noteStamped(h.meter, readAt);
      out.push({ meter: h.meter, tsMs: readAt, values: h.values });
    }
    this.dropped += dropped;
    const fields = { clock: iso(wall), released: out.length, dropped, heldForS: Math.round((mono - this.episodeStartMono) / 1000) };
    if (dropped > 0) this.log.warn(fields, 'clock plausible again; dropped held readings whose read time was still implausible');
    else this.log.info(fields, 'clock plausible again; held readings sealed with the time they were read');
    return out;
  }

  private noteStamped(meter: string, ms: number): void {
    if (ms > (this.lastMs.get(meter) ?? -Infinity)) this.lastMs.set(meter, ms);
    if (ms > this.newestMs) this.newestMs = ms;
  }
}
