import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { findBinary } from './services.ts';
import { waitFor } from './wait.ts';

/** socat, for a serial line between two pseudo-terminals; undefined when it is not installed. */
export const SOCAT = findBinary('socat');

/**
 * A null-modem cable in software: two pseudo-terminals joined by socat, at stable paths (links
 * in `dir`), so the gateway opens one end as its RS-485 adapter and a simulated bus serves the
 * other. `unplug()` ends socat (both ends vanish, as a USB adapter pulled out); `plug()` makes a
 * new pair at the same paths.
 */
export class PtyPair {
  readonly gatewayEnd: string;
  readonly deviceEnd: string;
  private proc: ChildProcess | undefined;

  constructor(dir: string, name = 'rs485') {
    this.gatewayEnd = join(dir, `${name}-gw`);
    this.deviceEnd = join(dir, `${name}-dev`);
  }

  async plug(): Promise<void> {
    if (!SOCAT) throw new Error('socat is not installed');
    const proc = spawn(SOCAT, [`pty,raw,echo=0,link=${this.gatewayEnd}`, `pty,raw,echo=0,link=${this.deviceEnd}`], { stdio: 'ignore' });
    this.proc = proc;
    await waitFor(() => existsSync(this.gatewayEnd) && existsSync(this.deviceEnd), `socat's pseudo-terminals at ${this.gatewayEnd}`, 10_000, 20);
  }

  async unplug(): Promise<void> {
    const p = this.proc;
    this.proc = undefined;
    if (!p || p.exitCode !== null) return;
    const exited = new Promise((r) => p.once('exit', r));
    p.kill('SIGTERM');
    await exited;
    await waitFor(() => !existsSync(this.gatewayEnd), 'the pseudo-terminal links to go', 5_000, 20);
  }
}
