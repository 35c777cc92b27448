/**
 * Staking rules, free of storage: voting power is the staked amount times a multiplier that
 * grows with the lock, as the reference names the tiers. Multipliers are quarters, so voting
 * power is exact in bigint base units (rounded down when a quarter of the amount is not whole).
 */
export const MAX_LOCK_DAYS = 4 * 365 + 1; // 4 years, a leap day included

/** Lock ≤ 30 days 1.0, ≤ 90 1.25, ≤ 180 1.5, ≤ 365 2.0, longer 2.5 — in quarters. */
const TIERS: ReadonlyArray<{ maxDays: number; quarters: bigint }> = [
  { maxDays: 30, quarters: 4n },
  { maxDays: 90, quarters: 5n },
  { maxDays: 180, quarters: 6n },
  { maxDays: 365, quarters: 8n },
  { maxDays: MAX_LOCK_DAYS, quarters: 10n },
];

export function multiplierQuarters(lockDays: number): bigint {
  if (!Number.isInteger(lockDays) || lockDays < 0 || lockDays > MAX_LOCK_DAYS) {
    throw new RangeError(`lock must be a whole number of days from 0 to ${MAX_LOCK_DAYS} (4 years), got ${lockDays}`);
  }
  return TIERS.find((t) => lockDays <= t.maxDays)!.quarters;
}

export function votingPower(amount: bigint, lockDays: number): bigint {
  return (amount * multiplierQuarters(lockDays)) / 4n;
}

/** The multiplier as text for logs and the API: "1.25". */
export function multiplierText(lockDays: number): string {
  const q = Number(multiplierQuarters(lockDays));
  return (q / 4).toFixed(2);
}
