import { GENESIS_PREV } from '../../protocol/index.ts';

/**
 * The rules a meter's readings obey, free of I/O: the ledger's commit (ledger/plan.ts) and the
 * audit (audit/verify.ts) both apply them. A reading is compared with the nearest stored reading
 * of the same meter on each side, gap or no gap:
 *
 * - the same (meter, seq) again: a duplicate when the content is the same, else `seq_regression`;
 * - seq 1 carries the genesis `prev`, and no other seq does;
 * - next to a neighbour at seq ± 1 the hash links must match (`broken_chain`);
 * - across any span, consecutive or across missing seqs: time moves forward
 *   (`time_regression`), neither counter goes down (`counter_regression`), the span is no
 *   longer than the backfill window (`span_too_long`, which also bounds the work one reading
 *   can cause), and the energy fits the meter's rated power for the span (`exceeds_rated_power`).
 */
export interface ChainReading {
  seq: number;
  hash: string;
  prev: string;
  tsMs: number;
  importWh: number;
  exportWh: number;
}

export interface ChainNeighbours {
  /** The stored reading with the same (meter, seq), if any. */
  same?: { hash: string };
  /** The nearest stored reading with a lower seq. */
  below?: ChainReading;
  /** The nearest stored reading with a higher seq. */
  above?: ChainReading;
}

export interface ChainLimits {
  /** Rated power of the meter, W; undefined skips the energy check. */
  ratedPowerW?: number;
  /** Longest span allowed between two neighbouring readings, ms; undefined = no limit. */
  maxSpanMs?: number;
}

export type ChainRejectReason = 'seq_regression' | 'broken_chain' | 'counter_regression' | 'time_regression' | 'exceeds_rated_power' | 'span_too_long';

export type ChainDecision = { kind: 'new' } | { kind: 'duplicate' } | { kind: 'reject'; reason: ChainRejectReason; detail: string };

/**
 * Meters report float kWh registers; a float32 near 100 MWh resolves to ~8 Wh, so a little
 * slack on top of 10% keeps honest meters from being refused.
 */
const RATED_POWER_TOLERANCE = 1.1;
const RATED_POWER_SLACK_WH = 16;

// The two answers without details are shared (decideReading runs for every committed reading;
// decisions are never changed by their callers).
const NEW: ChainDecision = Object.freeze({ kind: 'new' });
const DUPLICATE: ChainDecision = Object.freeze({ kind: 'duplicate' });

export function decideReading(meter: string, r: ChainReading, n: ChainNeighbours, limits: ChainLimits = {}): ChainDecision {
  if (n.same) {
    if (n.same.hash === r.hash) return DUPLICATE;
    return refuse(meter, 'seq_regression', `seq ${r.seq} is already in the ledger with different content`);
  }
  if (r.seq === 1 && r.prev !== GENESIS_PREV) return refuse(meter, 'broken_chain', 'seq 1 must have the genesis prev');
  if (r.seq > 1 && r.prev === GENESIS_PREV) return refuse(meter, 'seq_regression', `genesis prev at seq ${r.seq} (meter history restarted?)`);
  const { below, above } = n;
  if (below && below.seq === r.seq - 1 && below.hash !== r.prev) return refuse(meter, 'broken_chain', `prev of seq ${r.seq} does not match the hash of seq ${r.seq - 1}`);
  if (above && above.seq === r.seq + 1 && above.prev !== r.hash) return refuse(meter, 'broken_chain', `seq ${r.seq + 1} does not link to this seq ${r.seq}`);
  const p = (below && spanProblem(below, r, limits)) || (above && spanProblem(r, above, limits));
  return p ? refuse(meter, p.reason, p.detail) : NEW;
}

// A function of the module rather than a closure made in every decideReading call.
function refuse(meter: string, reason: ChainRejectReason, detail: string): ChainDecision {
  return { kind: 'reject', reason, detail: `meter ${meter}: ${detail}` };
}

/** What is wrong with the span from reading `a` to the later (higher seq) reading `b`, if anything. */
export function spanProblem(a: ChainReading, b: ChainReading, limits: ChainLimits = {}): { reason: ChainRejectReason; detail: string } | null {
  const span = `seq ${a.seq} → ${b.seq}${b.seq - a.seq > 1 ? ` (across ${b.seq - a.seq - 1} missing)` : ''}`;
  if (b.importWh < a.importWh) return { reason: 'counter_regression', detail: `${span}: import counter went backwards (${a.importWh} → ${b.importWh} Wh)` };
  if (b.exportWh < a.exportWh) return { reason: 'counter_regression', detail: `${span}: export counter went backwards (${a.exportWh} → ${b.exportWh} Wh)` };
  if (b.tsMs <= a.tsMs) {
    return { reason: 'time_regression', detail: `${span}: timestamp does not advance (${iso(a.tsMs)} → ${iso(b.tsMs)})` };
  }
  if (limits.maxSpanMs !== undefined && b.tsMs - a.tsMs > limits.maxSpanMs) {
    return {
      reason: 'span_too_long',
      detail: `${span}: ${Math.round((b.tsMs - a.tsMs) / 86_400_000)} days between neighbouring readings, more than the ${Math.round(limits.maxSpanMs / 86_400_000)}-day backfill window`,
    };
  }
  if (limits.ratedPowerW !== undefined) {
    const hours = (b.tsMs - a.tsMs) / 3_600_000;
    const maxWh = limits.ratedPowerW * hours * RATED_POWER_TOLERANCE + RATED_POWER_SLACK_WH;
    const energy = Math.max(b.importWh - a.importWh, b.exportWh - a.exportWh);
    if (energy > maxWh) {
      return {
        reason: 'exceeds_rated_power',
        detail: `${span}: ${energy} Wh in ${Math.round(hours * 3600)} s exceeds what ${limits.ratedPowerW} W rated power allows (${Math.floor(maxWh)} Wh)`,
      };
    }
  }
  return null;
}

const iso = (ms: number) => (Number.isFinite(ms) && Math.abs(ms) < 8.64e15 ? new Date(ms).toISOString() : String(ms));
