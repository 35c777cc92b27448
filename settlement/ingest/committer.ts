import type { CommitOutcome, Ledger, VerifiedEnvelope } from '../ledger/ledger.ts';

/**
 * Groups envelopes that arrive close together into one ledger transaction: whatever queued
 * while the previous commit ran goes into the next one. Each caller gets its own outcome,
 * after the commit, so acks never run ahead of the ledger.
 */
export class BatchCommitter {
  private queue: Array<{ env: VerifiedEnvelope; resolve: (o: CommitOutcome) => void; reject: (e: unknown) => void }> = [];
  private running: Promise<void> | null = null;

  constructor(
    private readonly ledger: Ledger,
    private readonly maxBatch: number,
    private readonly onBatch?: (size: number) => void,
  ) {}

  commit(env: VerifiedEnvelope): Promise<CommitOutcome> {
    return new Promise((resolve, reject) => {
      this.queue.push({ env, resolve, reject });
      // setImmediate lets every message already read from the socket join this batch.
      if (!this.running) this.running = new Promise((done) => setImmediate(() => void this.drain().then(done)));
    });
  }

  /** Resolves once everything queued so far is committed. */
  async flush(): Promise<void> {
    while (this.running) await this.running;
  }

  private async drain(): Promise<void> {
    while (this.queue.length > 0) {
      const batch = this.queue.splice(0, this.maxBatch);
      try {
        const outcomes = await this.ledger.commitEnvelopes(batch.map((b) => b.env));
        this.onBatch?.(batch.length);
        batch.forEach((b, i) => b.resolve(outcomes[i]!));
      } catch (e) {
        batch.forEach((b) => b.reject(e));
      }
    }
    this.running = null;
  }
}
