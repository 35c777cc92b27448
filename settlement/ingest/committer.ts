import { performance } from 'node:perf_hooks';
import type { CommitOutcome, VerifiedEnvelope } from '../ledger/ledger.ts';

/** Ledger.commitEnvelopes, in this thread or on the commit thread. */
export type CommitBatch = (batch: VerifiedEnvelope[]) => Promise<CommitOutcome[]>;

interface Waiting {
  env: VerifiedEnvelope;
  resolve: (o: CommitOutcome) => void;
  reject: (e: unknown) => void;
}

/**
 * Groups envelopes that arrive close together into one ledger transaction: whatever queued
 * while earlier commits ran goes into the next one. Each caller gets its own outcome, after
 * the commit, so acks never run ahead of the ledger.
 *
 * `maxInFlight` transactions may run at once. SQLite has one writer, so 1 (the next batch
 * grows while the current one commits). PostgreSQL spends a commit mostly on round trips,
 * so several overlap; the ledger's per-meter locks keep concurrent batches consistent, as
 * they do for several workers.
 */
export class BatchCommitter {
  private queue: Waiting[] = [];
  private inFlight = 0;
  private scheduled = false;
  private idle: Array<() => void> = [];

  constructor(
    private readonly commitBatch: CommitBatch,
    private readonly maxBatch: number,
    private readonly onBatch?: (size: number, ms: number) => void,
    private readonly maxInFlight = 1,
  ) {}

  commit(env: VerifiedEnvelope): Promise<CommitOutcome> {
    return new Promise((resolve, reject) => {
      this.queue.push({ env, resolve, reject });
      this.schedule();
    });
  }

  /** Resolves once everything queued so far is committed. */
  flush(): Promise<void> {
    if (this.queue.length === 0 && this.inFlight === 0) return Promise.resolve();
    return new Promise((resolve) => this.idle.push(resolve));
  }

  private schedule(): void {
    if (this.scheduled || this.queue.length === 0 || this.inFlight >= this.maxInFlight) return;
    this.scheduled = true;
    // setImmediate lets every message already read from the sockets join this batch.
    setImmediate(() => {
      this.scheduled = false;
      this.start();
    });
  }

  private start(): void {
    if (this.queue.length === 0 || this.inFlight >= this.maxInFlight) return;
    const batch = this.queue.splice(0, this.maxBatch);
    this.inFlight++;
    const t0 = performance.now();
    this.commitBatch(batch.map((b) => b.env)).then(
      (outcomes) => {
        this.onBatch?.(batch.length, performance.now() - t0);
        batch.forEach((b, i) => b.resolve(outcomes[i]!));
        this.done();
      },
      (e: unknown) => {
        batch.forEach((b) => b.reject(e));
        this.done();
      },
    );
    this.schedule();
  }

  private done(): void {
    this.inFlight--;
    this.schedule();
    if (this.queue.length === 0 && this.inFlight === 0) for (const resolve of this.idle.splice(0)) resolve();
  }
}
