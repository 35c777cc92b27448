import type { Logger } from 'pino';
import { isRetryable, topics, type Ack, type RejectReason, type Rejection } from '../../protocol/index.ts';
import { performance } from 'node:perf_hooks';
import type { SettlementMetrics } from '../metrics.ts';
import type { RejectionRecorder } from './rejection-recorder.ts';
import type { SinkReading, SinkRejection } from '../timeseries/influx-sink.ts';

/** Where verified readings and rejections go besides the ledger (InfluxDB); never awaited. */
export interface TimeSeries {
  readingsVerified(readings: SinkReading[]): void;
  rejection(r: SinkRejection): void;
}
import type { BatchCommitter } from './committer.ts';
import type { EnvelopeVerifier } from './verify.ts';
import type { VerifiedEnvelope } from '../ledger/ledger.ts';

/** What the operator's status line and /metrics show about intake. */
export interface IngestStats {
  envelopesAccepted: number;
  readingsVerified: number;
  duplicates: number;
  rejected: Partial<Record<RejectReason, number>>;
}

/** One refused message, as recorded and answered. */
interface Refusal {
  topic: string;
  payload: Buffer;
  gateway: string | null;
  envelopeId: Rejection['id'];
  reason: RejectReason;
  detail: string;
  receivedAtMs: number;
}

export interface Publisher {
  publish(topic: string, payload: string): Promise<void>;
}

/** How much intake may hold between receipt and commit outcome before it pushes back. */
export interface IntakeLimits {
  maxEnvelopes: number;
  maxBytes: number;
}

/**
 * Handles one message on a gateway's readings topic: verify, commit, then ack or reject.
 * Every refusal is counted (and sampled) by the RejectionRecorder; nothing of it reaches the
 * readings.
 *
 * Intake is bounded: while more than `limits` envelopes (or bytes) are between receipt and their
 * commit outcome, `accept` returns a promise that the bus waits on before it takes the next
 * message of that source (bus.ts), so a flood slows its sender instead of growing memory.
 * Capacity is given back as soon as an envelope's outcome is known, before its ack is published:
 * the ack travels through the same broker whose deliveries the bus may be holding.
 */
export class ReadingsHandler {
  readonly stats: IngestStats = { envelopesAccepted: 0, readingsVerified: 0, duplicates: 0, rejected: {} };
  private queued = 0;
  private queuedBytes = 0;
  private readonly waiting: Array<() => void> = [];

  constructor(
    private readonly deps: {
      verifier: EnvelopeVerifier;
      committer: BatchCommitter;
      recorder: RejectionRecorder;
      publisher: Publisher;
      log: Logger;
      now: () => number;
      limits?: IntakeLimits;
      metrics?: SettlementMetrics;
      timeseries?: TimeSeries;
      /** The readings of each envelope once committed (live events); must return at once. */
      committed?: (readings: VerifiedEnvelope['readings']) => void;
    },
  ) {}

  /** Envelopes between receipt and commit outcome (read on every message: no allocation). */
  get queuedEnvelopes(): number {
    return this.queued;
  }

  /** Envelopes and bytes between receipt and commit outcome. */
  queue(): { envelopes: number; bytes: number } {
    return { envelopes: this.queued, bytes: this.queuedBytes };
  }

  /**
   * Starts handling a message; `done` resolves when it is answered. Returns a promise when
   * intake is over its limits, which resolves once there is room again (see the class comment).
   */
  accept(topic: string, payload: Buffer, done?: (p: Promise<void>) => void): Promise<void> | undefined {
    const p = this.handle(topic, payload);
    done?.(p);
    const limits = this.deps.limits;
    if (!limits || (this.queued <= limits.maxEnvelopes && this.queuedBytes <= limits.maxBytes)) return undefined;
    return new Promise((resolve) => this.waiting.push(resolve));
  }

  async handle(topic: string, payload: Buffer): Promise<void> {
    const t0 = performance.now();
    this.queued++;
    this.queuedBytes += payload.length;
    let released = false;
    const release = () => {
      if (released) return;
      released = true;
      this.queued--;
      this.queuedBytes -= payload.length;
      const limits = this.deps.limits;
      while (this.waiting.length > 0 && (!limits || (this.queued <= limits.maxEnvelopes && this.queuedBytes <= limits.maxBytes))) this.waiting.shift()!();
    };
    try {
      await this.process(topic, payload, release);
    } finally {
      release();
      this.deps.metrics?.ingestLatency.observe((performance.now() - t0) / 1000);
    }
  }

  /** The last envelope of each topic (gateway) still between receipt and commit queue. */
  private readonly tails = new Map<string, Promise<unknown>>();

  /**
   * Envelopes are verified concurrently (signatures on the thread pool), but each gateway's
   * reach the commit queue in the order they arrived: `work` resolves no earlier than the
   * previous envelope of the same topic, and the caller queues its commit synchronously on
   * resumption, before the next one's turn can resolve.
   */
  private inArrivalOrder<T>(topic: string, work: Promise<T>): Promise<T> {
    const prev = this.tails.get(topic);
    const turn = prev ? prev.then(() => work, () => work) : work;
    this.tails.set(topic, turn);
    const forget = () => {
      if (this.tails.get(topic) === turn) this.tails.delete(topic);
    };
    turn.then(forget, forget);
    return turn;
  }

  private async process(topic: string, payload: Buffer, release: () => void): Promise<void> {
    const { verifier, committer, publisher, log } = this.deps;
    const started = this.deps.now();
    const verdict = await this.inArrivalOrder(topic, verifier.verify(topic, payload));
    if (!verdict.ok) {
      release();
      await this.reject({ topic, payload, gateway: verdict.gateway, envelopeId: verdict.envelopeId, reason: verdict.reason, detail: verdict.detail, receivedAtMs: started });
      return;
    }
    const env = verdict.envelope;
    const outcome = await committer.commit(env);
    release();
    switch (outcome.status) {
      case 'accepted': {
        this.stats.envelopesAccepted++;
        this.stats.readingsVerified += outcome.inserted;
        this.deps.metrics?.readingsVerified.inc(outcome.inserted);
        this.deps.committed?.(env.readings);
        this.deps.timeseries?.readingsVerified(
          env.readings.map((r) => ({
            meter: r.meter,
            gateway: env.gateway,
            tsMs: Date.parse(r.ts),
            importWh: r.importWh,
            exportWh: r.exportWh,
            powerW: r.powerW,
            voltageMilliV: r.voltageMilliV,
            currentMilliA: r.currentMilliA,
            frequencyMilliHz: r.frequencyMilliHz,
          })),
        );
        const ack: Ack = { v: 1, id: env.id, status: 'accepted', readings: outcome.inserted };
        await publisher.publish(topics.ack(env.gateway), JSON.stringify(ack));
        log.debug({ gateway: env.gateway, envelope: env.id, readings: outcome.inserted }, 'envelope committed');
        return;
      }
      case 'duplicate': {
        // A resend after a lost ack: recorded, and acked so the gateway can drop it.
        this.stats.duplicates++;
        const detail = `envelope ${env.id} is already in the ledger`;
        this.record({ topic, payload, gateway: env.gateway, envelopeId: env.id, reason: 'duplicate', detail, receivedAtMs: started });
        const ack: Ack = { v: 1, id: env.id, status: 'duplicate', readings: outcome.readings };
        await publisher.publish(topics.ack(env.gateway), JSON.stringify(ack));
        return;
      }
      case 'rejected':
        await this.reject({ topic, payload, gateway: env.gateway, envelopeId: env.id, reason: outcome.reason, detail: outcome.detail, receivedAtMs: started });
        return;
    }
  }

  private record(r: Refusal): void {
    const { topic, payload, gateway, envelopeId, reason, detail, receivedAtMs } = r;
    this.stats.rejected[reason] = (this.stats.rejected[reason] ?? 0) + 1;
    this.deps.metrics?.envelopesRejected.inc({ reason });
    this.deps.timeseries?.rejection({ tsMs: receivedAtMs, gateway, reason, bytes: payload.length });
    const sampled = this.deps.recorder.record({ receivedAtMs, topic, gateway, envelopeId, reason, detail, payload });
    // A resend after a lost ack is routine; every other refusal is worth an operator's
    // attention, at the rate its payload is sampled (a flood is summed up by the recorder).
    const level = sampled ? 'warn' : 'debug';
    this.deps.log[level]({ topic, gateway, envelope: envelopeId, reason, detail, bytes: payload.length }, 'envelope rejected');
  }

  private async reject(r: Refusal): Promise<void> {
    this.record(r);
    if (r.gateway) {
      const msg: Rejection = { v: 1, id: r.envelopeId, reason: r.reason, detail: r.detail, retryable: isRetryable(r.reason) };
      await this.deps.publisher.publish(topics.reject(r.gateway), JSON.stringify(msg));
    }
  }
}
