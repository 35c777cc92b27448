import { performance } from 'node:perf_hooks';
import type { CommitOutcome, VerifiedEnvelope } from '../ledger/ledger.ts';

/** Ledger.commitEnvelopes, in this thread or on the commit thread. */
export type CommitBatch = (batch: VerifiedEnvelope[]) => Promise<CommitOutcome[]>;

interface Waiting {
  env: VerifiedEnvelope;
  resolve: (o: CommitOutcome) => void;
  reject: (e: unknown) => void;
}

/** One queue with at most one transaction in flight. */
interface Lane {
  queue: Waiting[];
  busy: boolean;
  scheduled: boolean;
}

/**
 * Groups envelopes that arrive close together into one ledger transaction: whatever queued
 * while the lane's previous commit ran goes into its next one. Each caller gets its own
 * outcome, after the commit, so acks never run ahead of the ledger.
 *
 * `lanes` transactions may run at once, each for its own share of the gateways (by a hash
 * of the gateway id), so concurrent batches touch disjoint meters and do not queue behind
 * each other on the ledger's per-meter locks; a gateway's envelopes stay in arrival order
 * within its lane. SQLite has one writer: 1 lane, the next batch growing while the current
 * one commits. PostgreSQL overlaps several (its commits are mostly round trips and server
 * work); the meter locks still keep any overlap consistent, as they do for several workers.
 */
export class BatchCommitter {
  private readonly lanes: Lane[];
  private pending = 0;
  private idle: Array<() => void> = [];

  constructor(
    private readonly commitBatch: CommitBatch,
    private readonly maxBatch: number,
    private readonly onBatch?: (size: number, ms: number) => void,
    lanes = 1,
  ) {
    this.lanes = Array.from({ length: Math.max(1, lanes) }, () => ({ queue: [], busy: false, scheduled: false }));
  }

  commit(env: VerifiedEnvelope): Promise<CommitOutcome> {
    return new Promise((resolve, reject) => {
      const lane = this.lanes.length === 1 ? this.lanes[0]! : this.lanes[laneOf(env.gateway, this.lanes.length)]!;
      lane.queue.push({ env, resolve, reject });
      this.pending++;
      this.schedule(lane);
    });
  }

  /** Resolves once everything queued so far is committed. */
  flush(): Promise<void> {
    if (this.pending === 0) return Promise.resolve();
    return new Promise((resolve) => this.idle.push(resolve));
  }

  private schedule(lane: Lane): void {
    if (lane.scheduled || lane.busy || lane.queue.length === 0) return;
    lane.scheduled = true;
    // setImmediate lets every message already read from the sockets join this batch.
    setImmediate(() => {
      lane.scheduled = false;
      this.start(lane);
    });
  }

  private start(lane: Lane): void {
    if (lane.busy || lane.queue.length === 0) return;
    const batch = lane.queue.splice(0, this.maxBatch);
    lane.busy = true;
    const t0 = performance.now();
    const done = () => {
      lane.busy = false;
      this.pending -= batch.length;
      this.schedule(lane);
      if (this.pending === 0) for (const resolve of this.idle.splice(0)) resolve();
    };
    this.commitBatch(batch.map((b) => b.env)).then(
      (outcomes) => {
        this.onBatch?.(batch.length, performance.now() - t0);
        batch.forEach((b, i) => b.resolve(outcomes[i]!));
        done();
      },
      (e: unknown) => {
        batch.forEach((b) => b.reject(e));
        done();
      },
    );
  }
}

/** A stable lane for a gateway (FNV-1a of its id). */
function laneOf(gateway: string, lanes: number): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < gateway.length; i++) h = Math.imul(h ^ gateway.charCodeAt(i), 0x01000193);
  return (h >>> 0) % lanes;
}
