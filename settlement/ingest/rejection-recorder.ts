import type { Logger } from 'pino';
import { sha256Hex, type RejectReason } from '../../protocol/index.ts';
import type { RejectionBatch, RejectionRecord, RejectionSample } from '../ledger/ledger.ts';

/**
 * Keeps what the ledger holds of refusals bounded, whatever a flood looks like. Every refusal is
 * counted per gateway, reason and hour; payloads are kept only as samples: per gateway and
 * reason a burst of SAMPLE_BURST, then one per SAMPLE_EVERY_MS, and at most `samplesPerMinute`
 * over all, each cut to `sampleBytes`. `duplicate` (a resend after a lost ack) is counted and
 * never sampled. Counts and samples are written in batches through the ledger writer, never one
 * write per message, so refusals cannot hold up commits (nor, on SQLite, lock the file under them).
 */
export interface RejectionRecorderOptions {
  write: (batch: RejectionBatch) => Promise<void>;
  now: () => number;
  log: Logger;
  samplesPerMinute: number;
  sampleBytes: number;
  /** How often counts and samples go to the ledger. */
  flushEveryMs?: number;
}

const SAMPLE_BURST = 3;
const SAMPLE_EVERY_MS = 60_000;
/** Distinct (gateway, reason) sample limiters kept; past this they start over (anyone can invent topic names). */
const MAX_LIMITERS = 10_000;
/** Distinct count rows held between flushes before a flush is forced. */
const MAX_PENDING_COUNTS = 10_000;
/** Samples held while the ledger cannot be written (counts are always kept). */
const MAX_PENDING_SAMPLES = 1_000;
const HOUR_MS = 3_600_000;

export class RejectionRecorder {
  private counts = new Map<string, { gateway: string; reason: RejectReason; hourMs: number; count: number }>();
  private samples: RejectionSample[] = [];
  private readonly limiters = new Map<string, { tokens: number; at: number }>();
  private minute = { start: 0, used: 0 };
  private timer?: NodeJS.Timeout;
  private flushing: Promise<void> | null = null;
  /** Samples dropped by the rate limits, since start (a metric). */
  samplesDropped = 0;

  constructor(private readonly opts: RejectionRecorderOptions) {}

  start(): void {
    this.timer = setInterval(() => void this.flush(), this.opts.flushEveryMs ?? 1000);
    this.timer.unref();
  }

  /**
   * Counts a refusal and keeps its payload if the sample limits allow (true then: the caller
   * logs sampled refusals at warn and the rest at debug, so a flood cannot fill the log either).
   * Never waits on the ledger.
   */
  record(r: RejectionRecord): boolean {
    const gateway = r.gateway ?? '';
    const hourMs = r.receivedAtMs - (r.receivedAtMs % HOUR_MS);
    const key = `${gateway}\n${r.reason}\n${hourMs}`;
    const c = this.counts.get(key);
    if (c) c.count++;
    else this.counts.set(key, { gateway, reason: r.reason, hourMs, count: 1 });
    let sampled = false;
    if (r.reason !== 'duplicate') {
      sampled = this.mayKeepSample(`${gateway}\n${r.reason}`);
      if (sampled) {
        this.samples.push({
          ...r,
          payload: Buffer.from(r.payload.subarray(0, this.opts.sampleBytes)),
          payloadBytes: r.payload.length,
          payloadSha256: sha256Hex(r.payload),
        });
      }
      else {
        this.samplesDropped++;
        this.unsampledSinceFlush++;
      }
    }
    if (this.counts.size >= MAX_PENDING_COUNTS) void this.flush();
    return sampled;
  }

  private unsampledSinceFlush = 0;

  private mayKeepSample(key: string): boolean {
    const now = this.opts.now();
    if (now - this.minute.start >= 60_000) this.minute = { start: now, used: 0 };
    if (this.minute.used >= this.opts.samplesPerMinute) return false;
    let l = this.limiters.get(key);
    if (!l) {
      if (this.limiters.size >= MAX_LIMITERS) this.limiters.clear();
      this.limiters.set(key, (l = { tokens: SAMPLE_BURST, at: now }));
    } else {
      l.tokens = Math.min(SAMPLE_BURST, l.tokens + (now - l.at) / SAMPLE_EVERY_MS);
      l.at = now;
    }
    if (l.tokens < 1) return false;
    l.tokens--;
    this.minute.used++;
    return true;
  }

  /** Writes what was recorded so far; resolves when it is in the ledger (or kept for the next try). */
  flush(): Promise<void> {
    if (this.flushing) return this.flushing.then(() => this.flush());
    if (this.counts.size === 0 && this.samples.length === 0) return Promise.resolve();
    const counts = [...this.counts.values()];
    const samples = this.samples;
    if (this.unsampledSinceFlush > 0) {
      this.opts.log.warn({ rejections: this.unsampledSinceFlush }, 'more envelopes rejected than samples are kept for: counted, payloads not kept');
      this.unsampledSinceFlush = 0;
    }
    this.counts = new Map();
    this.samples = [];
    this.flushing = this.opts
      .write({ counts, samples })
      .catch((e: unknown) => {
        // Kept for the next flush: counts merged back, samples as room allows.
        for (const c of counts) {
          const key = `${c.gateway}\n${c.reason}\n${c.hourMs}`;
          const cur = this.counts.get(key);
          if (cur) cur.count += c.count;
          else this.counts.set(key, c);
        }
        const room = Math.max(0, MAX_PENDING_SAMPLES - this.samples.length);
        this.samplesDropped += Math.max(0, samples.length - room);
        this.samples.unshift(...samples.slice(0, room));
        this.opts.log.error({ err: e, counts: counts.length, samples: samples.length }, 'could not record rejections in the ledger; kept for the next try');
      })
      .finally(() => {
        this.flushing = null;
      });
    return this.flushing;
  }

  async stop(): Promise<void> {
    clearInterval(this.timer);
    await this.flush();
  }
}
