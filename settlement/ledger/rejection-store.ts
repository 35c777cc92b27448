import { sql } from 'kysely';
import type { EnvelopeId, RejectReason } from '../../protocol/index.ts';
import type { LedgerDb } from '../store/database.ts';
import type { RejectionBatch, StoredRejection } from './ledger.ts';

// Refusals in the ledger, written once for both engines: every refusal counted per gateway,
// reason and hour, and payload samples (ingest/rejection-recorder.ts decides which).

const CHUNK = 200;

/** Text columns: PostgreSQL text cannot hold U+0000 (a detail quotes the input). */
const text = (s: string) => s.replaceAll('\u0000', '\uFFFD');

/** One transaction: the samples inserted, the counts added to their (gateway, reason, hour) rows. */
export async function recordRejections(db: LedgerDb, batch: RejectionBatch, sampleBytes: number): Promise<void> {
  if (batch.counts.length === 0 && batch.samples.length === 0) return;
  await db.transaction().execute(async (trx) => {
    for (let i = 0; i < batch.samples.length; i += CHUNK) {
      await trx
        .insertInto('rejections')
        .values(
          batch.samples.slice(i, i + CHUNK).map((r) => ({
            received_at_ms: r.receivedAtMs,
            topic: text(r.topic),
            gateway: r.gateway === null ? null : text(r.gateway),
            envelope_id: r.envelopeId,
            reason: r.reason,
            detail: text(r.detail),
            payload: Buffer.from(r.payload.subarray(0, sampleBytes)),
            payload_bytes: r.payloadBytes,
            payload_sha256: r.payloadSha256,
          })),
        )
        .execute();
    }
    for (let i = 0; i < batch.counts.length; i += CHUNK) {
      await trx
        .insertInto('rejection_counts')
        .values(batch.counts.slice(i, i + CHUNK).map((c) => ({ gateway: text(c.gateway), reason: c.reason, hour_ms: c.hourMs, count: c.count })))
        .onConflict((oc) => oc.columns(['gateway', 'reason', 'hour_ms']).doUpdateSet({ count: sql`rejection_counts.count + excluded.count` }))
        .execute();
    }
  });
}

/**
 * Drops up to `limit` samples received before `beforeMs` and up to `limit` counts of hours that
 * started before it; the retention job calls it until less than `limit` goes, so that no single
 * call holds the writer long.
 */
export async function pruneRejections(db: LedgerDb, beforeMs: number, limit = 5000): Promise<{ samples: number; counts: number }> {
  const s = await db
    .deleteFrom('rejections')
    .where('id', 'in', (eb) => eb.selectFrom('rejections').select('id').where('received_at_ms', '<', beforeMs).orderBy('id').limit(limit))
    .executeTakeFirst();
  const c = await db
    .deleteFrom('rejection_counts')
    .where('hour_ms', 'in', (eb) => eb.selectFrom('rejection_counts').select('hour_ms').where('hour_ms', '<', beforeMs).orderBy('hour_ms').limit(limit))
    .executeTakeFirst();
  return { samples: Number(s.numDeletedRows), counts: Number(c.numDeletedRows) };
}

/** The newest payload samples first. */
export async function rejectionSamples(db: LedgerDb, limit = 100): Promise<StoredRejection[]> {
  const rows = await db
    .selectFrom('rejections')
    .select(['id', 'received_at_ms', 'topic', 'gateway', 'envelope_id', 'reason', 'detail', 'payload_bytes', 'payload_sha256'])
    .orderBy('id', 'desc')
    .limit(limit)
    .execute();
  return rows.map((r) => ({
    id: Number(r.id),
    receivedAtMs: r.received_at_ms,
    topic: r.topic,
    gateway: r.gateway,
    envelopeId: r.envelope_id as EnvelopeId | null,
    reason: r.reason as RejectReason,
    detail: r.detail,
    payloadBytes: r.payload_bytes,
    payloadSha256: r.payload_sha256,
  }));
}

/** Refusals counted per gateway and reason (all hours kept, or those from `sinceMs`). */
export async function rejectionCounts(db: LedgerDb, opts: { sinceMs?: number; gateway?: string } = {}): Promise<Array<{ gateway: string; reason: RejectReason; count: number }>> {
  let q = db
    .selectFrom('rejection_counts')
    .select(['gateway', 'reason', sql<number>`CAST(sum(count) AS BIGINT)`.as('n')])
    .groupBy(['gateway', 'reason'])
    .orderBy('gateway')
    .orderBy('reason');
  if (opts.sinceMs !== undefined) q = q.where('hour_ms', '>=', opts.sinceMs - (opts.sinceMs % 3_600_000));
  if (opts.gateway !== undefined) q = q.where('gateway', '=', opts.gateway);
  const rows = await q.execute();
  return rows.map((r) => ({ gateway: r.gateway, reason: r.reason as RejectReason, count: Number(r.n) }));
}

/** Every refusal counted so far. */
export async function rejectionTotal(db: LedgerDb): Promise<number> {
  const row = await db.selectFrom('rejection_counts').select(sql<number>`CAST(coalesce(sum(count), 0) AS BIGINT)`.as('n')).executeTakeFirstOrThrow();
  return Number(row.n);
}
