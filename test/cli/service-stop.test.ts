import { spawn, type ChildProcess } from 'node:child_process';
import { createServer, type Server } from 'node:net';
import { readFileSync } from 'node:fs';
import { basename, join } from 'node:path';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { freePort } from '../support/ports.ts';
import { startSimulator } from '../support/stack.ts';
import { tempDir } from '../support/tmp.ts';
import { waitFor } from '../support/wait.ts';
import { writeGatewayToml } from '../gateway/gateway-toml.ts';

/**
 * `./bin/gtx.js settlement run` and `gateway run`, started as the README starts them, are one
 * process each (node with the flags of the file's first line) that stops cleanly on SIGTERM and
 * SIGINT (exit 0, "… stopped"); a port already in use is one line naming the flag.
 */

const GTX = join(import.meta.dirname, '../../bin/gtx.js');
const dir = tempDir('gtx-service-stop-');
const children: ChildProcess[] = [];
afterEach(() => {
  for (const c of children.splice(0)) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
});
afterAll(() => dir.remove());

interface Service {
  child: ChildProcess;
  out: () => string;
  err: () => string;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null; atMs: number }>;
}

function start(args: string[]): Service {
  const env: NodeJS.ProcessEnv = { ...process.env, GTX_LOG_LEVEL: 'info' };
  delete env.DATABASE_URL;
  delete env.GTX_ADMIN_KEY;
  // The file itself, as a user or a supervisor runs it (its first line: env -S node --flags).
  const child = spawn(GTX, args, { cwd: dir.path, env, stdio: ['ignore', 'pipe', 'pipe'] });
  children.push(child);
  let out = '';
  let err = '';
  child.stdout!.on('data', (b: Buffer) => (out += b.toString()));
  child.stderr!.on('data', (b: Buffer) => (err += b.toString()));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null; atMs: number }>((resolve) =>
    child.once('close', (code, signal) => resolve({ code, signal, atMs: Date.now() })),
  );
  return { child, out: () => out, err: () => err, exited };
}

describe('gtx settlement run', () => {
  it.each(['SIGTERM', 'SIGINT'] as const)('stops cleanly on %s and exits 0', { timeout: 60_000 }, async (sig) => {
    const s = start(['settlement', 'run', '--data', join(dir.path, `data-${sig}`), '--mqtt-listen', '127.0.0.1:0', '--http-listen', '127.0.0.1:0']);
    const api = await waitFor(() => /settlement running: broker mqtt:\/\/127\.0\.0\.1:\d+, API (http:\/\/\S+),/.exec(s.out())?.[1], 'the settlement to say it runs', 30_000);
    expect((await fetch(`${api}/health`)).status).toBe(200);
    // env handed over to node: the pid a supervisor signals is node, running with the V8 flag.
    const cmdline = readFileSync(`/proc/${s.child.pid}/cmdline`, 'utf8').split('\0');
    expect(basename(cmdline[0]!)).toMatch(/^node/);
    expect(cmdline).toContain('--max-semi-space-size=32');
    const sentAt = Date.now();
    s.child.kill(sig);
    if (sig === 'SIGINT') s.child.kill('SIGINT'); // npm forwards a Ctrl-C the terminal also sent: a repeat must not cut the stop short
    const { code, signal, atMs } = await s.exited;
    expect({ code, signal }, s.err()).toEqual({ code: 0, signal: null });
    expect(atMs - sentAt).toBeLessThan(15_000);
    expect(s.out()).toMatch(/\nsettlement stopped\n$/);
    expect(s.err()).toContain('"msg":"settlement stopped"');
  });

  it('names the flag and config key when a port is taken, in one line, exit 2', { timeout: 60_000 }, async () => {
    const taken: Server = createServer();
    await new Promise<void>((r) => taken.listen(0, '127.0.0.1', r));
    const port = (taken.address() as { port: number }).port;
    try {
      const mqtt = start(['settlement', 'run', '--data', join(dir.path, 'busy'), '--mqtt-listen', `127.0.0.1:${port}`, '--http-listen', '127.0.0.1:0']);
      const http = start(['settlement', 'run', '--data', join(dir.path, 'busy'), '--mqtt-listen', '127.0.0.1:0', '--http-listen', `127.0.0.1:${port}`]);
      const [m, h] = await Promise.all([mqtt.exited, http.exited]);
      // Logs aside (JSON lines), the failure is one line.
      const plain = (s: Service) => s.err().split('\n').filter((l) => l && !l.startsWith('{'));
      expect([m.code, plain(mqtt)]).toEqual([
        2,
        [
          `gtx: 127.0.0.1:${port} is already in use (another MQTT broker, such as Mosquitto?): give the embedded broker another address with --mqtt-listen HOST:PORT or [mqtt] listen, e.g. --mqtt-listen 127.0.0.1:18830`,
        ],
      ]);
      expect([h.code, plain(http)]).toEqual([
        2,
        [`gtx: 127.0.0.1:${port} is already in use: give the REST API another address with --http-listen HOST:PORT or [http] listen, e.g. --http-listen 127.0.0.1:18080`],
      ]);
    } finally {
      await new Promise<void>((r) => taken.close(() => r()));
    }
  });
});

describe('gtx gateway run', () => {
  it('stops cleanly on SIGTERM and exits 0', { timeout: 60_000 }, async () => {
    const { sim, port } = await startSimulator('sdm120', 'household');
    try {
      // No broker answers at this port: the gateway runs (and retries), and must still stop at once.
      const config = writeGatewayToml(dir.path, { id: 'gw-stop', meter: 'm-stop', meterPort: port, url: `mqtt://127.0.0.1:${await freePort()}` });
      const g = start(['gateway', 'run', '--config', config]);
      await waitFor(() => /gateway gw-stop running with 1 meter\(s\)/.test(g.out()), 'the gateway to say it runs', 30_000);
      const sentAt = Date.now();
      g.child.kill('SIGTERM');
      const { code, signal, atMs } = await g.exited;
      expect({ code, signal }, g.err()).toEqual({ code: 0, signal: null });
      expect(atMs - sentAt).toBeLessThan(15_000);
      expect(g.out()).toMatch(/\ngateway stopped\n$/);
    } finally {
      await sim.stop();
    }
  });
});
