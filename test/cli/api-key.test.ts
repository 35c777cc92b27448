import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildApi } from '../../settlement/api/server.ts';
import type { Ledger } from '../../settlement/ledger/ledger.ts';
import { openLedger } from '../../settlement/ledger/open.ts';
import { createMetrics } from '../../settlement/metrics.ts';
import { ApiKeyStore, hashApiKey } from '../../settlement/registry/api-keys.ts';
import { Enrollment } from '../../settlement/registry/enrollment.ts';
import { freshPostgresSchema, postgresUrl, requireOrSkip } from '../support/services.ts';
import { testLog } from '../support/stack.ts';
import { tempDir } from '../support/tmp.ts';

/**
 * `gtx settlement api-key create|list|revoke`, the real CLI against a real ledger (a SQLite file
 * named by --config; PostgreSQL by DATABASE_URL), checked through a running API on that ledger.
 */

const GTX = join(import.meta.dirname, '../../bin/gtx.js');
const pgUrl = await postgresUrl();
const skipPostgres = requireOrSkip('gtx settlement api-key on PostgreSQL', !!pgUrl, 'no PostgreSQL at 127.0.0.1:5432');

interface Target {
  name: string;
  skip: boolean;
  /** Environment for the CLI and the ledger the test opens beside it. */
  setup(dir: string): Promise<{ env: NodeJS.ProcessEnv; ledgerOpts: { sqlitePath: string; databaseUrl?: string }; stored(): string; drop(): Promise<void> }>;
}

const targets: Target[] = [
  {
    name: 'a SQLite ledger file',
    skip: false,
    async setup(dir) {
      const sqlitePath = join(dir, 'ledger.sqlite');
      const env: NodeJS.ProcessEnv = { ...process.env };
      delete env.DATABASE_URL;
      delete env.GTX_ADMIN_KEY;
      return {
        env,
        ledgerOpts: { sqlitePath },
        stored: () => [sqlitePath, `${sqlitePath}-wal`].filter(existsSync).map((f) => readFileSync(f).toString('latin1')).join(''),
        drop: async () => undefined,
      };
    },
  },
  {
    name: 'PostgreSQL (DATABASE_URL)',
    skip: skipPostgres,
    async setup(dir) {
      const schema = await freshPostgresSchema(pgUrl!);
      const env: NodeJS.ProcessEnv = { ...process.env, DATABASE_URL: schema.url };
      delete env.GTX_ADMIN_KEY;
      return { env, ledgerOpts: { sqlitePath: join(dir, 'unused.sqlite'), databaseUrl: schema.url }, stored: () => '', drop: () => schema.drop() };
    },
  },
];

describe.each(targets)('gtx settlement api-key on $name', ({ skip, setup }) => {
  const dir = tempDir('gtx-cli-api-key-');
  const config = join(dir.path, 'settlement.toml');
  let env: NodeJS.ProcessEnv;
  let ledgerOpts: { sqlitePath: string; databaseUrl?: string };
  let ledger: Ledger | undefined;
  let stored: () => string;
  let drop: () => Promise<void>;

  const gtx = (...args: string[]) =>
    spawnSync(process.execPath, [GTX, 'settlement', 'api-key', ...args, '--config', config], { cwd: dir.path, env, encoding: 'utf8', timeout: 30_000 });

  beforeAll(async () => {
    if (skip) return;
    writeFileSync(config, '[ledger]\nsqlite_path = "./ledger.sqlite"\n');
    const s = await setup(dir.path);
    env = s.env;
    ledgerOpts = s.ledgerOpts;
    stored = s.stored;
    drop = s.drop;
  });
  afterAll(async () => {
    await ledger?.close();
    await drop?.();
    dir.remove();
  });

  it.skipIf(skip)('creates a key shown once, lists it, and revokes it: the running API refuses it at once', async () => {
    const created = gtx('create', '--role', 'utility', '--label', 'grid operator');
    expect(created.status, created.stderr).toBe(0);
    const key = created.stdout.trim();
    expect(created.stdout).toMatch(/^gtx_[A-Za-z0-9_-]{43}\n$/);
    const id = /API key ([a-z2-9]{10}) \(role utility, "grid operator"\) created/.exec(created.stderr)?.[1];
    expect(id, created.stderr).toBeDefined();
    expect(created.stderr).not.toContain(key);

    // The ledger the CLI created and migrated, opened beside it like a running settlement.
    ledger = await openLedger(ledgerOpts);
    const app = buildApi({
      ledger,
      metrics: createMetrics(),
      log: testLog('api'),
      enrollment: new Enrollment(ledger, { now: Date.now, mqttUrl: () => '' }),
      apiKeys: new ApiKeyStore(ledger.db),
      adminKey: null,
      codeTtlMs: 3600_000,
      onRevoke: () => undefined,
    });
    try {
      const meters = () => app.inject({ method: 'GET', url: '/api/v1/meters', headers: { authorization: `Bearer ${key}` } });
      expect((await meters()).statusCode).toBe(200);

      const admin = gtx('create', '--role', 'admin');
      expect(admin.status, admin.stderr).toBe(0);
      const adminId = /API key ([a-z2-9]{10}) \(role admin\) created/.exec(admin.stderr)?.[1];

      const listed = gtx('list');
      expect(listed.status, listed.stderr).toBe(0);
      const lines = listed.stdout.trim().split('\n');
      expect(lines[0]).toMatch(/^ID\s+ROLE\s+CREATED\s+REVOKED\s+LABEL$/);
      expect(lines.slice(1).map((l) => l.split(/\s+/).slice(0, 2))).toEqual([
        [id, 'utility'],
        [adminId, 'admin'],
      ]);
      expect(lines[1]).toMatch(/ \d{4}-\d\d-\d\dT\S+Z +- +grid operator$/);
      expect(listed.stdout).not.toContain(key);

      const revoked = gtx('revoke', '--id', id!);
      expect(revoked.status, revoked.stderr).toBe(0);
      expect(revoked.stdout).toMatch(new RegExp(`API key ${id} revoked`));
      // No restart, no cache: the next request is refused.
      expect((await meters()).statusCode).toBe(401);
      expect(gtx('list').stdout.split('\n').find((l) => l.startsWith(id!))).toMatch(/ \d{4}-\d\d-\d\dT\S+Z +grid operator$/);

      const again = gtx('revoke', '--id', id!);
      expect([again.status, again.stdout.trim()]).toEqual([0, `API key ${id} was already revoked`]);

      // An installer key is bound to its customers: listed with them, and the API sees them.
      const installer = gtx('create', '--role', 'installer', '--label', 'Acme', '--customers', 'acct-b,acct-a,acct-b');
      expect(installer.status, installer.stderr).toBe(0);
      const installerId = /API key ([a-z2-9]{10}) \(role installer for customers acct-a, acct-b, "Acme"\) created/.exec(installer.stderr)?.[1];
      expect(installerId, installer.stderr).toBeDefined();
      expect(gtx('list').stdout.split('\n').find((l) => l.startsWith(installerId!))).toMatch(/ Acme {2}\[customers acct-a,acct-b\]$/);
      const asInstaller = (url: string) => app.inject({ method: 'GET', url, headers: { authorization: `Bearer ${installer.stdout.trim()}` } });
      expect((await asInstaller('/api/v1/gateways')).statusCode).toBe(200);
      expect((await asInstaller('/api/v1/api-keys')).statusCode).toBe(403);
    } finally {
      await app.close();
    }

    // Only the hash is in the ledger.
    const rows = await ledger!.db.selectFrom('api_keys').selectAll().execute();
    expect(rows.find((r) => r.id === id)?.key_hash).toBe(hashApiKey(key));
    expect(JSON.stringify(rows)).not.toContain(key.slice(4));
    expect(stored()).not.toContain(key.slice(4));
  }, 90_000);

});

describe('gtx settlement api-key with bad input', () => {
  const dir = tempDir('gtx-cli-api-key-bad-');
  afterAll(() => dir.remove());

  it('refuses it with one message and exit code 2', () => {
    const config = join(dir.path, 'settlement.toml');
    writeFileSync(config, '[ledger]\nsqlite_path = "./ledger.sqlite"\n');
    const env: NodeJS.ProcessEnv = { ...process.env };
    delete env.DATABASE_URL;
    const cases: Array<[string[], RegExp]> = [
      [['create'], /--role is required/],
      [['create', '--role', 'root'], /--role must be one of admin, utility, installer, prosumer, got "root"/],
      [['create', '--role', 'installer'], /an installer key needs --customers ID,ID…/],
      [['create', '--role', 'installer', '--customers', 'acct-a,b:c'], /--customers: "b:c" is not an account id/],
      [['create', '--role', 'utility', '--customers', 'acct-a'], /--customers is for installer keys only/],
      [['create', '--role', 'prosumer'], /a prosumer key needs --account ID/],
      [['create', '--role', 'utility', '--account', 'alice'], /--account is for prosumer keys only/],
      [['create', '--role', 'prosumer', '--account', 'nobody'], /no account nobody in the ledger/],
      [['revoke', '--id', 'nosuchkey1'], /no API key with id nosuchkey1/],
      [['rotate'], /unknown api-key command "rotate"/],
    ];
    for (const [args, message] of cases) {
      const r = spawnSync(process.execPath, [GTX, 'settlement', 'api-key', ...args, '--config', config], { cwd: dir.path, env, encoding: 'utf8', timeout: 30_000 });
      expect([args.join(' '), r.status]).toEqual([args.join(' '), 2]);
      expect(r.stderr.split('\n')[0]).toMatch(message);
      expect(r.stderr).not.toMatch(/\n\s+at /); // no stack trace
    }
  }, 90_000);
});
