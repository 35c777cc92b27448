// Deciding one envelope against what the ledger holds, free of I/O and shared by both
// engines: each engine only supplies a view of what is stored and writes the plan.
import { decideReading, type ChainReading } from '../chain/rules.ts';
import { splitIntoIntervals } from '../energy/intervals.ts';
import type { CommitOptions, CommitOutcome, MeterContext, VerifiedEnvelope, VerifiedReading } from './ledger.ts';

/** A reading that will be stored, with its timestamp parsed once and its view as a chain link. */
export interface FreshReading {
  reading: VerifiedReading;
  tsMs: number;
  chain: ChainReading;
}

/** Energy to add to one (meter, interval) row: exact (consecutive readings) and estimated (across a gap). */
export interface EnergyDelta {
  meter: string;
  market: string;
  startMs: number;
  importWh: number;
  exportWh: number;
  estImportWh: number;
  estExportWh: number;
}

/** How estimated energy across a gap was split, kept so that removing it later is exact. */
export interface EstimateSplit {
  market: string;
  intervalMs: number;
  timeZone: string;
}

/**
 * An open gap of a meter: the stored readings `fromSeq` and `toSeq` with the seqs between them
 * missing. `estimate` is set once estimated energy for the span is booked (null split: the span
 * was not estimable, nothing booked).
 */
export interface GapRecord {
  fromSeq: number;
  toSeq: number;
  openedAtMs: number;
  estimate: { atMs: number; split: EstimateSplit | null } | null;
}

export type GapOp = { kind: 'open'; meter: string; gap: GapRecord } | { kind: 'close'; meter: string; fromSeq: number };

export type EnvelopePlan =
  | { status: 'accepted'; fresh: FreshReading[]; duplicates: number; energy: EnergyDelta[]; gaps: GapOp[] }
  | { status: 'duplicate' }
  | { status: 'rejected'; reason: Extract<CommitOutcome, { status: 'rejected' }>['reason']; detail: string };

/** What the ledger (plus whatever the caller already applied in this batch) holds of a meter. */
export interface ChainView {
  at(meter: string, seq: number): ChainReading | undefined;
  /** The nearest stored reading with a lower seq. */
  below(meter: string, seq: number): ChainReading | undefined;
  /** The nearest stored reading with a higher seq. */
  above(meter: string, seq: number): ChainReading | undefined;
  /** The open gap that starts at stored reading `fromSeq`. */
  gap(meter: string, fromSeq: number): GapRecord | undefined;
}

export type PlanOptions = Required<CommitOptions>;

export function chainReadingOf(r: VerifiedReading, tsMs: number): ChainReading {
  return { seq: r.seq, hash: r.hash, prev: r.prev, tsMs, importWh: r.importWh, exportWh: r.exportWh };
}

/**
 * Decides every reading of `env` in order, each seeing the readings before it in the same
 * envelope. The envelope is all-or-nothing: one refused reading refuses it, and an envelope
 * whose readings are all stored already is a duplicate (this is also how a resent envelope is
 * recognised: its id is the hash of the same bytes, so its readings are the same). Nothing is
 * written here; the caller stores `fresh`, applies `gaps` in order and adds `energy`, and must
 * make them visible to `view` before planning the next envelope of the batch.
 *
 * Energy: a reading next to a stored neighbour (seq ± 1) completes an exact pair, split over the
 * intervals of its span. A reading with a neighbour across missing seqs opens a gap instead. A
 * reading that lands inside a gap closes it and opens what is left on either side; if the gap's
 * energy had been estimated, that estimate is removed exactly and the parts still missing are
 * estimated again at once (their grace is over). Each consecutive pair is thus counted exactly
 * once, whatever the arrival order, and estimates never overlap exact energy.
 */
export function planEnvelope(env: VerifiedEnvelope, view: ChainView, opts: PlanOptions): EnvelopePlan {
  const local = new EnvelopeOverlay(view);
  const fresh: FreshReading[] = [];
  const energy: EnergyDelta[] = [];
  const gaps: GapOp[] = [];
  let duplicates = 0;
  for (const r of env.readings) {
    const tsMs = Date.parse(r.ts);
    const candidate = chainReadingOf(r, tsMs);
    const below = local.below(r.meter, r.seq);
    const above = local.above(r.meter, r.seq);
    const d = decideReading(r.meter, candidate, { same: local.at(r.meter, r.seq), below, above }, { ratedPowerW: r.context.ratedPowerW, maxSpanMs: opts.maxSpanMs });
    if (d.kind === 'reject') return { status: 'rejected', reason: d.reason, detail: d.detail };
    if (d.kind === 'duplicate') {
      duplicates++;
      continue;
    }
    fresh.push({ reading: r, tsMs, chain: candidate });
    local.add(r.meter, candidate);

    // The meter's context carries the split's three fields: exact energy is split by it as it is.
    const ctx: EstimateSplit = r.context;
    // The span below → above was a gap (they were neighbours): it closes, its estimate goes.
    let parent: GapRecord | undefined;
    if (below && above) {
      parent = local.gap(r.meter, below.seq);
      if (parent) {
        gaps.push(local.close(r.meter, below.seq));
        if (parent.estimate?.split) addSplit(energy, r.meter, below, above, parent.estimate.split, -1, true);
      }
    }
    const reestimate = parent?.estimate ? opts.nowMs : null;
    const openedAtMs = parent?.openedAtMs ?? opts.nowMs;
    // The spans below → candidate and candidate → above (a loop without arrays: this runs for
    // every committed reading, and the usual one has only the first span, one seq long).
    for (let side = 0; side < 2; side++) {
      const a = side === 0 ? below : candidate;
      const b = side === 0 ? candidate : above;
      if (!a || !b) continue;
      if (b.seq === a.seq + 1) {
        addSplit(energy, r.meter, a, b, ctx, 1, false);
      } else {
        // A gap keeps its own copy of the split: it is stored, and the context is the registry's.
        const split: EstimateSplit = { market: ctx.market, intervalMs: ctx.intervalMs, timeZone: ctx.timeZone };
        const gap: GapRecord = { fromSeq: a.seq, toSeq: b.seq, openedAtMs, estimate: reestimate === null ? null : { atMs: reestimate, split } };
        gaps.push(local.open(r.meter, gap));
        if (gap.estimate) addSplit(energy, r.meter, a, b, split, 1, true);
      }
    }
  }
  if (fresh.length === 0) return { status: 'duplicate' };
  return { status: 'accepted', fresh, duplicates, energy, gaps };
}

/**
 * The energy of the span a → b (counters never go down across it: the chain rules saw to that)
 * per interval, added to `out` with `sign`, as exact or estimated energy. Loops, no spreads or
 * recursion: a span holds at most the backfill window's intervals, but that can be thousands.
 */
export function addSplit(out: EnergyDelta[], meter: string, a: ChainReading, b: ChainReading, split: EstimateSplit, sign: 1 | -1, estimated: boolean): void {
  const parts = splitIntoIntervals(a, b, split.intervalMs, split.timeZone);
  for (let i = 0; i < parts.length; i++) {
    const p = parts[i]!;
    const imp = sign * p.importWh;
    const exp = sign * p.exportWh;
    out.push(
      estimated
        ? { meter, market: split.market, startMs: p.startMs, importWh: 0, exportWh: 0, estImportWh: imp, estExportWh: exp }
        : { meter, market: split.market, startMs: p.startMs, importWh: imp, exportWh: exp, estImportWh: 0, estExportWh: 0 },
    );
  }
}

/** The estimated energy booked for a gap whose grace is over (the estimation job). */
export function estimateGap(meter: string, a: ChainReading, b: ChainReading, ctx: MeterContext): EnergyDelta[] {
  const out: EnergyDelta[] = [];
  addSplit(out, meter, a, b, { market: ctx.market, intervalMs: ctx.intervalMs, timeZone: ctx.timeZone }, 1, true);
  return out;
}

/** What the caller of commitEnvelopes is told about an envelope, once its plan is carried out. */
export function outcomeOf(env: VerifiedEnvelope, plan: EnvelopePlan): CommitOutcome {
  switch (plan.status) {
    case 'accepted':
      return { status: 'accepted', id: env.id, inserted: plan.fresh.length, duplicates: plan.duplicates };
    case 'duplicate':
      return { status: 'duplicate', id: env.id, readings: env.readings.length };
    case 'rejected':
      return { status: 'rejected', id: env.id, reason: plan.reason, detail: plan.detail };
  }
}

const keyOf = (meter: string, seq: number) => `${meter}\n${seq}`;

/** The view plus what the envelope being planned adds (at most 256 readings: a linear scan). */
class EnvelopeOverlay {
  private readonly mine: Array<{ meter: string; r: ChainReading }> = [];
  private readonly gaps = new Map<string, GapRecord | null>();

  constructor(private readonly view: ChainView) {}

  add(meter: string, r: ChainReading): void {
    this.mine.push({ meter, r });
  }

  at(meter: string, seq: number): ChainReading | undefined {
    for (const m of this.mine) if (m.meter === meter && m.r.seq === seq) return m.r;
    return this.view.at(meter, seq);
  }

  below(meter: string, seq: number): ChainReading | undefined {
    let best = this.view.below(meter, seq);
    for (const m of this.mine) if (m.meter === meter && m.r.seq < seq && (!best || m.r.seq > best.seq)) best = m.r;
    return best;
  }

  above(meter: string, seq: number): ChainReading | undefined {
    let best = this.view.above(meter, seq);
    for (const m of this.mine) if (m.meter === meter && m.r.seq > seq && (!best || m.r.seq < best.seq)) best = m.r;
    return best;
  }

  gap(meter: string, fromSeq: number): GapRecord | undefined {
    const k = keyOf(meter, fromSeq);
    if (this.gaps.has(k)) return this.gaps.get(k) ?? undefined;
    return this.view.gap(meter, fromSeq);
  }

  open(meter: string, gap: GapRecord): GapOp {
    this.gaps.set(keyOf(meter, gap.fromSeq), gap);
    return { kind: 'open', meter, gap };
  }

  close(meter: string, fromSeq: number): GapOp {
    this.gaps.set(keyOf(meter, fromSeq), null);
    return { kind: 'close', meter, fromSeq };
  }
}

/**
 * A ChainView over readings and gaps held in memory: what a PostgreSQL batch fetched of its
 * meters' neighbourhoods, plus what earlier envelopes of the batch added (`apply`). Each meter's
 * readings are kept sorted by seq for the nearest-neighbour lookups. Only correct for seqs whose
 * neighbourhood was fetched (see postgres.ts, SELECT_NEIGHBOURS).
 */
export class MemoryChainView implements ChainView {
  private readonly readings = new Map<string, ChainReading[]>();
  private readonly gaps = new Map<string, GapRecord | null>();

  /** Adds a stored reading (idempotent), with the gap that starts at it, if any. */
  put(meter: string, r: ChainReading, gap?: GapRecord): void {
    let list = this.readings.get(meter);
    if (!list) this.readings.set(meter, (list = []));
    const i = lowerBound(list, r.seq);
    if (list[i]?.seq !== r.seq) list.splice(i, 0, r);
    if (gap) this.gaps.set(keyOf(meter, gap.fromSeq), gap);
  }

  /** Makes an accepted envelope's plan visible to the envelopes planned after it. */
  apply(plan: Extract<EnvelopePlan, { status: 'accepted' }>): void {
    for (const f of plan.fresh) this.put(f.reading.meter, f.chain);
    for (const op of plan.gaps) {
      if (op.kind === 'open') this.gaps.set(keyOf(op.meter, op.gap.fromSeq), op.gap);
      else this.gaps.set(keyOf(op.meter, op.fromSeq), null);
    }
  }

  /** The final state of every gap the batch touched: null = closed. */
  touchedGaps(): Array<{ meter: string; fromSeq: number; gap: GapRecord | null }> {
    const out: Array<{ meter: string; fromSeq: number; gap: GapRecord | null }> = [];
    for (const [k, gap] of this.gaps) {
      const nl = k.lastIndexOf('\n');
      out.push({ meter: k.slice(0, nl), fromSeq: Number(k.slice(nl + 1)), gap });
    }
    return out;
  }

  at(meter: string, seq: number): ChainReading | undefined {
    const list = this.readings.get(meter);
    if (!list) return undefined;
    const r = list[lowerBound(list, seq)];
    return r?.seq === seq ? r : undefined;
  }

  below(meter: string, seq: number): ChainReading | undefined {
    const list = this.readings.get(meter);
    return list ? list[lowerBound(list, seq) - 1] : undefined;
  }

  above(meter: string, seq: number): ChainReading | undefined {
    const list = this.readings.get(meter);
    if (!list) return undefined;
    const i = lowerBound(list, seq);
    return list[list[i]?.seq === seq ? i + 1 : i];
  }

  gap(meter: string, fromSeq: number): GapRecord | undefined {
    return this.gaps.get(keyOf(meter, fromSeq)) ?? undefined;
  }
}

/** Index of the first reading with seq ≥ `seq`. */
function lowerBound(list: ChainReading[], seq: number): number {
  let lo = 0;
  let hi = list.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (list[mid]!.seq < seq) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

/**
 * Sums energy deltas per (meter, interval), so that one upsert per row covers a whole batch
 * (PostgreSQL refuses an ON CONFLICT statement that touches a row twice).
 */
export class EnergySums {
  private readonly sums = new Map<string, Map<number, EnergyDelta>>();

  add(deltas: EnergyDelta[]): void {
    for (const e of deltas) {
      let meter = this.sums.get(e.meter);
      if (!meter) this.sums.set(e.meter, (meter = new Map()));
      const sum = meter.get(e.startMs);
      if (sum) {
        sum.importWh += e.importWh;
        sum.exportWh += e.exportWh;
        sum.estImportWh += e.estImportWh;
        sum.estExportWh += e.estExportWh;
        // The meter's latest market wins, as a row-by-row upsert would leave it.
        sum.market = e.market;
      } else {
        meter.set(e.startMs, { ...e });
      }
    }
  }

  rows(): EnergyDelta[] {
    const out: EnergyDelta[] = [];
    for (const meter of this.sums.values()) for (const sum of meter.values()) out.push(sum);
    return out;
  }
}
