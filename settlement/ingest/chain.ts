import { GENESIS_PREV } from '../../protocol/index.ts';

/**
 * Per-reading decision at commit, free of I/O: the ledger passes what it holds at seq-1,
 * seq and seq+1 of the same meter. Gaps (seq-1 or seq+1 missing) are allowed so that a later
 * fill can close them; where a neighbour exists, its hash link must match, counters must not
 * go backwards, time must move forward, and the energy between the two must be possible at
 * the meter's rated power.
 */
export interface NeighbourReading {
  hash: string;
  prev: string;
  tsMs?: number;
  importWh?: number;
  exportWh?: number;
}

export interface ChainNeighbours {
  /** The stored reading with the same (meter, seq), if any. */
  same?: { hash: string };
  /** The stored reading at seq - 1. */
  before?: NeighbourReading;
  /** The stored reading at seq + 1. */
  after?: NeighbourReading;
}

export interface MeterLimits {
  ratedPowerW: number;
}

export type ChainRejectReason = 'seq_regression' | 'broken_chain' | 'counter_regression' | 'time_regression' | 'exceeds_rated_power';

export type ChainDecision =
  | { kind: 'new' }
  | { kind: 'duplicate' }
  | { kind: 'reject'; reason: ChainRejectReason; detail: string };

export interface CandidateReading {
  meter: string;
  seq: number;
  prev: string;
  hash: string;
  tsMs?: number;
  importWh?: number;
  exportWh?: number;
}

/**
 * Meters report float kWh registers; a float32 near 100 MWh resolves to ~8 Wh, so a little
 * slack on top of 10% keeps honest meters from being refused.
 */
const RATED_POWER_TOLERANCE = 1.1;
const RATED_POWER_SLACK_WH = 16;

export function decideReading(r: CandidateReading, n: ChainNeighbours, limits?: MeterLimits): ChainDecision {
  if (n.same) {
    if (n.same.hash === r.hash) return { kind: 'duplicate' };
    return refuse(r, 'seq_regression', `seq ${r.seq} is already in the ledger with different content`);
  }
  if (r.seq === 1 && r.prev !== GENESIS_PREV) return refuse(r, 'broken_chain', 'seq 1 must have the genesis prev');
  if (r.seq > 1 && r.prev === GENESIS_PREV) return refuse(r, 'seq_regression', `genesis prev at seq ${r.seq} (meter history restarted?)`);
  if (n.before && n.before.hash !== r.prev) return refuse(r, 'broken_chain', `prev of seq ${r.seq} does not match the hash of seq ${r.seq - 1}`);
  if (n.after && n.after.prev !== r.hash) return refuse(r, 'broken_chain', `seq ${r.seq + 1} does not link to this seq ${r.seq}`);
  if (n.before) {
    const d = spanProblem(n.before, r, limits);
    if (d) return refuse(r, d.reason, `seq ${r.seq - 1} → ${r.seq}: ${d.detail}`);
  }
  if (n.after) {
    const d = spanProblem(r, n.after, limits);
    if (d) return refuse(r, d.reason, `seq ${r.seq} → ${r.seq + 1}: ${d.detail}`);
  }
  return { kind: 'new' };
}

function refuse(r: CandidateReading, reason: ChainRejectReason, detail: string): ChainDecision {
  return { kind: 'reject', reason, detail: `meter ${r.meter}: ${detail}` };
}

function spanProblem(
  a: { tsMs?: number; importWh?: number; exportWh?: number },
  b: { tsMs?: number; importWh?: number; exportWh?: number },
  limits?: MeterLimits,
): { reason: ChainRejectReason; detail: string } | null {
  if (a.importWh !== undefined && b.importWh !== undefined && b.importWh < a.importWh) {
    return { reason: 'counter_regression', detail: `import counter went backwards (${a.importWh} → ${b.importWh} Wh)` };
  }
  if (a.exportWh !== undefined && b.exportWh !== undefined && b.exportWh < a.exportWh) {
    return { reason: 'counter_regression', detail: `export counter went backwards (${a.exportWh} → ${b.exportWh} Wh)` };
  }
  if (a.tsMs === undefined || b.tsMs === undefined) return null;
  if (b.tsMs <= a.tsMs) return { reason: 'time_regression', detail: `timestamp does not advance (${new Date(b.tsMs).toISOString()})` };
  if (limits && a.importWh !== undefined && b.importWh !== undefined && a.exportWh !== undefined && b.exportWh !== undefined) {
    const hours = (b.tsMs - a.tsMs) / 3_600_000;
    const maxWh = limits.ratedPowerW * hours * RATED_POWER_TOLERANCE + RATED_POWER_SLACK_WH;
    const energy = Math.max(b.importWh - a.importWh, b.exportWh - a.exportWh);
    if (energy > maxWh) {
      return {
        reason: 'exceeds_rated_power',
        detail: `${energy} Wh in ${Math.round(hours * 3600)} s exceeds what ${limits.ratedPowerW} W rated power allows (${Math.floor(maxWh)} Wh)`,
      };
    }
  }
  return null;
}
