// Deciding one envelope against what the ledger holds, free of I/O and shared by both
// engines: each engine only supplies the lookup of stored neighbours and writes the plan.
import { decideReading, type ChainRejectReason, type NeighbourReading } from '../ingest/chain.ts';
import type { VerifiedEnvelope, VerifiedReading } from './ledger.ts';
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

const keyOf = (meter: string, seq: number) => `${meter}\n${seq}`;

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
  const mine = env.readings.length > 1 ? new Map<string, NeighbourReading>() : undefined;
  const at = (meter: string, seq: number) => mine?.get(keyOf(meter, seq)) ?? lookup(meter, seq);
  const fresh: FreshReading[] = [];
  const energy: EnergyDelta[] = [];
  let duplicates = 0;
  for (const r of env.readings) {
    const tsMs = Date.parse(r.ts);
    const before = at(r.meter, r.seq - 1);
    const after = at(r.meter, r.seq + 1);
    const candidate = { meter: r.meter, seq: r.seq, prev: r.prev, hash: r.hash, tsMs, importWh: r.importWh, exportWh: r.exportWh };
    const d = decideReading(candidate, { same: at(r.meter, r.seq), before, after }, { ratedPowerW: r.context.ratedPowerW });
    if (d.kind === 'reject') return { status: 'rejected', reason: d.reason, detail: d.detail };
    if (d.kind === 'duplicate') {
      duplicates++;
      continue;
    }
    mine?.set(keyOf(r.meter, r.seq), neighbourOf(r, tsMs));
    fresh.push({ reading: r, tsMs });
    for (const e of pairEnergy(r.context, candidate, before, after)) {
      energy.push({ meter: r.meter, market: r.context.market, ...e });
    }
  }
  if (fresh.length === 0) return { status: 'duplicate' };
  return { status: 'accepted', fresh, duplicates, energy };
}

/**
 * Sums energy deltas per (meter, interval), so that one upsert per row covers a whole batch
 * (PostgreSQL refuses an ON CONFLICT statement that touches a row twice).
 */
export class EnergySums {
  private readonly sums = new Map<string, EnergyDelta>();

  add(deltas: EnergyDelta[]): void {
    for (const e of deltas) {
      const k = keyOf(e.meter, e.startMs);
      const sum = this.sums.get(k);
      if (sum) {
        sum.importWh += e.importWh;
        sum.exportWh += e.exportWh;
        // The meter's latest market wins, as a row-by-row upsert would leave it.
        sum.market = e.market;
      } else {
        this.sums.set(k, { ...e });
      }
    }
  }

  rows(): EnergyDelta[] {
    return [...this.sums.values()];
  }
}
