import { GENESIS_PREV } from '../../protocol/index.ts';

/**
 * Per-reading chain and sequence decision, free of I/O: the ledger passes what it holds at
 * seq-1, seq and seq+1 of the same meter. Gaps (seq-1 or seq+1 missing) are allowed so that
 * a later fill can close them; where a neighbour exists, its hash link must match.
 */
export interface ChainNeighbours {
  /** The stored reading with the same (meter, seq), if any. */
  same?: { hash: string };
  /** The stored reading at seq - 1. */
  before?: { hash: string };
  /** The stored reading at seq + 1. */
  after?: { prev: string };
}

export type ChainDecision =
  | { kind: 'new' }
  | { kind: 'duplicate' }
  | { kind: 'reject'; reason: 'seq_regression' | 'broken_chain'; detail: string };

export function decideReading(
  r: { meter: string; seq: number; prev: string; hash: string },
  n: ChainNeighbours,
): ChainDecision {
  if (n.same) {
    if (n.same.hash === r.hash) return { kind: 'duplicate' };
    return {
      kind: 'reject',
      reason: 'seq_regression',
      detail: `meter ${r.meter}: seq ${r.seq} is already in the ledger with different content`,
    };
  }
  if (r.seq === 1 && r.prev !== GENESIS_PREV) {
    return { kind: 'reject', reason: 'broken_chain', detail: `meter ${r.meter}: seq 1 must have the genesis prev` };
  }
  if (r.seq > 1 && r.prev === GENESIS_PREV) {
    return { kind: 'reject', reason: 'seq_regression', detail: `meter ${r.meter}: genesis prev at seq ${r.seq} (meter history restarted?)` };
  }
  if (n.before && n.before.hash !== r.prev) {
    return {
      kind: 'reject',
      reason: 'broken_chain',
      detail: `meter ${r.meter}: prev of seq ${r.seq} does not match the hash of seq ${r.seq - 1}`,
    };
  }
  if (n.after && n.after.prev !== r.hash) {
    return {
      kind: 'reject',
      reason: 'broken_chain',
      detail: `meter ${r.meter}: seq ${r.seq + 1} does not link to this seq ${r.seq}`,
    };
  }
  return { kind: 'new' };
}
