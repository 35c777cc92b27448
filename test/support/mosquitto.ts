import { spawn, type ChildProcess } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { connect as tcpConnect } from 'node:net';
import { waitFor } from './wait.ts';

/**
 * A real `mosquitto` started by a test with a generated configuration (never the machine's own
 * on 1883, which is anonymous). Its pid goes to `pidFile`, as MosquittoPasswordSync expects.
 */
export interface MosquittoProcess {
  url: string;
  pid: number;
  /** Everything Mosquitto printed (`-v`: connects, refusals, denied publishes). */
  output: string[];
  /** SIGHUP: re-read the password and ACL files. */
  reload(): void;
  stop(): Promise<void>;
}

/** Mosquitto started as root switches to user "mosquitto", who cannot read a private temp dir. */
export const mosquittoUser = (): string | undefined => (process.getuid?.() === 0 ? 'root' : undefined);

export async function startMosquitto(bin: string, conf: string, port: number, pidFile?: string): Promise<MosquittoProcess> {
  const output: string[] = [];
  const p: ChildProcess = spawn(bin, ['-c', conf, '-v'], { stdio: ['ignore', 'pipe', 'pipe'] });
  const keep = (b: Buffer) => void output.push(...b.toString().split('\n').filter(Boolean));
  p.stdout!.on('data', keep);
  p.stderr!.on('data', keep);
  let exited = false;
  const exit = new Promise<void>((resolve) => p.once('exit', () => ((exited = true), resolve())));
  if (pidFile) writeFileSync(pidFile, String(p.pid));
  await waitFor(
    async () => {
      if (exited) throw new Error(`mosquitto exited: ${output.slice(-5).join(' | ')}`);
      return new Promise<boolean>((resolve) => {
        const s = tcpConnect(port, '127.0.0.1', () => (s.destroy(), resolve(true)));
        s.once('error', () => resolve(false));
      });
    },
    `mosquitto listening on ${port}`,
    10_000,
  );
  return {
    url: `mqtt://127.0.0.1:${port}`,
    pid: p.pid!,
    output,
    reload: () => void p.kill('SIGHUP'),
    async stop() {
      if (exited) return;
      p.kill('SIGTERM');
      await exit;
    },
  };
}
