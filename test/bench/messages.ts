/**
 * What the benchmark's settlement process (run.ts) and its load generator (load.ts, a child
 * process on the other core) say to each other over the fork IPC channel.
 */

export interface LoadInit {
  t: 'init';
  brokerUrl: string;
  gateways: number;
  metersPerGateway: number;
  /** Makes gateway and meter ids unique per run, so a reused database never collides. */
  tag: string;
  /** What-if: TCP_NODELAY on the gateways' sockets too. */
}

/** One phase: what to pre-sign, and how to send it. */
export type PhaseSpec =
  | {
      mode: 'max';
      name: string;
      readingsPerEnvelope: number;
      /** Envelopes per gateway to pre-sign; the phase ends early (and says so) if they run out. */
      envelopesPerGateway: number;
      /** Timed window; Infinity = until the pool is used up (warm-up/calibration). */
      seconds: number;
      /** Unacknowledged envelopes per gateway, at most. */
      window: number;
    }
  | {
      mode: 'paced';
      name: string;
      readingsPerEnvelope: number;
      /** Envelopes per second over all gateways, evenly spaced (open loop). */
      envelopesPerSecond: number;
      seconds: number;
    };

export type ToLoad = LoadInit | { t: 'prepare'; spec: PhaseSpec } | { t: 'run' } | { t: 'stop' };

export interface LatencySummary {
  count: number;
  p50: number;
  p95: number;
  p99: number;
  max: number;
}

export interface PhaseResult {
  name: string;
  mode: 'max' | 'paced';
  readingsPerEnvelope: number;
  /** Envelopes and readings published in the phase (all of which must be acked). */
  sentEnvelopes: number;
  sentReadings: number;
  /** Acks with status accepted and the expected reading count. */
  acceptedEnvelopes: number;
  /** Anything else: rejections, duplicates, wrong counts, acks for unknown ids. */
  failures: string[];
  failureCount: number;
  /** The measured window, ms: the timed phase, or shorter when the pool ran out. */
  windowMs: number;
  poolExhausted: boolean;
  /** From the first publish to the last ack, drain included. */
  totalMs: number;
  /** Acked within the window. */
  windowEnvelopes: number;
  windowReadings: number;
  /** Publish → ack, ms (paced: from the scheduled send time). */
  latency: LatencySummary;
  /** Paced only: publish call → ack, ms, and how far sends fell behind the schedule. */
  latencyFromPublish?: LatencySummary;
  maxScheduleLagMs?: number;
  /** Load generator CPU over the phase, as a fraction of one core. */
  cpu: number;
  drainMs: number;
}

export type FromLoad =
  | { t: 'keys'; gateways: Array<{ id: string; publicKeyPem: string; meters: string[] }> }
  | { t: 'prepared'; envelopes: number; readings: number; ms: number }
  | { t: 'result'; result: PhaseResult }
  | { t: 'error'; message: string };
