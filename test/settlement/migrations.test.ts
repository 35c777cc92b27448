import Database from 'better-sqlite3';
import { join } from 'node:path';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { envelopeIdOf, readingHash, signedBytes, type Envelope } from '../../protocol/index.ts';
import type { Ledger } from '../../settlement/ledger/ledger.ts';
import { loadMigrations } from '../../settlement/ledger/migrations.ts';
import { openLedger } from '../../settlement/ledger/open.ts';
import { EnvelopeFactory, verifiedEnvelope } from '../support/envelopes.ts';
import { freshPostgresSchema, postgresUrl, requireOrSkip } from '../support/services.ts';
import { tempDir } from '../support/tmp.ts';

/**
 * A ledger written by an older release keeps every envelope and reading through the later
 * migrations: here, data stored under schema version 2 (readings keyed to envelopes by hex id)
 * read back and extended after 003_envelope_ref.
 */

const pgUrl = await postgresUrl();
const skipPostgres = requireOrSkip('PostgreSQL migrations', !!pgUrl, 'no PostgreSQL at 127.0.0.1:5432');

const factory = new EnvelopeFactory('gw-old');
const context = { ratedPowerW: 100_000, market: 'thailand_central', timeZone: 'Asia/Bangkok', intervalMs: 900_000 };
const t0 = Date.parse('2026-11-01T00:00:00Z');
const old: Envelope[] = [];
for (let i = 0; i < 3; i++) {
  const rs = [0, 1].map((k) => {
    const r = factory.nextReading('meter-old', {}, t0 + (2 * i + k) * 60_000);
    factory.advance(r);
    return r;
  });
  old.push(factory.sign(rs));
}
const nextReading = factory.nextReading('meter-old', {}, t0 + 6 * 60_000);
const nextEnvelope = factory.sign([nextReading]);

/** Rows as release 2 wrote them: statements in the old column layout. */
function v2Rows(): { sql: string; params: unknown[] }[] {
  const out: { sql: string; params: unknown[] }[] = [
    { sql: "INSERT INTO markets VALUES ('thailand_central', 'Central', 'Asia/Bangkok', 15, 1)", params: [] },
    { sql: "INSERT INTO accounts VALUES ('owner', 'Owner', 1)", params: [] },
    { sql: "INSERT INTO gateways VALUES ('gw-old', $1, 'active', 1, NULL, NULL)", params: [factory.publicKeyPem] },
    {
      sql: "INSERT INTO meters VALUES ('meter-old', 'gw-old', 'eastron-sdm120', 'bidirectional', 100000, 'Solar', 'thailand_central', 'owner', 1)",
      params: [],
    },
  ];
  old.forEach((env, i) => {
    const id = envelopeIdOf(signedBytes(env));
    out.push({ sql: 'INSERT INTO envelopes VALUES ($1, $2, $3, $4, $5)', params: [id, env.gateway, t0 + i, env.readings.length, JSON.stringify(env)] });
    for (const r of env.readings) {
      out.push({
        sql: 'INSERT INTO readings VALUES ($1, $2, $3, $4, $5, $6, $7, $8, NULL, NULL, NULL, $9, $10, $11)',
        params: [r.meter, r.seq, id, env.gateway, Date.parse(r.ts), r.importWh, r.exportWh, r.powerW, r.prev, readingHash(r), t0 + i],
      });
    }
  });
  return out;
}

async function expectMigrated(ledger: Ledger): Promise<void> {
  const ids = old.map((env) => envelopeIdOf(signedBytes(env)));
  const readings = await ledger.readings('meter-old');
  expect(readings.map((r) => [r.seq, r.envelopeId])).toEqual([1, 2, 3, 4, 5, 6].map((seq) => [seq, ids[Math.floor((seq - 1) / 2)]]));
  const envelopes = await ledger.envelopesWithMeter('meter-old');
  // 004 keeps exactly the bytes that were signed and the raw signature of every old envelope.
  expect(envelopes.map((e) => [e.id, e.signed, e.sig.toString('base64'), e.readingCount])).toEqual(
    old.map((env, i) => [ids[i], signedBytes(env).toString('utf8'), env.sig, 2]),
  );

  // The chain continues from what the old release stored; a resend of an old envelope is a duplicate.
  const verified = (env: Envelope) => verifiedEnvelope(env, context);
  const outcomes = await ledger.commitEnvelopes([verified(nextEnvelope), verified(old[1]!)]);
  expect(outcomes.map((o) => o.status)).toEqual(['accepted', 'duplicate']);
  expect((await ledger.readings('meter-old')).length).toBe(7);
  expect(await ledger.counts()).toMatchObject({ envelopes: 4, readings: 7 });
  expect(await ledger.gaps('meter-old')).toEqual([]);
}

describe('SQLite ledger migrations', () => {
  const dir = tempDir();
  afterAll(() => dir.remove());

  it('keeps envelopes and readings stored under schema version 2', async () => {
    const path = join(dir.path, 'v2.sqlite');
    const db = new Database(path);
    db.exec('CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at_ms INTEGER NOT NULL)');
    for (const m of loadMigrations('sqlite').filter((m) => m.version <= 2)) {
      db.exec(m.sql);
      db.prepare('INSERT INTO schema_migrations VALUES (?, ?, ?)').run(m.version, m.name, 1);
    }
    for (const { sql, params } of v2Rows()) db.prepare(sql.replace(/\$\d+/g, '?')).run(...params);
    db.close();

    const ledger = await openLedger({ sqlitePath: path });
    try {
      await expectMigrated(ledger);
    } finally {
      await ledger.close();
    }
  });
});

describe.skipIf(skipPostgres)('PostgreSQL ledger migrations', () => {
  let schema: Awaited<ReturnType<typeof freshPostgresSchema>>;
  beforeAll(async () => {
    schema = await freshPostgresSchema(pgUrl!);
  });
  afterAll(async () => {
    await schema?.drop();
  });

  it('keeps envelopes and readings stored under schema version 2', async () => {
    const client = new pg.Client({ connectionString: schema.url });
    await client.connect();
    try {
      await client.query('CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at_ms BIGINT NOT NULL)');
      for (const m of loadMigrations('postgres').filter((m) => m.version <= 2)) {
        await client.query(m.sql);
        await client.query('INSERT INTO schema_migrations VALUES ($1, $2, 1)', [m.version, m.name]);
      }
      for (const { sql, params } of v2Rows()) await client.query(sql, params);
    } finally {
      await client.end();
    }

    const ledger = await openLedger({ sqlitePath: '/nonexistent/unused.sqlite', databaseUrl: schema.url });
    try {
      await expectMigrated(ledger);
    } finally {
      await ledger.close();
    }
  });
});
