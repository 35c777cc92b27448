import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { closeSync, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort } from './ports.ts';

/**
 * A real InfluxDB 1.x for tests: the one CI started (GTX_INFLUX_URL, see .ci/influxd.sh), or one
 * started here from the `influxd` binary with all of its state in a temp dir.
 */

/** Does anything answer InfluxDB's /ping (204) at `url`? */
export async function influxPing(url: string, timeoutMs = 1_000): Promise<boolean> {
  try {
    const res = await fetch(new URL('/ping', url), { signal: AbortSignal.timeout(timeoutMs) });
    await res.body?.cancel();
    return res.status === 204;
  } catch {
    return false;
  }
}

/** Whether an `influxd` binary is on PATH. */
export function hasInfluxd(): boolean {
  return spawnSync('sh', ['-c', 'command -v influxd'], { stdio: 'ignore' }).status === 0;
}

let shared: Promise<string | undefined> | undefined;

/**
 * The URL of a running InfluxDB, or undefined when there is none to be had. One influxd per
 * test process, shared by the tests in it; it is stopped and its temp dir removed when the
 * process exits, however it exits.
 */
export function influxUrl(): Promise<string | undefined> {
  shared ??= (async () => {
    const env = process.env.GTX_INFLUX_URL;
    if (env) {
      if (await influxPing(env)) return env;
      process.stderr.write(`GTX_INFLUX_URL=${env} does not answer /ping; trying a local influxd\n`);
    }
    if (!hasInfluxd()) return undefined;
    const server = await startInfluxd();
    return server.url;
  })();
  return shared;
}

export interface InfluxdServer {
  readonly url: string;
  readonly httpPort: number;
  readonly dir: string;
  readonly running: boolean;
  /** Stops influxd (a real outage: the port refuses connections); its data stays for `start()`. */
  stop(): Promise<void>;
  /** Starts influxd again on the same ports with the same data. */
  start(): Promise<void>;
  /** Stops influxd for good and removes its temp dir. */
  close(): Promise<void>;
}

/**
 * A watchdog for an influxd this process started: it waits on a pipe from this process, and
 * when the pipe closes without a "cancel" line (this process exited or was killed, however)
 * it stops influxd and removes the state dir. `$1` is the dir, `$2` influxd's pid (a zombie
 * counts as gone: its parent, this process, is what is no longer there to reap it).
 */
const WATCHDOG = `
alive() { s=$(ps -o stat= -p "$1" 2>/dev/null) || return 1; case "$s" in Z*) return 1;; esac; }
read -r cmd
[ "$cmd" = cancel ] && exit 0
kill -TERM "$2" 2>/dev/null
i=0
while alive "$2" && [ $i -lt 100 ]; do sleep 0.1; i=$((i+1)); done
kill -KILL "$2" 2>/dev/null
rm -rf "$1"
`;

function config(dir: string, httpPort: number, bindPort: number): string {
  return `reporting-disabled = true
bind-address = "127.0.0.1:${bindPort}"
[meta]
  dir = "${dir}/meta"
[data]
  dir = "${dir}/data"
  wal-dir = "${dir}/wal"
  query-log-enabled = false
[http]
  bind-address = "127.0.0.1:${httpPort}"
  log-enabled = false
[monitor]
  store-enabled = false
`;
}

/** Starts a private influxd (free loopback ports, state in a temp dir) and waits for /ping. */
export async function startInfluxd(): Promise<InfluxdServer> {
  let lastError = '';
  for (let attempt = 0; attempt < 3; attempt++) {
    // A free port can be taken between asking and binding: try again with new ones.
    const dir = mkdtempSync(join(tmpdir(), 'gtx-influxd-'));
    const httpPort = await freePort();
    let bindPort = await freePort();
    while (bindPort === httpPort) bindPort = await freePort();
    writeFileSync(join(dir, 'influxdb.conf'), config(dir, httpPort, bindPort));
    const server = new GuardedInfluxd(dir, httpPort);
    try {
      await server.start();
      return server;
    } catch (e) {
      lastError = (e as Error).message;
      await server.close();
    }
  }
  throw new Error(`could not start influxd: ${lastError}`);
}

class GuardedInfluxd implements InfluxdServer {
  readonly url: string;
  private proc: { child: ChildProcess; watchdog: ChildProcess; exited: Promise<void> } | undefined;

  constructor(
    readonly dir: string,
    readonly httpPort: number,
  ) {
    this.url = `http://127.0.0.1:${httpPort}`;
  }

  get running(): boolean {
    return this.proc !== undefined;
  }

  async start(): Promise<void> {
    if (this.proc) return;
    const out = openSync(join(this.dir, 'influxd.log'), 'a');
    const child = spawn('influxd', ['-config', join(this.dir, 'influxdb.conf')], { stdio: ['ignore', out, out] });
    closeSync(out);
    let exited = false;
    const exitedP = new Promise<void>((resolve) => {
      child.once('exit', () => {
        exited = true;
        resolve();
      });
      child.once('error', () => {
        exited = true;
        resolve();
      });
    });
    const watchdog = spawn('sh', ['-c', WATCHDOG, 'influxd-watchdog', this.dir, String(child.pid)], { stdio: ['pipe', 'ignore', 'ignore'] });
    watchdog.once('error', () => undefined);
    // Neither influxd, its watchdog nor the pipe may keep the test process alive.
    child.unref();
    watchdog.unref();
    (watchdog.stdin as unknown as { unref?: () => void } | null)?.unref?.();
    this.proc = { child, watchdog, exited: exitedP };

    const deadline = Date.now() + 20_000;
    while (!(await influxPing(this.url, 500))) {
      if (exited || Date.now() > deadline) {
        await this.stop();
        const log = this.log().trim().split('\n').slice(-5).join(' | ');
        throw new Error(`influxd did not answer /ping on ${this.url}${exited ? ' (it exited)' : ''}: ${log}`);
      }
      await new Promise((r) => setTimeout(r, 50));
    }
  }

  async stop(): Promise<void> {
    const proc = this.proc;
    if (!proc) return;
    this.proc = undefined;
    proc.watchdog.stdin?.end('cancel\n');
    proc.child.kill('SIGTERM');
    const killLater = setTimeout(() => proc.child.kill('SIGKILL'), 10_000);
    await proc.exited;
    clearTimeout(killLater);
  }

  async close(): Promise<void> {
    await this.stop();
    rmSync(this.dir, { recursive: true, force: true });
  }

  private log(): string {
    try {
      return readFileSync(join(this.dir, 'influxd.log'), 'utf8');
    } catch {
      return '';
    }
  }
}
