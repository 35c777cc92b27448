import { spawn, spawnSync } from 'node:child_process';
import { join } from 'node:path';

/** The real `gtx` CLI, as a user runs it (`node bin/gtx.js`, the compiled code). */
export const GTX = join(import.meta.dirname, '../../bin/gtx.js');

export interface CliRun {
  status: number | null;
  stdout: string;
  stderr: string;
}

export interface CliOptions {
  cwd?: string;
  env?: NodeJS.ProcessEnv;
  /** Leave out DATABASE_URL, so that the CLI uses the SQLite ledger its config names. */
  withoutDatabaseUrl?: boolean;
}

function environment(opts: CliOptions): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env, GTX_LOG_LEVEL: 'warn', ...opts.env };
  if (opts.withoutDatabaseUrl) delete env.DATABASE_URL;
  return env;
}

/** Runs gtx and waits for it. */
export function gtxSync(args: string[], opts: CliOptions = {}): CliRun {
  const r = spawnSync(process.execPath, [GTX, ...args], { encoding: 'utf8', cwd: opts.cwd, env: environment(opts) });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

/** Runs gtx without blocking the test's event loop (several may run at once, or wait on a server the test runs). */
export function gtxAsync(args: string[], opts: CliOptions = {}): Promise<CliRun> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [GTX, ...args], { cwd: opts.cwd, env: environment(opts), stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (b: Buffer) => (stdout += b.toString()));
    child.stderr.on('data', (b: Buffer) => (stderr += b.toString()));
    child.once('error', reject);
    child.once('close', (status) => resolve({ status, stdout, stderr }));
  });
}
