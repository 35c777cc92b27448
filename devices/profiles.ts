// Deterministic power profiles for simulated meters: W as a pure function of simulated time.
// Pure functions of time (no internal state) so a profile gives the same value for the same
// instant however often or in whatever order it is asked, which keeps simulations reproducible.

/** Instantaneous active power in W at a simulated instant (ms epoch). Positive = import. */
export type PowerProfile = (epochMs: number) => number;

export const PROFILE_NAMES = ['household', 'pv', 'prosumer'] as const;
export type ProfileName = (typeof PROFILE_NAMES)[number];

export interface ProfileOptions {
  /** Seed for the noise; same seed, same curve. Default 1. */
  seed?: number;
  /**
   * Size of the installation in W: household = evening peak load (default 2500),
   * pv = peak generation (default 4000), prosumer = rooftop PV peak (default 4000; load stays 2.5 kW).
   */
  ratedW?: number;
  /** IANA zone in which the daily shape is evaluated. Default Asia/Bangkok. */
  timeZone?: string;
}

export const DEFAULT_TIME_ZONE = 'Asia/Bangkok';

export function isProfileName(name: string): name is ProfileName {
  return (PROFILE_NAMES as readonly string[]).includes(name);
}

const hourFormatters = new Map<string, Intl.DateTimeFormat>();

/** Local time of day in hours [0, 24) at `epochMs` in `timeZone`; throws RangeError on an unknown zone. */
export function localHour(epochMs: number, timeZone: string = DEFAULT_TIME_ZONE): number {
  let fmt = hourFormatters.get(timeZone);
  if (fmt === undefined) {
    fmt = new Intl.DateTimeFormat('en-US', { timeZone, hourCycle: 'h23', hour: 'numeric', minute: 'numeric', second: 'numeric' });
    hourFormatters.set(timeZone, fmt);
  }
  let h = 0;
  let m = 0;
  let s = 0;
  for (const part of fmt.formatToParts(epochMs)) {
    if (part.type === 'hour') h = Number(part.value);
    else if (part.type === 'minute') m = Number(part.value);
    else if (part.type === 'second') s = Number(part.value);
  }
  const ms = ((epochMs % 1000) + 1000) % 1000;
  return h + m / 60 + (s + ms / 1000) / 3600;
}

/** Integer hash (splitmix32-style) of (seed, n) → [0, 1). A counter-based PRNG: no state to share. */
export function hashUnit(seed: number, n: number): number {
  let x = (Math.imul(seed | 0, 0x9e3779b1) ^ Math.imul(n | 0, 0x85ebca6b)) >>> 0;
  x = Math.imul(x ^ (x >>> 16), 0x21f0aaad);
  x = Math.imul(x ^ (x >>> 15), 0x735a2d97);
  x ^= x >>> 15;
  return (x >>> 0) / 0x100000000;
}

/** Smooth value noise in [0, 1): random knots every `periodMs`, cosine-interpolated between them. */
export function smoothNoise(seed: number, epochMs: number, periodMs: number): number {
  const t = epochMs / periodMs;
  const k = Math.floor(t);
  const f = t - k;
  const w = (1 - Math.cos(Math.PI * f)) / 2;
  return hashUnit(seed, k) * (1 - w) + hashUnit(seed, k + 1) * w;
}

function bump(hour: number, center: number, width: number): number {
  const d = (hour - center) / width;
  return Math.exp(-0.5 * d * d);
}

const MINUTE = 60_000;

/** Household consumption: ~250 W base, morning and evening peaks; always positive (import). */
export function householdProfile(options: ProfileOptions = {}): PowerProfile {
  const seed = options.seed ?? 1;
  const k = (options.ratedW ?? 2500) / 2500;
  const tz = options.timeZone ?? DEFAULT_TIME_ZONE;
  localHour(0, tz); // fail fast on a bad zone
  return (epochMs) => {
    const h = localHour(epochMs, tz);
    const shape = 250 + 1300 * bump(h, 7, 1) + 2200 * bump(h, 19.5, 1.4) + 350 * bump(h, 12.5, 1.2);
    // Appliances switching: slow wander ±10 % plus a little minute-scale jitter.
    const wander = 1 + 0.2 * (smoothNoise(seed, epochMs, 15 * MINUTE) - 0.5);
    const jitter = 60 * (smoothNoise(seed ^ 0x5bd1e995, epochMs, MINUTE) - 0.5);
    return Math.max(40, (shape * wander + jitter) * k);
  };
}

const SUNRISE_H = 6;
const SUNSET_H = 18.5;

/** Pure generation meter: 0 at night, negative bell curve by day (peak -ratedW), clouds as dips. */
export function pvProfile(options: ProfileOptions = {}): PowerProfile {
  const seed = options.seed ?? 1;
  const ratedW = options.ratedW ?? 4000;
  const tz = options.timeZone ?? DEFAULT_TIME_ZONE;
  localHour(0, tz);
  return (epochMs) => {
    const h = localHour(epochMs, tz);
    if (h <= SUNRISE_H || h >= SUNSET_H) return 0;
    const x = (h - SUNRISE_H) / (SUNSET_H - SUNRISE_H);
    const sun = Math.sin(Math.PI * x) ** 1.5;
    // Passing clouds: a slow field of cloudiness; only its upper part casts shade, up to 70 %.
    const cloudiness = smoothNoise(seed ^ 0x27d4eb2f, epochMs, 7 * MINUTE);
    const shade = Math.max(0, cloudiness - 0.55) / 0.45;
    const w = -ratedW * sun * (1 - 0.7 * shade);
    return w === 0 ? 0 : w;
  };
}

/** Household load plus rooftop PV behind one meter: net W, negative while exporting. */
export function prosumerProfile(options: ProfileOptions = {}): PowerProfile {
  const seed = options.seed ?? 1;
  const load = householdProfile({ seed, timeZone: options.timeZone });
  const pv = pvProfile({ seed: seed + 1, ratedW: options.ratedW ?? 4000, timeZone: options.timeZone });
  return (epochMs) => load(epochMs) + pv(epochMs);
}

export function createProfile(name: ProfileName, options: ProfileOptions = {}): PowerProfile {
  switch (name) {
    case 'household':
      return householdProfile(options);
    case 'pv':
      return pvProfile(options);
    case 'prosumer':
      return prosumerProfile(options);
  }
}
