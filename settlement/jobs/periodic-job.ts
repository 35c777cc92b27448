import type { Logger } from 'pino';
import type { Ledger } from '../ledger/ledger.ts';

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

  constructor(
    readonly name: string,
    private readonly opts: { ledger: Ledger; everyMs: number; log: Logger; run: () => Promise<T>; now?: () => number },
  ) {}

  start(): void {
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
          this.lastError = null;
          return r;
        },
        (e: unknown) => {
          this.lastError = (e as Error).message;
          this.opts.log.error({ job: this.name, err: e }, 'settlement job failed; it runs again at its next time');
          return undefined;
        },
      )
      .finally(() => {
        this.running = null;
      });
    return this.running;
  }

  async stop(): Promise<void> {
    clearInterval(this.timer);
    await this.running;
  }
}
