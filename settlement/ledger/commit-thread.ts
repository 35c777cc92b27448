import { Worker } from 'node:worker_threads';
import type { UnsignedEnvelope } from '../../protocol/index.ts';
import { verifiedReading, type CommitOutcome, type MeterContext, type VerifiedEnvelope } from './ledger.ts';

export interface CommitRequest {
  n: number;
  batch: WireEnvelope[];
}

/**
 * A verified envelope as it crosses to the commit thread. Copying reading objects between
 * threads (structured clone writes every key of every reading) cost more than parsing the
 * signed bytes again on the other side, so the readings travel inside `signed`, which is sent
 * anyway, and only what verification added travels beside it.
 */
export interface WireEnvelope {
  id: VerifiedEnvelope['id'];
  gateway: VerifiedEnvelope['gateway'];
  signed: string;
  sig: string;
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
  return { id: env.id, gateway: env.gateway, signed: env.signed, sig: env.sig, receivedAtMs: env.receivedAtMs, hashes, contexts };
}

/** The readings are those of `signed`, which the main thread verified before sending it. */
export function fromWire(w: WireEnvelope): VerifiedEnvelope {
  const parsed = JSON.parse(w.signed) as UnsignedEnvelope;
  return {
    id: w.id,
    gateway: w.gateway,
    signed: w.signed,
    sig: w.sig,
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
  private worker!: Worker;
  private readonly pending = new Map<number, { resolve: (o: CommitOutcome[]) => void; reject: (e: Error) => void }>();
  private next = 1;
  private closing = false;
  private restartTimer: NodeJS.Timeout | undefined;

  /**
   * If the thread dies (an uncaught error in it, a resource limit), the batches it held are
   * rejected, so their envelopes go unacknowledged and their gateways resend them, and a new
   * thread starts after `restartDelayMs`; its connection sees exactly what was committed
   * (a transaction the dead thread had open was rolled back with its connection).
   */
  constructor(
    private readonly opts: CommitThreadOptions,
    private readonly events: { restarted?: (cause: Error) => void; restartDelayMs?: number } = {},
  ) {
    this.start();
  }

  private start(): void {
    const worker = new Worker(new URL('./commit-worker.js', import.meta.url), { workerData: this.opts, execArgv: [] });
    this.worker = worker;
    worker.on('message', (reply: CommitReply) => {
      const p = this.pending.get(reply.n);
      if (!p) return;
      this.pending.delete(reply.n);
      if (this.pending.size === 0 && !this.closing) worker.unref();
      if ('outcomes' in reply) p.resolve(reply.outcomes);
      else p.reject(Object.assign(new Error(`ledger commit: ${reply.error.message}`), { code: reply.error.code, stack: reply.error.stack }));
    });
    let cause: Error | undefined;
    worker.on('error', (e) => (cause = e));
    worker.on('exit', (code) => {
      if (this.closing) return;
      const died = cause ?? new Error(`the ledger commit thread exited (code ${code})`);
      for (const p of this.pending.values()) p.reject(died);
      this.pending.clear();
      this.restartTimer = setTimeout(() => {
        this.restartTimer = undefined;
        if (this.closing) return;
        this.start();
        this.events.restarted?.(died);
      }, this.events.restartDelayMs ?? 1000);
    });
    // Idle between batches, it must not keep the process alive on its own.
    worker.unref();
  }

  commit(batch: VerifiedEnvelope[]): Promise<CommitOutcome[]> {
    if (this.closing) return Promise.reject(new Error('the ledger commit thread is closed'));
    if (this.restartTimer) return Promise.reject(new Error('the ledger commit thread is restarting'));
    const n = this.next++;
    return new Promise((resolve, reject) => {
      if (this.pending.size === 0) this.worker.ref();
      this.pending.set(n, { resolve, reject });
      this.worker.postMessage({ n, batch: batch.map(toWire) } satisfies CommitRequest);
    });
  }

  /** Lets sent batches finish, then closes the thread's ledger connection(s). */
  async close(): Promise<void> {
    if (this.closing) return;
    this.closing = true;
    clearTimeout(this.restartTimer);
    if (this.restartTimer) return;
    const exited = new Promise<void>((resolve) => this.worker.once('exit', () => resolve()));
    // Held until the thread has closed its connection (SQLite checkpoints the WAL then).
    this.worker.ref();
    this.worker.postMessage('close');
    await exited;
  }
}
