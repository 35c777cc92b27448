/** `[recs]`: how hours accumulate into certificates. */
export interface RecRules {
  /** A certificate certifies at least this many Wh, unless its period reached maxPeriodMs. */
  minVolumeWh: number;
  /** The longest period one certificate accumulates (whole hours). */
  maxPeriodMs: number;
}

export const DEFAULT_REC_RULES: RecRules = { minVolumeWh: 1, maxPeriodMs: 24 * 3_600_000 };

/**
 * Which uncertified hours (in hour order, each with Wh still to certify) go into one
 * certificate each: consecutive hours until their Wh reach the minimum, or until the next would
 * stretch the period past the maximum. A last group below the minimum waits for more hours
 * unless its period can no longer grow (the hours before `seenToMs` are all there are).
 */
export function groupHours(hours: ReadonlyArray<{ hourStartMs: number; wh: number }>, rules: RecRules, seenToMs: number): number[][] {
  const groups: number[][] = [];
  let i = 0;
  while (i < hours.length) {
    const start = hours[i]!.hourStartMs;
    const group: number[] = [];
    let wh = 0;
    while (i < hours.length && hours[i]!.hourStartMs < start + rules.maxPeriodMs && wh < rules.minVolumeWh) {
      group.push(hours[i]!.hourStartMs);
      wh += hours[i]!.wh;
      i++;
    }
    if (wh < rules.minVolumeWh && seenToMs < start + rules.maxPeriodMs) break;
    groups.push(group);
  }
  return groups;
}
