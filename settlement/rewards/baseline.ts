/**
 * Conservation baselines, free of storage. A consumption meter's baseline for an hour of a day
 * is the average import of the same local hour over the last `days` comparable days before it:
 * weekdays are compared with weekdays, weekends and the market's public holidays with each other
 * (a "10 of 10" baseline). Exclusion rule: a day whose import at that hour is missing or partly
 * estimated across a gap is skipped and the search goes one day further back, at most
 * LOOKBACK_DAYS; with fewer than `days` usable days there is no baseline, so no reward.
 * Saved energy = baseline − actual import, when positive and the actual hour is exact.
 */
export const LOOKBACK_DAYS = 45;

export type DayKind = 'weekday' | 'offday';

/** A local date, YYYY-MM-DD. */
export type LocalDate = string;

export interface HourUsage {
  importWh: number;
  /** Part of the hour's import is estimated across a gap. */
  estimated: boolean;
}

/** Usage by local date and hour (0–23). */
export type UsageByDay = ReadonlyMap<LocalDate, ReadonlyMap<number, HourUsage>>;

export function dayKind(date: LocalDate, holidays: ReadonlySet<string>): DayKind {
  const dow = new Date(`${date}T00:00:00Z`).getUTCDay();
  return dow === 0 || dow === 6 || holidays.has(date) ? 'offday' : 'weekday';
}

export function previousDate(date: LocalDate, back = 1): LocalDate {
  return new Date(Date.parse(`${date}T00:00:00Z`) - back * 86_400_000).toISOString().slice(0, 10);
}

/** The baseline of `hour` on `date`, integer Wh (rounded down), or null without enough history. */
export function baseline(date: LocalDate, hour: number, usage: UsageByDay, holidays: ReadonlySet<string>, days: number): number | null {
  const kind = dayKind(date, holidays);
  const values: number[] = [];
  for (let back = 1; back <= LOOKBACK_DAYS && values.length < days; back++) {
    const d = previousDate(date, back);
    if (dayKind(d, holidays) !== kind) continue;
    const h = usage.get(d)?.get(hour);
    if (!h || h.estimated) continue;
    values.push(h.importWh);
  }
  if (values.length < days) return null;
  return Math.floor(values.reduce((a, b) => a + b, 0) / days);
}

export interface HourSaving {
  hour: number;
  baselineWh: number;
  actualWh: number;
  savedWh: number;
}

/** Per hour of `date` with an exact actual and a baseline: what was saved (0 when more was used). */
export function savingsOf(date: LocalDate, usage: UsageByDay, holidays: ReadonlySet<string>, days: number): HourSaving[] {
  const out: HourSaving[] = [];
  const today = usage.get(date);
  if (!today) return out;
  for (let hour = 0; hour < 24; hour++) {
    const actual = today.get(hour);
    if (!actual || actual.estimated) continue;
    const b = baseline(date, hour, usage, holidays, days);
    if (b === null) continue;
    out.push({ hour, baselineWh: b, actualWh: actual.importWh, savedWh: Math.max(0, b - actual.importWh) });
  }
  return out;
}
