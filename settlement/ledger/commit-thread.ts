import { Worker } from 'node:worker_threads';
import type { Envelope } from '../../protocol/index.ts';
import { verifiedReading, type CommitOutcome, type MeterContext, type VerifiedEnvelope } from './ledger.ts';

export interface CommitRequest {
  n: number;
  batch: WireEnvelope[];
}

/**
 * A verified envelope as it crosses to the commit thread. Copying reading objects between
 * threads (structured clone writes every key of every reading) cost more than parsing the
 * raw payload again on the other side, so the readings travel inside `raw`, which is sent
 * anyway, and only what verification added travels beside it.
 */
export interface WireEnvelope {
  id: VerifiedEnvelope['id'];
  gateway: VerifiedEnvelope['gateway'];
  raw: string;
  receivedAtMs: number;
  hashes: string[];
  contexts: Record<string, MeterContext>;
}

export function toWire(env: VerifiedEnvelope): WireEnvelope {
  const contexts: Record<string, MeterContext> = {};
  const hashes: string[] = [];
  for (const r of env.readings) {
    contexts[r.meter] = r.context;
    hashes.push(r.hash);
  }
  return { id: env.id, gateway: env.gateway, raw: env.raw, receivedAtMs: env.receivedAtMs, hashes, contexts };
}

/** The readings are those of `raw`, which the main thread verified before sending it. */
export function fromWire(w: WireEnvelope): VerifiedEnvelope {
  const parsed = JSON.parse(w.raw) as Envelope;
  return {
    id: w.id,
    gateway: w.gateway,
    raw: w.raw,
    receivedAtMs: w.receivedAtMs,
    readings: parsed.readings.map((r, i) => verifiedReading(r, w.hashes[i]!, w.contexts[r.meter]!)),
  };
}

export type CommitReply =
  | { n: number; outcomes: CommitOutcome[] }
  | { n: number; error: { message: string; code?: string; stack?: string } };

/** Where the thread's own ledger connection goes: the same ledger the main thread opened. */
export interface CommitThreadOptions {
  sqlitePath: string;
  databaseUrl?: string;
  maxConnections?: number;
}

/**
 * Ledger commits on a worker thread with its own connection(s) to the same ledger, so that the
 * event loop receiving MQTT and verifying envelopes never waits on them. SQLite: the
 * statements, the WAL write and the fsync of `synchronous = FULL` (WAL lets the main thread's
 * connection read meanwhile); the thread keeps each meter's chain head, so one SQLite file
 * must have one committing thread. PostgreSQL: building and parsing the protocol messages,
 * which on the event loop cost as much as verifying. Batches are answered in any order;
 * each caller gets its own.
 */
export class CommitThread {
  private readonly worker: Worker;
  private readonly pending = new Map<number, { resolve: (o: CommitOutcome[]) => void; reject: (e: Error) => void }>();
  private next = 1;
  private failure: Error | undefined;
  private closing = false;

  constructor(opts: CommitThreadOptions) {
    this.worker = new Worker(new URL('./commit-worker.js', import.meta.url), { workerData: opts, execArgv: [] });
    this.worker.on('message', (reply: CommitReply | 'ready') => {
      if (reply === 'ready') return;
      const p = this.pending.get(reply.n);
      if (!p) return;
      this.pending.delete(reply.n);
      if (this.pending.size === 0 && !this.closing) this.worker.unref();
      if ('outcomes' in reply) p.resolve(reply.outcomes);
      else p.reject(Object.assign(new Error(`ledger commit: ${reply.error.message}`), { code: reply.error.code, stack: reply.error.stack }));
    });
    this.worker.on('error', (e) => this.fail(e));
    this.worker.on('exit', (code) => this.fail(new Error(`the ledger commit thread exited (code ${code})`)));
    // Idle between batches, it must not keep the process alive on its own.
    this.worker.unref();
  }

  commit(batch: VerifiedEnvelope[]): Promise<CommitOutcome[]> {
    if (this.failure) return Promise.reject(this.failure);
    const n = this.next++;
    return new Promise((resolve, reject) => {
      if (this.pending.size === 0) this.worker.ref();
      this.pending.set(n, { resolve, reject });
      this.worker.postMessage({ n, batch: batch.map(toWire) } satisfies CommitRequest);
    });
  }

  /** Lets sent batches finish, then closes the thread's ledger connection(s). */
  async close(): Promise<void> {
    if (this.failure || this.closing) return;
    this.closing = true;
    const exited = new Promise<void>((resolve) => this.worker.once('exit', () => resolve()));
    // Held until the thread has closed its connection (SQLite checkpoints the WAL then).
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
