import { createHash } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { asEnvelope, signedBytes } from '../../protocol/index.ts';

/**
 * Versioned schema migrations, one runner for both engines. Each engine has its files
 * `migrations/<engine>/NNN_name.sql`; a version may also have a code step (below) that runs
 * after its SQL in the same transaction, for data changes SQL cannot express. Every applied
 * version is recorded with the SHA-256 of its file: a ledger refuses to open when an applied file
 * was edited since (a schema change goes in a new file) or when it holds versions this release
 * does not know (a newer release migrated it).
 */
export interface Migration {
  version: number;
  name: string;
  file: string;
  sql: string;
  checksum: string;
}

export class MigrationError extends Error {
  override readonly name = 'MigrationError';
}

/** What the runner needs of a connection; `?` placeholders on both engines. */
export interface MigrationConnection {
  readonly engine: 'sqlite' | 'postgres';
  query<T = Record<string, unknown>>(sql: string, params?: unknown[]): Promise<T[]>;
  /** Several statements, no parameters. */
  exec(sql: string): Promise<void>;
  /** Runs `fn` in one transaction (PostgreSQL: also under the migration lock). */
  transaction(fn: () => Promise<void>): Promise<void>;
  columns(table: string): Promise<string[]>;
}

/** Versioned migration files `NNN_name.sql` of one engine, in order. */
export function loadMigrations(engine: 'sqlite' | 'postgres'): Migration[] {
  const dir = fileURLToPath(new URL(`./migrations/${engine}/`, import.meta.url));
  return readdirSync(dir)
    .filter((f) => /^\d{3}_[a-z0-9_]+\.sql$/.test(f))
    .sort()
    .map((f) => {
      const sql = readFileSync(dir + f, 'utf8');
      return { version: Number(f.slice(0, 3)), name: f.slice(4, -4), file: `${engine}/${f}`, sql, checksum: createHash('sha256').update(sql).digest('hex') };
    });
}

/** Code steps, by version: run after that version's SQL, inside its transaction. */
const CODE_STEPS: Record<number, (c: MigrationConnection) => Promise<void>> = {
  4: fillSignedBytes,
};

export async function runMigrations(c: MigrationConnection, now: () => number = Date.now): Promise<void> {
  const migrations = loadMigrations(c.engine);
  const known = new Set(migrations.map((m) => m.version));
  // Checked before any migration runs: a ledger that a newer release migrated is left untouched.
  await c.transaction(async () => {
    await c.exec(
      `CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at_ms BIGINT NOT NULL, checksum TEXT)`,
    );
    // Ledgers from before checksums: the files of this release are taken as the applied ones.
    if (!(await c.columns('schema_migrations')).includes('checksum')) await c.exec('ALTER TABLE schema_migrations ADD COLUMN checksum TEXT');
    const newer = (await c.query<{ version: number }>('SELECT version FROM schema_migrations ORDER BY version')).filter((r) => !known.has(Number(r.version)));
    if (newer.length > 0) {
      throw new MigrationError(
        `this ledger has schema version(s) ${newer.map((r) => r.version).join(', ')}, newer than this release knows: run the release that migrated it`,
      );
    }
  });
  for (const m of migrations) {
    await c.transaction(async () => {
      const [row] = await c.query<{ checksum: string | null }>('SELECT checksum FROM schema_migrations WHERE version = ?', [m.version]);
      if (row) {
        if (row.checksum === null) await c.query('UPDATE schema_migrations SET checksum = ? WHERE version = ?', [m.checksum, m.version]);
        else if (row.checksum !== m.checksum) {
          throw new MigrationError(
            `migration ${m.file} was edited after it was applied to this ledger (sha256 now ${m.checksum.slice(0, 12)}…, when applied ${row.checksum.slice(0, 12)}…): ` +
              'restore the file as released; a schema change goes in a new migration file',
          );
        }
        return;
      }
      await c.exec(m.sql);
      await CODE_STEPS[m.version]?.(c);
      await c.query('INSERT INTO schema_migrations (version, name, applied_at_ms, checksum) VALUES (?, ?, ?, ?)', [m.version, m.name, now(), m.checksum]);
    });
  }
}

/**
 * 004: envelopes stored by earlier releases kept the payload as received; the archive now keeps
 * the bytes that were signed and the raw signature. The signature of those rows was verified
 * over the canonical bytes of the parsed payload, which is what this stores. A payload that no
 * longer parses (edited in the database) is kept as it is with an empty signature, so that an
 * audit reports it instead of the migration hiding it.
 */
async function fillSignedBytes(c: MigrationConnection): Promise<void> {
  for (let after = -1; ; ) {
    const rows = await c.query<{ ref: number | string; raw: string }>('SELECT ref, raw FROM envelopes WHERE ref > ? ORDER BY ref LIMIT 500', [after]);
    if (rows.length === 0) return;
    for (const r of rows) {
      let signed = r.raw;
      let sig = Buffer.alloc(0);
      try {
        const env = asEnvelope(JSON.parse(r.raw));
        signed = signedBytes(env).toString('utf8');
        sig = Buffer.from(env.sig, 'base64');
      } catch {
        // kept as it is (see above)
      }
      await c.query('UPDATE envelopes SET signed = ?, sig = ? WHERE ref = ?', [signed, sig, r.ref]);
    }
    after = Number(rows[rows.length - 1]!.ref);
  }
}
