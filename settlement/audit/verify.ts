import { createHash, type KeyObject } from 'node:crypto';
import {
  GENESIS_PREV,
  asUnsignedEnvelope,
  envelopeIdOf,
  loadPublicKey,
  readingHash,
  verifySignature,
  type UnsignedEnvelope,
  type EnvelopeId,
  type Reading,
} from '../../protocol/index.ts';
import { spanProblem, type ChainLimits, type ChainReading, type ChainRejectReason } from '../chain/rules.ts';
import type { GatewayStatus, Ledger, StoredEnvelope, StoredReading } from '../ledger/ledger.ts';
import { HandoverStore, type Handover } from '../registry/handovers.ts';

/**
 * Re-verifies one meter from the ledger alone: every stored envelope holding a reading of the
 * meter is re-parsed from its raw payload and its Ed25519 signature checked against the
 * gateway's registered key (once per envelope), every stored reading row is compared with the
 * reading inside its signed envelope, and the meter's hash chain is walked over the stored rows.
 * Between each stored reading and the nearest stored one on each side, gap or no gap, the
 * commit's own rules (chain/rules.ts) are applied again: time forward, counters never down,
 * energy within rated power. Readings around a gateway hand-over must be signed by the gateway
 * that held the meter at that seq. Missing seqs are gaps (reported, not failures): the ledger
 * accepts out-of-order fills.
 */

/** The commit's span rules that describe stored data; `span_too_long` bounds intake only. */
export type ChainRuleKind = Extract<ChainRejectReason, 'time_regression' | 'counter_regression' | 'exceeds_rated_power'>;

export type AuditFailureKind =
  | 'bad_signature'
  | 'unknown_gateway'
  | 'row_mismatch'
  | 'hash_mismatch'
  | 'broken_chain'
  | 'unparseable'
  | ChainRuleKind
  | 'handover_mismatch';

export interface AuditFailure {
  kind: AuditFailureKind;
  envelopeId?: EnvelopeId;
  seq?: number;
  /** The stored neighbour `seq` was checked against (broken_chain and the chain rules): the nearest lower stored seq. */
  neighbourSeq?: number;
  detail: string;
}

/** How the chain rules were applied. */
export interface ChainRulesSummary {
  /** Pairs of neighbouring stored readings checked (the nearest stored reading on each side of a reading in range). */
  pairsChecked: number;
  /** Of those, pairs across missing seqs: rules checked, no hash link to check. */
  acrossGaps: number;
  /** Rated power (W, from the registry) the energy check used; null: the check was skipped. */
  ratedPowerW: number | null;
  /** Checks not made, each with why. */
  skipped: string[];
}

/** A recorded hand-over of the meter from a revoked gateway to its replacement. */
export interface AuditedHandover {
  oldGateway: string;
  newGateway: string;
  /** The first seq the new gateway signs; every lower seq belongs to the old one. */
  fromSeq: number;
  /** When it was recorded (the new gateway's enrollment), ISO-8601. */
  at: string;
}

export interface SeqGap {
  fromSeq: number;
  /** Inclusive. */
  toSeq: number;
  /**
   * How many of the missing seqs are still present, signed, in an envelope the ledger holds:
   * their readings rows were removed after commit (commits are all-or-nothing per envelope).
   */
  signedInLedger: number;
}

export interface AuditedGateway {
  id: string;
  /** Registry status; `unregistered` when the ledger has no key for it. Revocation does not stop verification. */
  status: GatewayStatus | 'unregistered';
  /** SHA-256 (hex) of the registered key's SPKI DER; null when unregistered or unreadable. */
  keyFingerprint: string | null;
  envelopes: number;
}

export interface EnergySummary {
  /** Counter values of the first and last reading in range (stored rows), and their differences. */
  firstImportWh: number;
  lastImportWh: number;
  importWh: number;
  firstExportWh: number;
  lastExportWh: number;
  exportWh: number;
}

export interface MeterAuditReport {
  meter: string;
  /** Reading timestamps in range: from ≤ ts < to; null = unbounded. */
  range: { from: string | null; to: string | null };
  envelopesChecked: number;
  readingsChecked: number;
  /** Every stored reading of the meter, in range or not; 0 means the ledger does not know the meter. */
  readingsInLedger: number;
  firstSeq: number | null;
  lastSeq: number | null;
  firstTs: string | null;
  lastTs: string | null;
  gaps: SeqGap[];
  failures: AuditFailure[];
  energy: EnergySummary | null;
  gateways: AuditedGateway[];
  chainRules: ChainRulesSummary;
  /** Every recorded hand-over of the meter, in seq order (whatever the range). */
  handovers: AuditedHandover[];
  ok: boolean;
}

export interface VerifyMeterOptions {
  /** Inclusive lower bound on reading ts, ms epoch. */
  fromMs?: number;
  /** Exclusive upper bound on reading ts, ms epoch. */
  toMs?: number;
  onProgress?: (done: number, total: number) => void;
}

/** SHA-256 (hex) of a public key's SPKI DER: `openssl pkey -pubin -in KEY.pem -outform DER | openssl dgst -sha256`. */
export function keyFingerprint(key: KeyObject): string {
  return createHash('sha256').update(key.export({ type: 'spki', format: 'der' })).digest('hex');
}

interface GatewayKeyEntry {
  id: string;
  status: AuditedGateway['status'];
  key: KeyObject | null;
  fingerprint: string | null;
  /** Why there is no usable key. */
  problem: string | null;
  envelopes: number;
}

/** One stored envelope, parsed, with its readings of the audited meter indexed by seq. */
interface ParsedEnvelope {
  stored: StoredEnvelope;
  env: UnsignedEnvelope | null;
  parseError: string | null;
  meterReadings: Map<number, Reading>;
}

type EnvelopeVerdict =
  /** Signed content can be trusted and compared with the rows. */
  | 'authentic'
  /** Parsed, but no key to check it with: rows are still compared with it. */
  | 'unverifiable'
  /** Unparseable or signature fails: its content says nothing, rows are not compared with it. */
  | 'untrusted';

const COMPARED_FIELDS = [
  'meter',
  'seq',
  'ts',
  'importWh',
  'exportWh',
  'powerW',
  'prev',
  'voltageMilliV',
  'currentMilliA',
  'frequencyMilliHz',
] as const satisfies ReadonlyArray<keyof Reading>;

export async function verifyMeter(ledger: Ledger, meter: string, opts: VerifyMeterOptions = {}): Promise<MeterAuditReport> {
  const fromMs = opts.fromMs ?? -Infinity;
  const toMs = opts.toMs ?? Infinity;
  const inRange = (iso: string): boolean => {
    const ms = Date.parse(iso);
    return ms >= fromMs && ms < toMs;
  };
  const failures: AuditFailure[] = [];

  // The interface does not promise an order; the gap and chain walks need seq order.
  const rows = (await ledger.readings(meter)).slice().sort((a, b) => a.seq - b.seq);
  const storedEnvelopes = await ledger.envelopesWithMeter(meter);

  // 1. Parse every envelope (cheap) so the range can be judged on signed timestamps too:
  //    a row whose ts was edited out of the range must not escape the audit.
  const parsed = new Map<string, ParsedEnvelope>();
  for (const stored of storedEnvelopes) {
    const p: ParsedEnvelope = { stored, env: null, parseError: null, meterReadings: new Map() };
    try {
      p.env = asUnsignedEnvelope(JSON.parse(stored.signed));
      for (const r of p.env.readings) if (r.meter === meter) p.meterReadings.set(r.seq, r);
    } catch (e) {
      p.parseError = e instanceof Error ? e.message : String(e);
    }
    parsed.set(stored.id, p);
  }

  // 2. Scope: rows whose stored or signed ts is in range, and the envelopes they (or signed
  //    in-range readings of the meter) belong to.
  const rowBySeq = new Map<number, StoredReading>();
  const firstRowSeqOf = new Map<string, number>();
  for (const r of rows) {
    rowBySeq.set(r.seq, r);
    if (!firstRowSeqOf.has(r.envelopeId)) firstRowSeqOf.set(r.envelopeId, r.seq);
  }
  const scopedRows: StoredReading[] = [];
  const scopedEnvelopeIds = new Set<string>();
  for (const r of rows) {
    const signed = parsed.get(r.envelopeId)?.meterReadings.get(r.seq);
    if (inRange(r.ts) || (signed !== undefined && inRange(signed.ts))) {
      scopedRows.push(r);
      scopedEnvelopeIds.add(r.envelopeId);
    }
  }
  for (const p of parsed.values()) {
    for (const r of p.meterReadings.values()) if (inRange(r.ts)) scopedEnvelopeIds.add(p.stored.id);
  }
  const scopedEnvelopes = storedEnvelopes.filter((e) => scopedEnvelopeIds.has(e.id));

  // 3. Signatures, once per envelope, with one key object per gateway.
  const gateways = new Map<string, GatewayKeyEntry>();
  const gatewayKey = async (id: string): Promise<GatewayKeyEntry> => {
    let entry = gateways.get(id);
    if (entry) return entry;
    const rec = await ledger.getGateway(id);
    entry = { id, status: rec?.status ?? 'unregistered', key: null, fingerprint: null, problem: null, envelopes: 0 };
    if (!rec) {
      entry.problem = `gateway ${id} is not in the registry`;
    } else {
      try {
        entry.key = loadPublicKey(rec.publicKeyPem);
        entry.fingerprint = keyFingerprint(entry.key);
      } catch (e) {
        entry.problem = `registered key of gateway ${id} is not a usable Ed25519 key (${(e as Error).message})`;
      }
    }
    gateways.set(id, entry);
    return entry;
  };

  const verdicts = new Map<string, EnvelopeVerdict>();
  const total = scopedEnvelopes.length;
  const step = Math.max(1, Math.floor(total / 200));
  for (const [i, stored] of scopedEnvelopes.entries()) {
    const p = parsed.get(stored.id)!;
    const firstSeq = minSeq(p) ?? firstRowSeqOf.get(stored.id);
    const at = (f: Omit<AuditFailure, 'envelopeId' | 'seq'>): void => {
      failures.push({ kind: f.kind, ...(firstSeq !== undefined ? { seq: firstSeq } : {}), envelopeId: stored.id, detail: f.detail });
    };
    if (!p.env) {
      (await gatewayKey(stored.gateway)).envelopes++;
      at({ kind: 'unparseable', detail: `stored payload is not a valid envelope: ${p.parseError ?? 'unknown error'}` });
      verdicts.set(stored.id, 'untrusted');
    } else {
      const env = p.env;
      const gw = await gatewayKey(env.gateway);
      gw.envelopes++;
      // Verified over the bytes as archived: exactly what the gateway signed.
      const bytes = Buffer.from(stored.signed, 'utf8');
      if (!gw.key) {
        at({ kind: 'unknown_gateway', detail: `${gw.problem ?? `no key for gateway ${env.gateway}`}: signature cannot be checked` });
        verdicts.set(stored.id, 'unverifiable');
      } else if (!verifySignature(bytes, stored.sig.toString('base64'), gw.key)) {
        at({
          kind: 'bad_signature',
          detail: `signature does not verify with the registered key of ${env.gateway} (sha256 ${gw.fingerprint}); its ${p.meterReadings.size} reading(s) of ${meter} cannot be checked against it`,
        });
        verdicts.set(stored.id, 'untrusted');
      } else {
        verdicts.set(stored.id, 'authentic');
        const id = envelopeIdOf(bytes);
        if (id !== stored.id) {
          at({ kind: 'hash_mismatch', detail: `stored envelope id ${stored.id} is not the SHA-256 of its signed bytes (${id})` });
        }
      }
      if (env.gateway !== stored.gateway) {
        at({ kind: 'row_mismatch', detail: `envelopes row names gateway ${stored.gateway}, the signed envelope ${env.gateway}` });
      }
    }
    const done = i + 1;
    if (done === total || done % step === 0) opts.onProgress?.(done, total);
  }
  if (total === 0) opts.onProgress?.(0, 0);

  // 4. Rows against their signed readings, and the chain over the stored rows.
  for (const row of scopedRows) {
    const p = parsed.get(row.envelopeId);
    const verdict = verdicts.get(row.envelopeId);
    if (!p) {
      failures.push({ kind: 'row_mismatch', seq: row.seq, envelopeId: row.envelopeId, detail: `its envelope ${row.envelopeId} is not in the ledger` });
    } else if (p.env && verdict !== 'untrusted') {
      const signed = p.meterReadings.get(row.seq);
      if (!signed) {
        failures.push({
          kind: 'row_mismatch',
          seq: row.seq,
          envelopeId: row.envelopeId,
          detail: `the signed envelope holds no reading of ${meter} with seq ${row.seq}`,
        });
      } else {
        const diffs = COMPARED_FIELDS.filter((k) => signed[k] !== row[k]).map((k) => `${k} stored ${show(row[k])}, signed ${show(signed[k])}`);
        if (row.gateway !== p.env.gateway) diffs.push(`gateway stored ${row.gateway}, signed ${p.env.gateway}`);
        if (diffs.length > 0) {
          failures.push({ kind: 'row_mismatch', seq: row.seq, envelopeId: row.envelopeId, detail: diffs.join('; ') });
        }
        const h = readingHash(signed);
        if (row.hash !== h) {
          failures.push({
            kind: 'hash_mismatch',
            seq: row.seq,
            envelopeId: row.envelopeId,
            detail: `stored hash ${row.hash} is not the hash of the signed reading (${h})`,
          });
        }
      }
    }

    if (row.seq === 1) {
      if (row.prev !== GENESIS_PREV) {
        failures.push({ kind: 'broken_chain', seq: 1, envelopeId: row.envelopeId, detail: 'seq 1 does not carry the genesis prev (64 zeros)' });
      }
    } else {
      const before = rowBySeq.get(row.seq - 1);
      if (before) {
        if (row.prev !== before.hash) {
          failures.push({
            kind: 'broken_chain',
            seq: row.seq,
            neighbourSeq: before.seq,
            envelopeId: row.envelopeId,
            detail: `prev ${row.prev} is not the stored hash of seq ${row.seq - 1} (${before.hash})`,
          });
        }
      } else if (row.prev === GENESIS_PREV) {
        failures.push({ kind: 'broken_chain', seq: row.seq, envelopeId: row.envelopeId, detail: `genesis prev at seq ${row.seq} (meter history restarted?)` });
      }
    }
  }

  // Other envelopes in scope that hold the same seq as a stored row (a re-batched resend) must
  // carry the same reading.
  for (const stored of scopedEnvelopes) {
    const p = parsed.get(stored.id)!;
    if (verdicts.get(stored.id) !== 'authentic') continue;
    for (const [seq, r] of p.meterReadings) {
      const row = rowBySeq.get(seq);
      if (row && row.envelopeId !== stored.id && row.hash !== readingHash(r)) {
        failures.push({
          kind: 'hash_mismatch',
          seq,
          envelopeId: stored.id,
          detail: `this envelope also holds seq ${seq}, with other content than the stored row (from envelope ${row.envelopeId})`,
        });
      }
    }
  }

  // 5. The commit's rules between each stored reading in scope and its nearest stored neighbour
  //    on each side, across gaps too (a gap used to switch every check off). Stored values are
  //    checked: they are what interval energy was booked from; an edited row is also a row_mismatch.
  const meterRecord = await ledger.getMeter(meter);
  const limits: ChainLimits = meterRecord ? { ratedPowerW: meterRecord.ratedPowerW } : {};
  const chainRules: ChainRulesSummary = {
    pairsChecked: 0,
    acrossGaps: 0,
    ratedPowerW: meterRecord?.ratedPowerW ?? null,
    skipped: meterRecord ? [] : [`exceeds_rated_power: meter ${meter} is not in the registry, so its rated power is unknown`],
  };
  const scopedSeqs = new Set(scopedRows.map((r) => r.seq));
  for (let i = 1; i < rows.length; i++) {
    const a = rows[i - 1]!;
    const b = rows[i]!;
    if (!scopedSeqs.has(a.seq) && !scopedSeqs.has(b.seq)) continue;
    chainRules.pairsChecked++;
    if (b.seq > a.seq + 1) chainRules.acrossGaps++;
    // No maxSpanMs: the backfill window is an intake rule, not a property of stored data.
    const p = spanProblem(chainReadingOf(a), chainReadingOf(b), limits);
    if (p && isChainRuleKind(p.reason)) {
      failures.push({ kind: p.reason, seq: b.seq, neighbourSeq: a.seq, envelopeId: b.envelopeId, detail: p.detail });
    }
  }

  // 6. Hand-overs: each seq belongs to the gateway that held the meter then; the signed
  //    envelope's gateway says who signed (the row's own column is checked in step 4).
  const handoverRecords = await new HandoverStore(ledger.db).forMeter(meter);
  const owners = ownersFrom(handoverRecords);
  for (const h of owners.inconsistent) {
    failures.push({ kind: 'handover_mismatch', seq: h.record.fromSeq, detail: h.detail });
  }
  if (owners.segments.length > 0) {
    for (const row of scopedRows) {
      const owner = owners.ownerAt(row.seq);
      const signer = parsed.get(row.envelopeId)?.env?.gateway ?? row.gateway;
      if (signer !== owner.gateway) {
        failures.push({ kind: 'handover_mismatch', seq: row.seq, envelopeId: row.envelopeId, detail: `signed by ${signer}, but seq ${row.seq} ${owner.why}` });
      }
    }
  }

  // 7. Gaps between the stored seqs in scope (and before the first one when the range is open).
  const signedSeqs = new Set<number>();
  for (const id of scopedEnvelopeIds) {
    if (verdicts.get(id) === 'authentic') for (const seq of parsed.get(id)!.meterReadings.keys()) signedSeqs.add(seq);
  }
  const gaps: SeqGap[] = [];
  const addGap = (fromSeq: number, toSeq: number): void => {
    let signedInLedger = 0;
    for (let s = fromSeq; s <= toSeq; s++) if (signedSeqs.has(s)) signedInLedger++;
    gaps.push({ fromSeq, toSeq, signedInLedger });
  };
  const first = scopedRows[0];
  const last = scopedRows[scopedRows.length - 1];
  if (first && opts.fromMs === undefined && first.seq > 1) addGap(1, first.seq - 1);
  for (let i = 1; i < scopedRows.length; i++) {
    const a = scopedRows[i - 1]!.seq;
    const b = scopedRows[i]!.seq;
    if (b > a + 1) addGap(a + 1, b - 1);
  }

  failures.sort((a, b) => (a.seq ?? Infinity) - (b.seq ?? Infinity));
  return {
    meter,
    range: {
      from: opts.fromMs !== undefined ? new Date(opts.fromMs).toISOString() : null,
      to: opts.toMs !== undefined ? new Date(opts.toMs).toISOString() : null,
    },
    envelopesChecked: scopedEnvelopes.length,
    readingsChecked: scopedRows.length,
    readingsInLedger: rows.length,
    firstSeq: first?.seq ?? null,
    lastSeq: last?.seq ?? null,
    firstTs: first?.ts ?? null,
    lastTs: last?.ts ?? null,
    gaps,
    failures,
    energy:
      first && last
        ? {
            firstImportWh: first.importWh,
            lastImportWh: last.importWh,
            importWh: last.importWh - first.importWh,
            firstExportWh: first.exportWh,
            lastExportWh: last.exportWh,
            exportWh: last.exportWh - first.exportWh,
          }
        : null,
    gateways: [...gateways.values()]
      .sort((a, b) => a.id.localeCompare(b.id))
      .map((g) => ({ id: g.id, status: g.status, keyFingerprint: g.fingerprint, envelopes: g.envelopes })),
    chainRules,
    handovers: handoverRecords.map((h) => ({ oldGateway: h.oldGateway, newGateway: h.newGateway, fromSeq: h.fromSeq, at: new Date(h.atMs).toISOString() })),
    ok: failures.length === 0,
  };
}

function chainReadingOf(r: StoredReading): ChainReading {
  return { seq: r.seq, hash: r.hash, prev: r.prev, tsMs: Date.parse(r.ts), importWh: r.importWh, exportWh: r.exportWh };
}

function isChainRuleKind(reason: ChainRejectReason): reason is ChainRuleKind {
  return reason === 'time_regression' || reason === 'counter_regression' || reason === 'exceeds_rated_power';
}

interface OwnerSegment {
  /** First seq of the segment; the first segment starts at seq 1. */
  fromSeq: number;
  gateway: string;
  /** Why a seq in it belongs to `gateway`, after "seq N". */
  why: string;
}

/**
 * Who held the meter at each seq, from its hand-overs in seq order: the first one's old gateway
 * before it, each one's new gateway from its from seq on. A hand-over whose old gateway is not
 * the one the previous hand-over gave the meter to is a record that disagrees with itself.
 */
function ownersFrom(handovers: Handover[]): {
  segments: OwnerSegment[];
  inconsistent: Array<{ record: Handover; detail: string }>;
  ownerAt(seq: number): OwnerSegment;
} {
  const segments: OwnerSegment[] = [];
  const inconsistent: Array<{ record: Handover; detail: string }> = [];
  const first = handovers[0];
  if (first) {
    segments.push({ fromSeq: 1, gateway: first.oldGateway, why: `precedes the hand-over from ${first.oldGateway} to ${first.newGateway} at seq ${first.fromSeq}` });
  }
  for (const [i, h] of handovers.entries()) {
    const before = handovers[i - 1];
    if (before && before.newGateway !== h.oldGateway) {
      inconsistent.push({
        record: h,
        detail: `the hand-over at seq ${h.fromSeq} names ${h.oldGateway} as the old gateway, but the hand-over at seq ${before.fromSeq} gave the meter to ${before.newGateway}`,
      });
    }
    segments.push({ fromSeq: h.fromSeq, gateway: h.newGateway, why: `is covered by the hand-over from ${h.oldGateway} to ${h.newGateway} from seq ${h.fromSeq} on` });
  }
  return {
    segments,
    inconsistent,
    ownerAt(seq) {
      let owner = segments[0]!;
      for (const s of segments) if (s.fromSeq <= seq) owner = s;
      return owner;
    },
  };
}

/** Lowest seq of the meter among an envelope's signed readings. */
function minSeq(p: ParsedEnvelope): number | undefined {
  let min: number | undefined;
  for (const seq of p.meterReadings.keys()) if (min === undefined || seq < min) min = seq;
  return min;
}

function show(v: string | number | undefined): string {
  return v === undefined ? '(absent)' : String(v);
}
