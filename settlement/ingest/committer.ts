import { performance } from 'node:perf_hooks';
import type { CommitOutcome, VerifiedEnvelope } from '../ledger/ledger.ts';
import { WriterDied, WriterStalled } from '../ledger/writer.ts';

/** A ledger commit of a batch (the ledger writer's commit). */
export type CommitBatch = (batch: VerifiedEnvelope[]) => Promise<CommitOutcome[]>;

/**
 * Errors that say the ledger (or the way to it) is unavailable, not that an envelope is bad:
 * every envelope of the batch is left unanswered, and its gateway resends it later. Anything else
 * a commit throws is taken to be caused by something in the batch and isolated (see
 * BatchCommitter). SQLite result codes, PostgreSQL SQLSTATE classes 08 (connection), 53
 * (insufficient resources), 57 (operator intervention), 58 (system error), and socket errors.
 */
export function isUnavailable(e: unknown): boolean {
  const code = (e as { code?: unknown } | null)?.code;
  if (typeof code === 'string') {
    if (/^SQLITE_(BUSY|LOCKED|IOERR|FULL|CANTOPEN|READONLY|NOMEM|PROTOCOL|CORRUPT|NOTADB)/.test(code)) return true;
    if (/^(08|53|57|58)[0-9A-Z]{3}$/.test(code)) return true;
    if (['ECONNREFUSED', 'ECONNRESET', 'ETIMEDOUT', 'EPIPE', 'ENOTFOUND', 'EHOSTUNREACH', 'ENETUNREACH'].includes(code)) return true;
  }
  const name = (e as { name?: unknown } | null)?.name;
  if (name === 'WriterClosed') return true;
  const message = e instanceof Error ? e.message : '';
  return /Connection terminated|connection timeout|timeout exceeded when trying to connect|Client has encountered a connection error/i.test(message);
}

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
 * One bad envelope never fails the others of its batch. When a commit throws something other
 * than "the ledger is unavailable" (isUnavailable), the batch is split in halves and each
 * committed again, down to single envelopes; one that still fails alone is refused as
 * `commit_failed` (retryable: a ledger bug or a transient fault may pass). When the writer
 * stalled or died (its watchdog, writer.ts), the envelopes are committed one by one instead, so
 * that one envelope that stalls a commit costs one more watchdog period, not one per halving.
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
    /** An envelope refused as commit_failed, with what its commit threw (for the operator's log). */
    private readonly onFailure?: (env: VerifiedEnvelope, e: Error) => void,
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
    this.isolate(batch.map((b) => b.env)).then((results) => {
      this.onBatch?.(batch.length, performance.now() - t0);
      batch.forEach((b, i) => {
        const r = results[i]!;
        if (r instanceof Error) b.reject(r);
        else b.resolve(r);
      });
      done();
    });
  }

  /** Commits `envs`, isolating whatever makes the commit throw (see the class comment). */
  private async isolate(envs: VerifiedEnvelope[]): Promise<Array<CommitOutcome | Error>> {
    try {
      return await this.commitBatch(envs);
    } catch (e) {
      const err = asError(e);
      if (isUnavailable(err)) return envs.map(() => err);
      if (err instanceof WriterStalled || err instanceof WriterDied) return this.oneByOne(envs);
      if (envs.length === 1) return [this.failed(envs[0]!, err)];
      const mid = envs.length >> 1;
      return [...(await this.isolate(envs.slice(0, mid))), ...(await this.isolate(envs.slice(mid)))];
    }
  }

  /**
   * After the writer stalled or died: each envelope alone. One that stalls (or kills) the writer
   * on its own is refused, once the next one commits fine; two in a row say the ledger itself
   * is stuck, and everything not yet committed is left unanswered for its gateway to resend.
   */
  private async oneByOne(envs: VerifiedEnvelope[]): Promise<Array<CommitOutcome | Error>> {
    const out: Array<CommitOutcome | Error> = [];
    let suspect: { i: number; err: Error } | null = null;
    for (let i = 0; i < envs.length; i++) {
      try {
        out[i] = (await this.commitBatch([envs[i]!]))[0]!;
        if (suspect) out[suspect.i] = this.failed(envs[suspect.i]!, suspect.err);
        suspect = null;
      } catch (e) {
        const err = asError(e);
        const stalled = err instanceof WriterStalled || err instanceof WriterDied;
        if (isUnavailable(err) || (stalled && suspect)) {
          if (suspect) out[suspect.i] = err;
          for (let k = i; k < envs.length; k++) out[k] = err;
          return out;
        }
        if (stalled) suspect = { i, err };
        else out[i] = this.failed(envs[i]!, err);
      }
    }
    if (suspect) out[suspect.i] = this.failed(envs[suspect.i]!, suspect.err);
    return out;
  }

  private failed(env: VerifiedEnvelope, err: Error): CommitOutcome {
    this.onFailure?.(env, err);
    return { status: 'rejected', id: env.id, reason: 'commit_failed', detail: `the ledger could not commit this envelope (${err.message}); it may be sent again later` };
  }
}

const asError = (e: unknown): Error => (e instanceof Error ? e : new Error(String(e)));

/** A stable lane for a gateway (FNV-1a of its id). */
function laneOf(gateway: string, lanes: number): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < gateway.length; i++) h = Math.imul(h ^ gateway.charCodeAt(i), 0x01000193);
  return (h >>> 0) % lanes;
}
