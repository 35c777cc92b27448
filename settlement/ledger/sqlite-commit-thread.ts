import { Worker } from 'node:worker_threads';
import type { CommitOutcome, VerifiedEnvelope } from './ledger.ts';

export interface CommitRequest {
  n: number;
  batch: VerifiedEnvelope[];
}

export type CommitReply =
  | { n: number; outcomes: CommitOutcome[] }
  | { n: number; error: { message: string; code?: string; stack?: string } };

/**
 * Ledger commits on a worker thread with its own connection to the same SQLite file (WAL lets
 * the main thread's connection read meanwhile). A commit holds its thread for the statements,
 * the WAL write and the fsync of `synchronous = FULL` — milliseconds in which the main thread,
 * left free, receives and verifies the next batch instead of stalling MQTT. Batches are
 * committed one at a time in the order sent; the readings' chain heads live in that thread.
 */
export class SqliteCommitThread {
  private readonly worker: Worker;
  private readonly pending = new Map<number, { resolve: (o: CommitOutcome[]) => void; reject: (e: Error) => void }>();
  private next = 1;
  private failure: Error | undefined;

  constructor(path: string) {
    this.worker = new Worker(new URL('./sqlite-commit-worker.js', import.meta.url), { workerData: { path }, execArgv: [] });
    this.worker.on('message', (reply: CommitReply) => {
      const p = this.pending.get(reply.n);
      if (!p) return;
      this.pending.delete(reply.n);
      if (this.pending.size === 0) this.worker.unref();
      if ('outcomes' in reply) p.resolve(reply.outcomes);
      else p.reject(Object.assign(new Error(`SQLite commit: ${reply.error.message}`), { code: reply.error.code, stack: reply.error.stack }));
    });
    this.worker.on('error', (e) => this.fail(e));
    this.worker.on('exit', (code) => this.fail(new Error(`the SQLite commit thread exited (code ${code})`)));
    // Idle between batches, it must not keep the process alive on its own.
    this.worker.unref();
  }

  commit(batch: VerifiedEnvelope[]): Promise<CommitOutcome[]> {
    if (this.failure) return Promise.reject(this.failure);
    const n = this.next++;
    return new Promise((resolve, reject) => {
      if (this.pending.size === 0) this.worker.ref();
      this.pending.set(n, { resolve, reject });
      this.worker.postMessage({ n, batch } satisfies CommitRequest);
    });
  }

  /** Lets committed batches finish, then closes the thread's connection. */
  async close(): Promise<void> {
    if (this.failure) return;
    const exited = new Promise<void>((resolve) => this.worker.once('exit', () => resolve()));
    // Held until the thread has closed its connection (checkpointing the WAL).
    this.worker.ref();
    this.worker.postMessage('close');
    await exited;
  }

  private fail(e: Error): void {
    this.failure ??= e;
    for (const p of this.pending.values()) p.reject(this.failure);
    this.pending.clear();
  }
}
