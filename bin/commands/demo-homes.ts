import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import type { Settlement } from '../../settlement/main.ts';
import { ApiKeyStore } from '../../settlement/registry/api-keys.ts';

/**
 * The demo's homes as REST clients, each with its own prosumer key bound to its account: what a
 * home automation flow would hold. The keys are kept in the data dir (mode 0600) and reused
 * across restarts instead of adding keys.
 */
export interface DemoHome {
  account: string;
  /** Has rooftop PV: sells energy and certificates. */
  sells: boolean;
}

export class DemoHomes {
  private readonly keys = new Map<string, string>();

  constructor(
    private readonly settlement: Settlement,
    readonly homes: DemoHome[],
  ) {}

  async load(keysFile: string): Promise<void> {
    const store = new ApiKeyStore(this.settlement.ledger.db);
    const saved = (existsSync(keysFile) ? JSON.parse(readFileSync(keysFile, 'utf8')) : {}) as Record<string, string>;
    for (const h of this.homes) {
      const key = saved[h.account];
      const principal = key ? await store.authenticate(key) : undefined;
      this.keys.set(h.account, principal?.role === 'prosumer' && principal.account === h.account ? key! : (await store.create('prosumer', 'gtx demo home', h.account)).key);
    }
    writeFileSync(keysFile, JSON.stringify(Object.fromEntries(this.keys), null, 2), { mode: 0o600 });
  }

  key(account: string): string | undefined {
    return this.keys.get(account);
  }

  async api<T>(account: string, method: string, path: string, body?: unknown): Promise<{ status: number; json: T }> {
    const res = await fetch(`${this.settlement.httpUrl}${path}`, {
      method,
      headers: { authorization: `Bearer ${this.keys.get(account)}`, ...(body ? { 'content-type': 'application/json' } : {}) },
      ...(body ? { body: JSON.stringify(body) } : {}),
    });
    return { status: res.status, json: (await res.json()) as T };
  }
}

/** Runs `tick` every `everyMs`, never two at once; `stop()` waits for the one running. */
export class Ticker {
  private timer?: NodeJS.Timeout;
  private running: Promise<void> | null = null;

  constructor(
    private readonly tick: () => Promise<void>,
    private readonly onError: (e: Error) => void,
  ) {}

  start(everyMs: number): void {
    this.timer = setInterval(() => {
      this.running ??= this.tick()
        .catch((e: Error) => this.onError(e))
        .finally(() => (this.running = null));
    }, everyMs);
    this.timer.unref();
  }

  async stop(): Promise<void> {
    clearInterval(this.timer);
    await this.running;
  }
}
