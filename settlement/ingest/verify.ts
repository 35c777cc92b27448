import type { KeyObject } from 'node:crypto';
import {
  EnvelopeFormatError,
  asEnvelope,
  envelopeIdOf,
  parseGatewayTopic,
  isCanonicalPayload,
  signedBytesOfValidEnvelope,
  verifySignatureAsync,
  type EnvelopeId,
  type RejectReason,
} from '../../protocol/index.ts';
import { verifiedReading, type MeterContext, type VerifiedEnvelope } from '../ledger/ledger.ts';

/**
 * Everything that can be decided about an envelope before touching the ledger: size, JSON,
 * schema, topic, gateway registration, signature, timestamps. Chain and seq are decided at
 * commit, inside the ledger transaction, because they depend on what is stored.
 */
export interface GatewayKey {
  status: 'pending' | 'active' | 'revoked';
  key: KeyObject;
}

/** An enrolled meter: which gateway may report it, and what its commit needs. */
export interface EnrolledMeter {
  gateway: string;
  context: MeterContext;
  /**
   * When this gateway took the meter over from a revoked one: its first seq. Lower seqs belong
   * to the old gateway's chain, so this one may not fill them (registry/handovers.ts).
   */
  fromSeq?: number;
}

export interface VerifierOptions {
  gatewayKey: (gatewayId: string) => Promise<GatewayKey | undefined>;
  meter: (meterId: string) => Promise<EnrolledMeter | undefined>;
  now: () => number;
  maxPayloadBytes: number;
  maxClockSkewMs: number;
  /** Readings older than this are refused ([ingest] max_backfill_days). */
  maxBackfillMs: number;
}

export type Verdict =
  | { ok: true; envelope: VerifiedEnvelope }
  | { ok: false; reason: RejectReason; detail: string; gateway: string | null; envelopeId: EnvelopeId | null };

export class EnvelopeVerifier {
  constructor(private readonly opts: VerifierOptions) {}

  async verify(topic: string, payload: Buffer): Promise<Verdict> {
    const topicGateway = parseGatewayTopic(topic)?.gateway ?? null;
    const fail = (reason: RejectReason, detail: string, envelopeId: EnvelopeId | null = null): Verdict => ({
      ok: false,
      reason,
      detail,
      gateway: topicGateway,
      envelopeId,
    });

    if (payload.length > this.opts.maxPayloadBytes) {
      return fail('too_large', `payload of ${payload.length} bytes exceeds the limit of ${this.opts.maxPayloadBytes}`);
    }
    const raw = payload.toString('utf8');
    let parsed: unknown;
    try {
      parsed = JSON.parse(raw);
    } catch (e) {
      return fail('invalid_json', (e as Error).message);
    }
    let env;
    try {
      env = asEnvelope(parsed);
    } catch (e) {
      if (e instanceof EnvelopeFormatError) return fail('schema', e.message);
      throw e;
    }
    // The schema passed, so the signed bytes can be written directly (see the function).
    const { text, bytes, hashes } = signedBytesOfValidEnvelope(env);
    const id = envelopeIdOf(bytes);
    // Only the canonical form is accepted, so that the archive (the signed bytes) and the
    // payload say the same: no whitespace, key order, number spelling or duplicate key of
    // another parser's reading can differ from what was signed.
    if (!isCanonicalPayload(payload, bytes, env.sig)) {
      return fail('non_canonical', 'payload is not the RFC 8785 canonical form of the envelope (sig included): send exactly those bytes', id);
    }
    if (env.gateway !== topicGateway) {
      return fail('topic_mismatch', `envelope of gateway ${env.gateway} published on ${topic}`, id);
    }
    const gk = await this.opts.gatewayKey(env.gateway);
    if (!gk) return fail('unknown_gateway', `gateway ${env.gateway} is not registered`, id);
    if (gk.status === 'revoked') return fail('gateway_revoked', `gateway ${env.gateway} is revoked`, id);
    if (gk.status === 'pending') return fail('gateway_pending', `gateway ${env.gateway} is enrolled but not yet active`, id);
    if (!(await verifySignatureAsync(bytes, env.sig, gk.key))) {
      return fail('bad_signature', `signature does not verify with the registered key of ${env.gateway}`, id);
    }
    const now = this.opts.now();
    const limit = now + this.opts.maxClockSkewMs;
    const oldest = now - this.opts.maxBackfillMs;
    for (const r of env.readings) {
      const ts = Date.parse(r.ts);
      if (ts > limit) {
        return fail('future_timestamp', `meter ${r.meter} seq ${r.seq}: ${r.ts} is ahead of settlement time by more than ${this.opts.maxClockSkewMs / 1000} s`, id);
      }
      // A gateway without a battery clock stamps 1970 at boot; and no reading may cost the
      // commit more than the backfill window's worth of intervals.
      if (ts < oldest) {
        return fail('too_old', `meter ${r.meter} seq ${r.seq}: ${r.ts} is older than the ${Math.round(this.opts.maxBackfillMs / 86_400_000)}-day backfill window (gateway clock wrong?)`, id);
      }
    }
    const meters = new Map<string, EnrolledMeter>();
    for (const r of env.readings) {
      let m = meters.get(r.meter);
      if (!m) {
        m = await this.opts.meter(r.meter);
        if (!m) return fail('unknown_meter', `meter ${r.meter} is not enrolled`, id);
        if (m.gateway !== env.gateway) return fail('unknown_meter', `meter ${r.meter} is enrolled by gateway ${m.gateway}, not ${env.gateway}`, id);
        meters.set(r.meter, m);
      }
      if (m.fromSeq !== undefined && r.seq < m.fromSeq) {
        return fail('seq_regression', `meter ${r.meter} seq ${r.seq}: gateway ${env.gateway} took this meter over at seq ${m.fromSeq}; earlier seqs belong to the gateway it replaced`, id);
      }
    }
    return {
      ok: true,
      envelope: {
        id,
        gateway: env.gateway,
        signed: text,
        sig: env.sig,
        readings: env.readings.map((r, i) => verifiedReading(r, hashes[i]!, meters.get(r.meter)!.context)),
        receivedAtMs: this.opts.now(),
      },
    };
  }
}
