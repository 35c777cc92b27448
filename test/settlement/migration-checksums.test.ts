import Database from 'better-sqlite3';
import { createHash } from 'node:crypto';
import { join } from 'node:path';
import pg from 'pg';
import { afterEach, describe, expect, it } from 'vitest';
import { loadMigrations, MigrationError } from '../../settlement/ledger/migrations.ts';
import { openLedger } from '../../settlement/ledger/open.ts';
import { freshPostgresSchema, postgresUrl, requireOrSkip } from '../support/services.ts';
import { tempDir } from '../support/tmp.ts';

/**
 * Every applied migration is recorded with the SHA-256 of its file; a ledger refuses to open
 * when an applied file was edited or when it holds a version this release does not know, and a
 * ledger from before checksums gets the current files' checksums. On both engines; the stored
 * rows are changed behind the ledger's back, as an edited file or a newer release would leave them.
 */

const pgUrl = await postgresUrl();
const skipPostgres = requireOrSkip('PostgreSQL migration checksums', !!pgUrl, 'no PostgreSQL at 127.0.0.1:5432');

interface Store {
  /** Opens (and so migrates) the ledger, then closes it. */
  open(): Promise<void>;
  /** SQL straight on the store, `?` placeholders. */
  raw<T>(sql: string, params?: unknown[]): Promise<T[]>;
  /** Several statements, no parameters: a migration file as an older release ran it. */
  exec(sql: string): Promise<void>;
  drop(): Promise<void>;
}

const engines: Array<{ name: 'sqlite' | 'postgres'; skip: boolean; store(): Promise<Store> }> = [
  {
    name: 'sqlite',
    skip: false,
    async store() {
      const dir = tempDir('gtx-checksums-');
      const sqlitePath = join(dir.path, 'ledger.sqlite');
      return {
        open: async () => (await openLedger({ sqlitePath })).close(),
        async raw<T>(sql: string, params: unknown[] = []) {
          const db = new Database(sqlitePath);
          try {
            const st = db.prepare(sql);
            if (st.reader) return st.all(...params) as T[];
            st.run(...params);
            return [];
          } finally {
            db.close();
          }
        },
        async exec(sql: string) {
          const db = new Database(sqlitePath);
          try {
            db.exec(sql);
          } finally {
            db.close();
          }
        },
        drop: async () => dir.remove(),
      };
    },
  },
  {
    name: 'postgres',
    skip: skipPostgres,
    async store() {
      const schema = await freshPostgresSchema(pgUrl!);
      return {
        open: async () => (await openLedger({ sqlitePath: '/nonexistent/unused.sqlite', databaseUrl: schema.url })).close(),
        async raw<T>(sql: string, params: unknown[] = []) {
          const c = new pg.Client({ connectionString: schema.url });
          await c.connect();
          try {
            let n = 0;
            return (await c.query(sql.replace(/\?/g, () => `$${++n}`), params)).rows as T[];
          } finally {
            await c.end();
          }
        },
        async exec(sql: string) {
          const c = new pg.Client({ connectionString: schema.url });
          await c.connect();
          try {
            await c.query(sql);
          } finally {
            await c.end();
          }
        },
        drop: () => schema.drop(),
      };
    },
  },
];

/** The MigrationError behind a failed open (PostgreSQL's openLedger wraps errors, keeping the cause). */
async function openFailure(store: Store): Promise<MigrationError> {
  const e = await store.open().then(
    () => undefined,
    (e: unknown) => e,
  );
  for (let x = e; x instanceof Error; x = x.cause) if (x instanceof MigrationError) return x;
  throw new Error(`expected a MigrationError, got ${String(e)}`);
}

describe.each(engines)('migration checksums on $name', ({ name, skip, store: newStore }) => {
  const migrations = loadMigrations(name);
  const stored = (s: Store) =>
    s.raw<{ version: number; checksum: string | null }>('SELECT version, checksum FROM schema_migrations ORDER BY version').then((rows) =>
      rows.map((r) => [Number(r.version), r.checksum]),
    );
  const current = migrations.map((m) => [m.version, m.checksum]);
  let store: Store | undefined;
  afterEach(async () => {
    await store?.drop();
    store = undefined;
  });

  it.skipIf(skip)('records the SHA-256 of each migration file on a fresh ledger, and opens again', async () => {
    store = await newStore();
    await store.open();
    expect(migrations.length).toBeGreaterThanOrEqual(5);
    for (const m of migrations) expect(m.checksum).toBe(createHash('sha256').update(m.sql).digest('hex'));
    expect(await stored(store)).toEqual(current);
    await store.open();
    expect(await stored(store)).toEqual(current);
  });

  it.skipIf(skip)('refuses a ledger whose applied migration file was edited since, naming the file', async () => {
    store = await newStore();
    await store.open();
    const edited = migrations[1]!;
    await store.raw('UPDATE schema_migrations SET checksum = ? WHERE version = ?', [createHash('sha256').update(`${edited.sql}-- edited\n`).digest('hex'), edited.version]);
    const e = await openFailure(store);
    expect(e.message).toContain(`migration ${name}/${edited.version.toString().padStart(3, '0')}_${edited.name}.sql was edited after it was applied`);
    expect(e.message).toContain('a schema change goes in a new migration file');
  });

  it.skipIf(skip)('refuses a ledger holding a version this release does not know (999)', async () => {
    store = await newStore();
    await store.open();
    await store.raw('INSERT INTO schema_migrations (version, name, applied_at_ms, checksum) VALUES (999, ?, 1, ?)', ['from_the_future', 'ab'.repeat(32)]);
    const e = await openFailure(store);
    expect(e.message).toMatch(/schema version\(s\) 999, newer than this release knows/);
  });

  it.skipIf(skip)('refuses a newer ledger before applying anything to it', async () => {
    // A ledger at version 3 that a newer release also stamped 999: this release's 004 must not run on it.
    store = await newStore();
    await store.raw('CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at_ms BIGINT NOT NULL, checksum TEXT)');
    for (const m of migrations.filter((m) => m.version <= 3)) {
      await store.exec(m.sql);
      await store.raw('INSERT INTO schema_migrations VALUES (?, ?, 1, ?)', [m.version, m.name, m.checksum]);
    }
    await store.raw("INSERT INTO schema_migrations VALUES (999, 'from_the_future', 1, NULL)");
    const e = await openFailure(store);
    expect(e.message).toMatch(/999, newer than this release knows/);
    expect((await stored(store)).map(([v]) => v)).toEqual([1, 2, 3, 999]);
  });

  it.skipIf(skip)('fills in checksums on a ledger from before checksums (no column, or NULL)', async () => {
    store = await newStore();
    await store.open();
    await store.raw('UPDATE schema_migrations SET checksum = NULL WHERE version IN (1, 3)');
    await store.open();
    expect(await stored(store)).toEqual(current);

    await store.raw('ALTER TABLE schema_migrations DROP COLUMN checksum');
    await store.open();
    expect(await stored(store)).toEqual(current);
  });
});
