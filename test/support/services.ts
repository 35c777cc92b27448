import { accessSync, constants } from 'node:fs';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import pg from 'pg';

/**
 * How tests find real services (see ARCHITECTURE.md, "Where services come from"). A test
 * file asks for a service, then skips with a printed reason when it is missing, unless
 * GTX_REQUIRE_SERVICES=1 (set by .ci/run), where a missing service fails the file:
 *
 *   const pgUrl = await postgresUrl();
 *   describe.skipIf(requireOrSkip('PostgreSQL ledger', !!pgUrl, 'no PostgreSQL at 127.0.0.1:5432'))(…)
 */

const DEFAULT_POSTGRES_URL = 'postgres://postgres@127.0.0.1:5432/test';
const PROBE_TIMEOUT_MS = 2_000;

let postgresProbe: Promise<string | undefined> | undefined;

/** GTX_TEST_DATABASE_URL, or the CI default, if a connection to it succeeds within 2 s. */
export function postgresUrl(): Promise<string | undefined> {
  return (postgresProbe ??= probePostgres(process.env.GTX_TEST_DATABASE_URL ?? DEFAULT_POSTGRES_URL));
}

async function probePostgres(url: string): Promise<string | undefined> {
  const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: PROBE_TIMEOUT_MS });
  client.on('error', () => undefined);
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error('timeout')), PROBE_TIMEOUT_MS);
  });
  try {
    await Promise.race([client.connect().then(() => client.query('SELECT 1')), timeout]);
    return url;
  } catch {
    return undefined;
  } finally {
    clearTimeout(timer);
    void client.end().catch(() => undefined);
  }
}

/**
 * True means "skip": the service is missing and not required; a one-line reason goes to
 * stderr. With GTX_REQUIRE_SERVICES=1 a missing service throws, which fails the test file.
 */
export function requireOrSkip(name: string, available: boolean, reason: string): boolean {
  if (available) return false;
  if (process.env.GTX_REQUIRE_SERVICES === '1') {
    throw new Error(`${name} needs a service that is not available: ${reason} (GTX_REQUIRE_SERVICES=1)`);
  }
  process.stderr.write(`skipping ${name}: ${reason}\n`);
  return true;
}

/**
 * A schema of its own for one test file (or one test): `url` is a connection string whose
 * connections use only that schema (libpq `options=-c search_path=…`, which node-postgres
 * passes to the server), so test files never see each other's tables or a previous run's.
 */
export async function freshPostgresSchema(url: string): Promise<{ url: string; schema: string; drop(): Promise<void> }> {
  const schema = `gtx_test_${randomBytes(6).toString('hex')}`;
  await adminQuery(url, `CREATE SCHEMA ${schema}`);
  const u = new URL(url);
  u.searchParams.set('options', `-c search_path=${schema}`);
  return {
    url: u.toString(),
    schema,
    drop: () => adminQuery(url, `DROP SCHEMA IF EXISTS ${schema} CASCADE`),
  };
}

async function adminQuery(url: string, sql: string): Promise<void> {
  const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: PROBE_TIMEOUT_MS });
  await client.connect();
  try {
    await client.query(sql);
  } finally {
    await client.end();
  }
}

/** The machine's Mosquitto (CI runs one on 127.0.0.1:1883), if it accepts a connection. */
export async function mosquittoUrl(): Promise<string | undefined> {
  const url = process.env.GTX_TEST_MQTT_URL ?? 'mqtt://127.0.0.1:1883';
  const { default: mqtt } = await import('mqtt');
  try {
    const c = await mqtt.connectAsync(url, { connectTimeout: 2000, reconnectPeriod: 0 });
    await c.endAsync();
    return url;
  } catch {
    return undefined;
  }
}

/** An executable on PATH or in the sbin folders (Debian puts mosquitto in /usr/sbin). */
export function findBinary(name: string): string | undefined {
  const dirs = [...(process.env.PATH ?? '').split(':'), '/usr/sbin', '/usr/local/sbin'];
  for (const d of dirs.filter(Boolean)) {
    try {
      accessSync(join(d, name), constants.X_OK);
      return join(d, name);
    } catch {
      // not here
    }
  }
  return undefined;
}
