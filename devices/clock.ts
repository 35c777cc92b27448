// Simulated time that can run faster than real time, so a day of metering fits in a test.
import { performance } from 'node:perf_hooks';

export interface SimClock {
  /** Simulated ms epoch. */
  now(): number;
  readonly speed: number;
}

export interface SimClockOptions {
  /** Simulated seconds per real second; 1 = real time. */
  speed: number;
  /** Simulated ms epoch at creation; default Date.now(). */
  start?: number;
}

export function createSimClock({ speed, start = Date.now() }: SimClockOptions): SimClock {
  if (!Number.isFinite(speed) || speed <= 0) {
    throw new RangeError(`clock speed must be a positive number, got ${speed}`);
  }
  // Monotonic source: wall-clock adjustments (NTP) must not make simulated time jump back.
  const realStart = performance.now();
  return {
    speed,
    now: () => start + (performance.now() - realStart) * speed,
  };
}
