import { Worker } from 'node:worker_threads';
import type { UnsignedEnvelope } from '../../protocol/index.ts';
import type { EstimateOptions } from './gap-estimates.ts';
import { commitOptions, verifiedReading, type CommitOptions, type CommitOutcome, type MeterContext, type RejectionBatch, type VerifiedEnvelope } from './ledger.ts';
import { WriterClosed, WriterDied, WriterStalled, type LedgerWriter, type WriterResult, type WriterStatus, type WriterTask } from './writer.ts';
import { workerEntry } from './worker-entry.ts';

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

/** A WriterTask with its envelopes in wire form. */
export type WireTask = Exclude<WriterTask, { kind: 'commit' }> | { kind: 'commit'; batch: WireEnvelope[]; opts: CommitOptions };

export interface WriterRequest {
  n: number;
  task: WireTask;
}

export type WriterReply = { n: number; result: WriterResult } | { n: number; error: { message: string; code?: string; stack?: string } };

/** Where the thread's own ledger connection goes: the same ledger the main thread opened. */
export interface CommitThreadOptions {
  sqlitePath: string;
  databaseUrl?: string;
}

export interface CommitThreadEvents {
  /** The thread was replaced after dying or stalling; its tasks were failed with `cause`. */
  restarted?: (cause: Error) => void;
  restartDelayMs?: number;
  /** A commit taking longer than this stalls the thread: it is terminated and replaced (watchdog). */
  commitTimeoutMs?: number;
  /** The same for the other tasks (bounded work each: rejections, a run of gap estimates, a prune chunk). */
  taskTimeoutMs?: number;
  /** SQLite: a task timed out and the thread is left to finish it (see the class comment). */
  stalled?: (cause: WriterStalled) => void;
  /** SQLite: the stuck thread answered again. */
  recovered?: () => void;
}

interface Pending {
  resolve: (r: WriterResult) => void;
  reject: (e: Error) => void;
  timer: NodeJS.Timeout;
}

/**
 * The ledger's writer on a worker thread with its own connection(s) to the same ledger, so
 * that the event loop receiving MQTT and verifying envelopes never waits on a write. SQLite: the
 * statements, the WAL write and the fsync of `synchronous = FULL` (WAL lets the main thread's
 * connection read meanwhile); the thread keeps each meter's chain head, so one SQLite file must
 * have one writing thread. PostgreSQL: building and parsing the protocol messages, which on the
 * event loop cost as much as verifying. Tasks are answered in any order; each caller gets its own.
 *
 * Watchdog: a task that takes longer than its timeout stalls the writer: every task it holds
 * fails with WriterStalled and the callers decide what to do (the committer retries the envelopes
 * one by one, so that one envelope that stalls the commit cannot keep the others out, and leaves
 * them unanswered when the ledger itself is stuck). PostgreSQL: the thread is terminated (its
 * open transaction dies with its connections) and a new one starts. SQLite: the thread is left to
 * finish, because terminating a thread inside a native SQLite call can bring the whole process
 * down (better-sqlite3); until it answers again every task fails at once with WriterStalled, and
 * what the stuck task committed meanwhile is idempotent to resend. A thread that dies fails its
 * tasks with WriterDied; tasks sent while a new thread is starting wait for it.
 */
export class CommitThread implements LedgerWriter {
  private worker!: Worker;
  private readonly pending = new Map<number, Pending>();
  private next = 1;
  private closing = false;
  private starting: Promise<void> | null = null;
  private stallCause: Error | null = null;
  /** SQLite: the thread is stuck in a task that timed out; tasks fail fast until it answers. */
  private stuck: WriterStalled | null = null;
  private lastSuccessAtMs: number | null = null;
  private lastError: string | null = null;
  private restarts = 0;

  constructor(
    private readonly opts: CommitThreadOptions,
    private readonly events: CommitThreadEvents = {},
  ) {
    this.start();
  }

  /** Resolves when the current thread has loaded and opened its ledger: watchdog timers start then. */
  private ready!: Promise<void>;

  private start(): void {
    const worker = new Worker(workerEntry(import.meta.url, './commit-worker-main.js', './commit-worker.js'), { workerData: this.opts, execArgv: [] });
    this.worker = worker;
    let markReady!: () => void;
    this.ready = new Promise<void>((resolve) => (markReady = resolve));
    worker.on('message', (reply: WriterReply | 'ready') => {
      if (reply === 'ready') return markReady();
      if (this.stuck) {
        this.stuck = null;
        this.events.recovered?.();
      }
      const p = this.pending.get(reply.n);
      if (!p) return;
      this.pending.delete(reply.n);
      clearTimeout(p.timer);
      if (this.pending.size === 0 && !this.closing) worker.unref();
      if ('result' in reply) {
        this.lastSuccessAtMs = Date.now();
        p.resolve(reply.result);
      } else {
        this.lastError = reply.error.message;
        p.reject(Object.assign(new Error(`ledger writer: ${reply.error.message}`), { code: reply.error.code, stack: reply.error.stack }));
      }
    });
    let cause: Error | undefined;
    worker.on('error', (e) => (cause = e));
    worker.on('exit', (code) => {
      markReady();
      if (this.closing) return;
      const died = this.stallCause ?? new WriterDied(`the ledger writer thread exited (code ${code})${cause ? `: ${cause.message}` : ''}`);
      this.stallCause = null;
      this.lastError = died.message;
      for (const p of this.pending.values()) {
        clearTimeout(p.timer);
        p.reject(died);
      }
      this.pending.clear();
      this.restarts++;
      this.starting = new Promise<void>((resolve) =>
        setTimeout(() => {
          this.starting = null;
          if (!this.closing) {
            this.start();
            this.events.restarted?.(died);
          }
          resolve();
        }, this.events.restartDelayMs ?? 1000),
      );
    });
    // Idle between tasks, it must not keep the process alive on its own.
    worker.unref();
  }

  private async send(task: WireTask, timeoutMs: number): Promise<WriterResult> {
    if (this.starting) await this.starting;
    await this.ready;
    if (this.starting) await this.starting;
    if (this.closing) throw new WriterClosed('the ledger writer is closed');
    if (this.stuck) throw this.stuck;
    const n = this.next++;
    const worker = this.worker;
    return new Promise((resolve, reject) => {
      if (this.pending.size === 0) worker.ref();
      const timer = setTimeout(() => this.stall(task, timeoutMs), timeoutMs);
      this.pending.set(n, { resolve, reject, timer });
      worker.postMessage({ n, task } satisfies WriterRequest);
    });
  }

  private stall(task: WireTask, timeoutMs: number): void {
    if (this.stallCause || this.stuck || this.closing) return;
    const what = task.kind === 'commit' ? `a commit of ${task.batch.length} envelope(s)` : `a ${task.kind} task`;
    if (this.opts.databaseUrl) {
      this.stallCause = new WriterStalled(`the ledger writer did not finish ${what} within ${timeoutMs} ms; its thread was replaced`);
      void this.worker.terminate();
      return;
    }
    this.stuck = new WriterStalled(`the ledger writer did not finish ${what} within ${timeoutMs} ms and is still at it`);
    this.lastError = this.stuck.message;
    for (const p of this.pending.values()) {
      clearTimeout(p.timer);
      p.reject(this.stuck);
    }
    this.pending.clear();
    this.events.stalled?.(this.stuck);
  }

  async commit(batch: VerifiedEnvelope[], opts?: CommitOptions): Promise<CommitOutcome[]> {
    return (await this.send({ kind: 'commit', batch: batch.map(toWire), opts: commitOptions(opts) }, this.events.commitTimeoutMs ?? 10_000)) as CommitOutcome[];
  }

  async recordRejections(batch: RejectionBatch, sampleBytes: number): Promise<void> {
    await this.send({ kind: 'rejections', batch, sampleBytes }, this.events.taskTimeoutMs ?? 30_000);
  }

  async estimateGaps(opts: EstimateOptions): Promise<{ estimated: number; unestimable: number }> {
    return (await this.send({ kind: 'estimateGaps', opts }, this.events.taskTimeoutMs ?? 30_000)) as { estimated: number; unestimable: number };
  }

  async pruneRejections(beforeMs: number): Promise<{ samples: number; counts: number }> {
    return (await this.send({ kind: 'pruneRejections', beforeMs }, this.events.taskTimeoutMs ?? 30_000)) as { samples: number; counts: number };
  }

  status(): WriterStatus {
    return { alive: !this.starting && !this.closing && !this.stuck, lastSuccessAtMs: this.lastSuccessAtMs, lastError: this.lastError, restarts: this.restarts };
  }

  /** Lets sent tasks finish, then closes the thread's ledger connection(s). */
  async close(): Promise<void> {
    if (this.closing) return;
    this.closing = true;
    if (this.starting) return;
    const exited = new Promise<void>((resolve) => this.worker.once('exit', () => resolve()));
    // Held until the thread has closed its connection (SQLite checkpoints the WAL then).
    this.worker.ref();
    this.worker.postMessage('close');
    await exited;
    for (const p of this.pending.values()) {
      clearTimeout(p.timer);
      p.reject(new WriterClosed('the ledger writer closed before answering'));
    }
    this.pending.clear();
  }
}
