import type { Ledger } from './ledger.ts';
import { MigrationError } from './migrations.ts';
import { SqliteLedger } from './sqlite.ts';

export interface OpenLedgerOptions {
  sqlitePath: string;
  /** A PostgreSQL connection string; when set, the ledger lives there and sqlitePath is unused. */
  databaseUrl?: string;
}

/** The settlement ledger chosen by configuration, migrated and ready. */
export async function openLedger(opts: OpenLedgerOptions): Promise<Ledger> {
  // pg is loaded only when used: SQLite-only processes (the CLI, the demo) start faster.
  const ledger: Ledger = opts.databaseUrl
    ? new (await import('./postgres.ts')).PostgresLedger(opts.databaseUrl)
    : new SqliteLedger(opts.sqlitePath);
  try {
    await ledger.migrate();
  } catch (e) {
    await ledger.close().catch(() => undefined);
    // A migration refusal says what to do already; the connection hint would mislead.
    if (!opts.databaseUrl || e instanceof MigrationError) throw e;
    throw new Error(`PostgreSQL ledger at ${redactPassword(opts.databaseUrl)}: ${(e as Error).message} (check DATABASE_URL or [ledger] database_url)`, {
      cause: e,
    });
  }
  return ledger;
}

/** A connection string fit for a log line or an error message. */
export function redactPassword(url: string): string {
  try {
    const u = new URL(url);
    if (u.password) u.password = '***';
    return u.toString();
  } catch {
    return '(unparseable connection string)';
  }
}
