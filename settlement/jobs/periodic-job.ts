import { performance } from 'node:perf_hooks';
import type { Logger } from 'pino';
import type { Ledger } from '../ledger/ledger.ts';

/** Where a job stands, for readiness (api/routes/health.ts). */
export interface JobHealth {
  name: string;
  /** Started and not stopped: the job runs in this process. */
  started: boolean;
  everyMs: number;
  /** On the job's clock (the demo's runs faster than real time). */
  lastSuccessAtMs: number | null;
  /** Whether the last finished run failed. */
  failing: boolean;
  /** The latest failure, kept after a later success. */
  lastError: string | null;
  /** Real ms since the last success, or since the start when none yet; null when not started. */
  sinceSuccessMs: number | null;
}

/**
 * A settlement job that runs every `everyMs` under the ledger's advisory lock named `name`, so
 * that of several workers sharing a ledger one runs it at a time (ledger.withAdvisoryLock). No
 * work in the constructor; `start()` and `stop()` own the timer; `runOnce()` runs it now (the
 * timer's runs and tests use it), skipped when a run is still going.
 */
export class PeriodicJob<T> {
  private timer?: NodeJS.Timeout;
  private running: Promise<T | undefined> | null = null;
  lastSuccessAtMs: number | null = null;
  lastError: string | null = null;
  // Real-clock (monotonic) marks for staleness, whatever the job's clock does.
  private startedAt: number | null = null;
  private lastSuccessAt: number | null = null;
  private latestError: string | null = null;

  constructor(
    readonly name: string,
    private readonly opts: { ledger: Ledger; everyMs: number; log: Logger; run: () => Promise<T>; now?: () => number },
  ) {}

  start(): void {
    this.startedAt = performance.now();
    this.timer = setInterval(() => void this.runOnce(), this.opts.everyMs);
    this.timer.unref();
  }

  runOnce(): Promise<T | undefined> {
    if (this.running) return this.running;
    this.running = this.opts.ledger
      .withAdvisoryLock(this.name, this.opts.run)
      .then(
        (r) => {
          this.lastSuccessAtMs = (this.opts.now ?? Date.now)();
          this.lastSuccessAt = performance.now();
          this.lastError = null;
          return r;
        },
        (e: unknown) => {
          this.lastError = (e as Error).message;
          this.latestError = this.lastError;
          this.opts.log.error({ job: this.name, err: e }, 'settlement job failed; it runs again at its next time');
          return undefined;
        },
      )
      .finally(() => {
        this.running = null;
      });
    return this.running;
  }

  health(): JobHealth {
    const since = this.lastSuccessAt ?? this.startedAt;
    return {
      name: this.name,
      started: this.startedAt !== null,
      everyMs: this.opts.everyMs,
      lastSuccessAtMs: this.lastSuccessAtMs,
      failing: this.lastError !== null,
      lastError: this.latestError,
      sinceSuccessMs: this.startedAt === null || since === null ? null : performance.now() - since,
    };
  }

  async stop(): Promise<void> {
    this.startedAt = null;
    clearInterval(this.timer);
    await this.running;
  }
}
