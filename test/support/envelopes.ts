import type { KeyObject } from 'node:crypto';
import {
  GENESIS_PREV,
  envelopeIdOf,
  gatewayId,
  generateGatewayKeyPair,
  loadPrivateKey,
  meterId,
  readingHash,
  signEnvelope,
  signedBytes,
  type Envelope,
  type Reading,
} from '../../protocol/index.ts';
import type { MeterContext, VerifiedEnvelope } from '../../settlement/ledger/ledger.ts';

/**
 * A signed envelope as settlement/ingest/verify.ts hands it to the ledger once signature,
 * schema, clock and meters have passed; `context` is each meter's registry view.
 */
export function verifiedEnvelope(
  env: Envelope,
  context: MeterContext | ((meter: string) => MeterContext),
  receivedAtMs = Date.now(),
): VerifiedEnvelope {
  return {
    id: envelopeIdOf(signedBytes(env)),
    gateway: env.gateway,
    signed: signedBytes(env).toString('utf8'),
    sig: env.sig,
    readings: env.readings.map((r) => ({ ...r, hash: readingHash(r), context: typeof context === 'function' ? context(r.meter) : context })),
    receivedAtMs,
  };
}

/** Builds correctly chained, signed envelopes for a test gateway, one meter at a time. */
export class EnvelopeFactory {
  readonly publicKeyPem: string;
  private readonly key: KeyObject;
  private readonly heads = new Map<string, { seq: number; hash: string; importWh: number; tsMs: number }>();

  constructor(readonly gateway: string) {
    const pair = generateGatewayKeyPair();
    this.publicKeyPem = pair.publicKeyPem;
    this.key = loadPrivateKey(pair.privateKeyPem);
  }

  /**
   * The next reading of `meter` (not yet committed to the chain until `advance`). Unless `at`
   * says otherwise, a meter's first reading is a day old and each next one 10 s later, like a
   * real meter's (10 Wh per 10 s is 3.6 kW, within any test meter's rated power).
   */
  nextReading(meter: string, overrides: Partial<Reading> = {}, at?: number): Reading {
    const head = this.heads.get(meter);
    const tsMs = at ?? (head ? head.tsMs + 10_000 : Date.now() - 86_400_000);
    return {
      meter: meterId(meter),
      seq: (head?.seq ?? 0) + 1,
      ts: new Date(tsMs).toISOString(),
      importWh: (head?.importWh ?? 1000) + 10,
      exportWh: 0,
      powerW: 600,
      prev: head?.hash ?? GENESIS_PREV,
      ...overrides,
    };
  }

  /** Records `r` as the head of its meter's chain. */
  advance(r: Reading): void {
    this.heads.set(r.meter, { seq: r.seq, hash: readingHash(r), importWh: r.importWh, tsMs: Date.parse(r.ts) });
  }

  sign(readings: Reading[], gateway = this.gateway): Envelope {
    return signEnvelope({ v: 1, gateway: gatewayId(gateway), readings }, this.key);
  }

  /** A valid envelope with the next `n` readings of `meter`, advancing the chain. */
  next(meter: string, n = 1): Envelope {
    const rs: Reading[] = [];
    for (let i = 0; i < n; i++) {
      const r = this.nextReading(meter);
      this.advance(r);
      rs.push(r);
    }
    return this.sign(rs);
  }
}
