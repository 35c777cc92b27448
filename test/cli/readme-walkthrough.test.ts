import Database from 'better-sqlite3';
import { spawn } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, rmdirSync, rmSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { waitFor } from '../support/wait.ts';

/**
 * README's "Installing a gateway by hand", run as written: the block between the walkthrough
 * markers, with bash from the repository's folder (where `npx gtx` is this package), while
 * something holds 127.0.0.1:1883 (CI's Mosquitto, or a socket of this test). The block waits
 * for the gateway's readings itself and stops what it started; the test checks both.
 */

const ROOT = join(import.meta.dirname, '../..');
const DATA = join(ROOT, 'data', 'walkthrough');

/** The shell block between the markers, fences removed. */
function walkthrough(): string {
  const readme = readFileSync(join(ROOT, 'README.md'), 'utf8');
  const m = /<!-- walkthrough:begin -->\s*```sh\n([\s\S]*?)\n```\s*<!-- walkthrough:end -->/.exec(readme);
  if (!m) throw new Error('README.md has no ```sh block between <!-- walkthrough:begin --> and <!-- walkthrough:end -->');
  return m[1]!;
}

/** Holds 127.0.0.1:1883 unless something (Mosquitto) already does; undefined when it was taken already. */
async function occupy1883(): Promise<Server | undefined> {
  const srv = createServer((s) => s.destroy());
  return new Promise((resolve, reject) => {
    srv.once('error', (e: NodeJS.ErrnoException) => (e.code === 'EADDRINUSE' ? resolve(undefined) : reject(e)));
    srv.listen(1883, '127.0.0.1', () => resolve(srv));
  });
}

/** Whether any process of the group is left (signal 0 only checks). */
function groupAlive(pgid: number): boolean {
  try {
    process.kill(-pgid, 0);
    return true;
  } catch {
    return false;
  }
}

describe('the README walkthrough', () => {
  let blocker: Server | undefined;
  // ./data is the demo's; the walkthrough's `mkdir -p` makes it when the demo never ran.
  const hadData = existsSync(join(ROOT, 'data'));
  beforeAll(async () => {
    blocker = await occupy1883();
    rmSync(DATA, { recursive: true, force: true });
  });
  afterAll(async () => {
    if (blocker) await new Promise<void>((r) => blocker!.close(() => r()));
    rmSync(DATA, { recursive: true, force: true });
    if (!hadData && readdirSync(join(ROOT, 'data')).length === 0) rmdirSync(join(ROOT, 'data'));
  });

  it('runs as written, readings arrive for the gateway\'s meter, and it stops what it started', { timeout: 240_000 }, async () => {
    const script = walkthrough();
    // A newcomer's shell: no ledger URL, admin key or log level from this environment.
    const env: NodeJS.ProcessEnv = { ...process.env };
    for (const k of ['DATABASE_URL', 'GTX_ADMIN_KEY', 'GTX_LOG_LEVEL', 'GTX_MQTT_PASSWORD']) delete env[k];
    // -e: a line that fails stops the walkthrough, so every line must succeed as written.
    // detached: its own process group, so that whatever it leaves behind can be found and killed.
    const bash = spawn('bash', ['-e', '-c', script], { cwd: ROOT, env, detached: true, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    bash.stdout.on('data', (b: Buffer) => (out += b.toString()));
    bash.stderr.on('data', (b: Buffer) => (err += b.toString()));
    const exited = new Promise<number | null>((resolve) => bash.once('close', (code) => resolve(code)));
    const pgid = bash.pid!;
    try {
      const code = await Promise.race([exited, new Promise<'timeout'>((r) => setTimeout(() => r('timeout'), 200_000).unref())]);
      const log = (name: string) => (existsSync(join(DATA, name)) ? readFileSync(join(DATA, name), 'utf8') : '(none)');
      const context = `stdout:\n${out}\nstderr:\n${err}\nsettlement.log (tail):\n${log('settlement.log').slice(-3000)}\ngateway.log (tail):\n${log('gateway.log').slice(-3000)}`;
      expect(code, context).toBe(0);

      // The readings arrived: the API listed the meter, the gateway's status shows acks from the broker enrollment named.
      expect(out, context).toMatch(/\[\{"meter":"gw-lab-1-tcp-1","gateway":"gw-lab-1","owner":"alice"[^\]]*"readings":[1-9]\d*,"lastSeq":[1-9]\d*,"lastReading":\{"seq":[1-9]/);
      expect(out, context).toMatch(/unit {3}1: eastron-sdm120/);
      expect(out, context).toContain('acknowledged by settlement: the gateway is ready (gtx gateway run)');
      expect(out, context).toContain('broker: mqtt://127.0.0.1:18830 (from enrollment)');
      expect(out, context).toMatch(/^ {2}last ack from settlement: \d{4}-/m);
      expect(out, context).toMatch(/^ {2}meter gw-lab-1-tcp-1: last seq [1-9]\d*/m);
      const ledger = new Database(join(DATA, 'ledger.sqlite'), { readonly: true });
      try {
        const n = ledger.prepare("SELECT count(*) FROM readings WHERE meter = 'gw-lab-1-tcp-1' AND gateway = 'gw-lab-1'").pluck().get() as number;
        expect(n).toBeGreaterThan(0);
      } finally {
        ledger.close();
      }

      // Its last lines stopped everything it started, cleanly.
      // (JSON log lines and the plain ones share the file, in no set order.)
      expect(log('settlement.log')).toMatch(/^settlement stopped$/m);
      expect(log('gateway.log')).toMatch(/^gateway stopped$/m);
      expect(log('meter.log')).toMatch(/^simulator stopped$/m);
      await waitFor(() => !groupAlive(pgid), 'no process of the walkthrough left running', 10_000);
    } finally {
      if (groupAlive(pgid)) process.kill(-pgid, 'SIGKILL');
    }
  });
});
