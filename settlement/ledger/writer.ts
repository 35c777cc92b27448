import type { EstimateOptions } from './gap-estimates.ts';
import { estimateDueGaps } from './gap-estimates.ts';
import { commitOptions, type CommitOptions, type CommitOutcome, type Ledger, type RejectionBatch, type VerifiedEnvelope } from './ledger.ts';
import { pruneRejections, recordRejections } from './rejection-store.ts';

/**
 * Everything that writes to the ledger while the settlement runs goes through one writer:
 * envelope commits, rejection counts and samples, gap estimates, retention. On SQLite that
 * makes one writer of the file (no `database is locked` between a flood of rejections and the
 * commits); the commit thread (commit-thread.ts) is the writer of a running settlement, a
 * DirectWriter serves an in-memory ledger.
 */
export interface LedgerWriter {
  commit(batch: VerifiedEnvelope[], opts?: CommitOptions): Promise<CommitOutcome[]>;
  recordRejections(batch: RejectionBatch, sampleBytes: number): Promise<void>;
  estimateGaps(opts: EstimateOptions): Promise<{ estimated: number; unestimable: number }>;
  pruneRejections(beforeMs: number): Promise<{ samples: number; counts: number }>;
  status(): WriterStatus;
  close(): Promise<void>;
}

export interface WriterStatus {
  alive: boolean;
  /** When a task last completed. */
  lastSuccessAtMs: number | null;
  lastError: string | null;
  restarts: number;
}

export type WriterTask =
  | { kind: 'commit'; batch: VerifiedEnvelope[]; opts: CommitOptions }
  | { kind: 'rejections'; batch: RejectionBatch; sampleBytes: number }
  | { kind: 'estimateGaps'; opts: EstimateOptions }
  | { kind: 'pruneRejections'; beforeMs: number };

export type WriterResult = CommitOutcome[] | { estimated: number; unestimable: number } | { samples: number; counts: number } | null;

/**
 * Runs tasks against a ledger. SQLite: one after another, since the Kysely tasks await between
 * statements on the one connection, where a commit must never interleave. PostgreSQL: as they
 * come (each on its own pooled connection; meter locks order what touches the same meter).
 */
export class TaskRunner {
  private tail: Promise<unknown> = Promise.resolve();

  constructor(private readonly ledger: Ledger) {}

  run(task: WriterTask): Promise<WriterResult> {
    if (this.ledger.engine === 'postgres') return this.exec(task);
    const next = this.tail.then(
      () => this.exec(task),
      () => this.exec(task),
    );
    this.tail = next.catch(() => undefined);
    return next;
  }

  private async exec(task: WriterTask): Promise<WriterResult> {
    const { ledger } = this;
    switch (task.kind) {
      case 'commit':
        return ledger.commitEnvelopes(task.batch, task.opts);
      case 'rejections':
        await recordRejections(ledger.db, task.batch, task.sampleBytes);
        return null;
      case 'estimateGaps':
        return estimateDueGaps(ledger.db, ledger.engine, task.opts);
      case 'pruneRejections':
        return pruneRejections(ledger.db, task.beforeMs);
    }
  }
}

/** The writer for a ledger used in this thread (an in-memory SQLite ledger): no watchdog. */
export class DirectWriter implements LedgerWriter {
  private readonly runner: TaskRunner;
  private lastSuccessAtMs: number | null = null;
  private lastError: string | null = null;

  constructor(ledger: Ledger) {
    this.runner = new TaskRunner(ledger);
  }

  private async run<T extends WriterResult>(task: WriterTask): Promise<T> {
    try {
      const out = (await this.runner.run(task)) as T;
      this.lastSuccessAtMs = Date.now();
      return out;
    } catch (e) {
      this.lastError = (e as Error).message;
      throw e;
    }
  }

  commit(batch: VerifiedEnvelope[], opts?: CommitOptions): Promise<CommitOutcome[]> {
    return this.run({ kind: 'commit', batch, opts: commitOptions(opts) });
  }

  async recordRejections(batch: RejectionBatch, sampleBytes: number): Promise<void> {
    await this.run({ kind: 'rejections', batch, sampleBytes });
  }

  estimateGaps(opts: EstimateOptions): Promise<{ estimated: number; unestimable: number }> {
    return this.run({ kind: 'estimateGaps', opts });
  }

  pruneRejections(beforeMs: number): Promise<{ samples: number; counts: number }> {
    return this.run({ kind: 'pruneRejections', beforeMs });
  }

  status(): WriterStatus {
    return { alive: true, lastSuccessAtMs: this.lastSuccessAtMs, lastError: this.lastError, restarts: 0 };
  }

  async close(): Promise<void> {}
}

/** The writer stopped answering within its watchdog time and was replaced. */
export class WriterStalled extends Error {
  override readonly name = 'WriterStalled';
}

/** The writer's thread died (an uncaught error, a crash) and was replaced. */
export class WriterDied extends Error {
  override readonly name = 'WriterDied';
}

/** The writer is closed: the settlement is stopping. */
export class WriterClosed extends Error {
  override readonly name = 'WriterClosed';
}
