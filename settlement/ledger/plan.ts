// Deciding one envelope against what the ledger holds, free of I/O and shared by both
// engines: each engine only supplies the lookup of stored neighbours and writes the plan.
import { decideReading, type ChainRejectReason, type NeighbourReading } from '../ingest/chain.ts';
import type { CommitOutcome, VerifiedEnvelope, VerifiedReading } from './ledger.ts';
import { pairEnergy } from './rows.ts';


/** A reading that will be stored, with its timestamp parsed once. */
export interface FreshReading {
  reading: VerifiedReading;
  tsMs: number;
}

/** Energy to add to one (meter, interval) row. */
export interface EnergyDelta {
  meter: string;
  market: string;
  startMs: number;
  importWh: number;
  exportWh: number;
}

export type EnvelopePlan =
  | { status: 'accepted'; fresh: FreshReading[]; duplicates: number; energy: EnergyDelta[] }
  | { status: 'duplicate' }
  | { status: 'rejected'; reason: ChainRejectReason; detail: string };

/** What the ledger (plus whatever the caller already planned in this batch) holds at (meter, seq). */
export type NeighbourLookup = (meter: string, seq: number) => NeighbourReading | undefined;

export function neighbourOf(r: VerifiedReading, tsMs: number): NeighbourReading {
  return { hash: r.hash, prev: r.prev, tsMs, importWh: r.importWh, exportWh: r.exportWh };
}

/**
 * Decides every reading of `env` in order, each seeing the readings before it in the same
 * envelope. The envelope is all-or-nothing: one refused reading refuses it, and an envelope
 * whose readings are all stored already is a duplicate (this is also how a resent envelope is
 * recognised: its id is the hash of the same bytes, so its readings are the same). Nothing is
 * written here; the caller stores `fresh` and adds `energy`, and must make them visible to
 * `lookup` before planning the next envelope of the batch.
 */
export function planEnvelope(env: VerifiedEnvelope, lookup: NeighbourLookup): EnvelopePlan {
  // This runs for every envelope on the commit path: no closures or string keys per reading
  // (the TypeScript loader names every closure it creates, which costs more than the work).
  const fresh: FreshReading[] = [];
  const mine: Array<{ meter: string; seq: number; n: NeighbourReading }> = [];
  const energy: EnergyDelta[] = [];
  let duplicates = 0;
  for (const r of env.readings) {
    const tsMs = Date.parse(r.ts);
    const before = seen(mine, r.meter, r.seq - 1) ?? lookup(r.meter, r.seq - 1);
    const after = seen(mine, r.meter, r.seq + 1) ?? lookup(r.meter, r.seq + 1);
    const same = seen(mine, r.meter, r.seq) ?? lookup(r.meter, r.seq);
    const candidate = { meter: r.meter, seq: r.seq, prev: r.prev, hash: r.hash, tsMs, importWh: r.importWh, exportWh: r.exportWh };
    const d = decideReading(candidate, { same, before, after }, { ratedPowerW: r.context.ratedPowerW });
    if (d.kind === 'reject') return { status: 'rejected', reason: d.reason, detail: d.detail };
    if (d.kind === 'duplicate') {
      duplicates++;
      continue;
    }
    mine.push({ meter: r.meter, seq: r.seq, n: neighbourOf(r, tsMs) });
    fresh.push({ reading: r, tsMs });
    for (const e of pairEnergy(r.context, candidate, before, after)) {
      energy.push({ meter: r.meter, market: r.context.market, startMs: e.startMs, importWh: e.importWh, exportWh: e.exportWh });
    }
  }
  if (fresh.length === 0) return { status: 'duplicate' };
  return { status: 'accepted', fresh, duplicates, energy };
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

/** A reading planned earlier in the same envelope (at most 256, usually the one just before). */
function seen(mine: Array<{ meter: string; seq: number; n: NeighbourReading }>, meter: string, seq: number): NeighbourReading | undefined {
  for (let i = mine.length - 1; i >= 0; i--) {
    const m = mine[i]!;
    if (m.seq === seq && m.meter === meter) return m.n;
  }
  return undefined;
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
        // The meter's latest market wins, as a row-by-row upsert would leave it.
        sum.market = e.market;
      } else {
        meter.set(e.startMs, { meter: e.meter, market: e.market, startMs: e.startMs, importWh: e.importWh, exportWh: e.exportWh });
      }
    }
  }

  rows(): EnergyDelta[] {
    const out: EnergyDelta[] = [];
    for (const meter of this.sums.values()) for (const sum of meter.values()) out.push(sum);
    return out;
  }
}
