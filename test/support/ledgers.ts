import Database from 'better-sqlite3';
import { join } from 'node:path';
import pg from 'pg';
import type { Ledger } from '../../settlement/ledger/ledger.ts';
import { openLedger } from '../../settlement/ledger/open.ts';
import { freshPostgresSchema, postgresUrl, requireOrSkip } from './services.ts';
import { tempDir } from './tmp.ts';

/**
 * The ledger engines a contract test runs against: SQLite always, PostgreSQL when it is
 * reachable (see services.ts), each in a store of its own.
 */

export interface OpenedLedger {
  ledger: Ledger;
  /** Another Ledger object on the same store (a restarted process). */
  reopen(): Promise<Ledger>;
  /** The payload bytes stored for a rejection, read behind the interface's back. */
  storedPayload(id: number): Promise<Buffer>;
  cleanup(): Promise<void>;
}

export interface Engine {
  name: 'sqlite' | 'postgres';
  skip: boolean;
  open(): Promise<OpenedLedger>;
}

export const pgUrl = await postgresUrl();
export const skipPostgres = requireOrSkip('PostgreSQL ledger', !!pgUrl, `no PostgreSQL at ${process.env.GTX_TEST_DATABASE_URL ?? '127.0.0.1:5432'}`);

export const engines: Engine[] = [
  {
    name: 'sqlite',
    skip: false,
    async open() {
      const dir = tempDir('gtx-ledger-');
      const sqlitePath = join(dir.path, 'ledger.sqlite');
      const others: Ledger[] = [];
      const ledger = await openLedger({ sqlitePath });
      return {
        ledger,
        async reopen() {
          const l = await openLedger({ sqlitePath });
          others.push(l);
          return l;
        },
        async storedPayload(id) {
          const db = new Database(sqlitePath, { readonly: true });
          try {
            return (db.prepare('SELECT payload FROM rejections WHERE id = ?').pluck().get(id) as Buffer);
          } finally {
            db.close();
          }
        },
        async cleanup() {
          for (const l of [ledger, ...others]) await l.close();
          dir.remove();
        },
      };
    },
  },
  {
    name: 'postgres',
    skip: skipPostgres,
    async open() {
      const schema = await freshPostgresSchema(pgUrl!);
      const others: Ledger[] = [];
      const ledger = await openLedger({ sqlitePath: '/nonexistent/unused.sqlite', databaseUrl: schema.url });
      return {
        ledger,
        async reopen() {
          const l = await openLedger({ sqlitePath: '/nonexistent/unused.sqlite', databaseUrl: schema.url });
          others.push(l);
          return l;
        },
        async storedPayload(id) {
          const c = new pg.Client({ connectionString: schema.url });
          await c.connect();
          try {
            return (await c.query<{ payload: Buffer }>('SELECT payload FROM rejections WHERE id = $1', [id])).rows[0]!.payload;
          } finally {
            await c.end();
          }
        },
        async cleanup() {
          for (const l of [ledger, ...others]) await l.close();
          await schema.drop();
        },
      };
    },
  },
];

