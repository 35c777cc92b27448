import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import type { Settlement } from '../../settlement/main.ts';
import { ApiKeyStore } from '../../settlement/registry/api-keys.ts';

/**
 * The demo's homes at the market, as a prosumer would be through the REST API with its own
 * prosumer key: homes with PV offer energy a little below the indicative price, households bid
 * a little above it, one order per home and delivery interval. Credits come from an admin
 * deposit (in process, as `gtx market deposit` would). What it does is what a home automation
 * flow would do; nothing here reaches into the market's internals.
 */
export interface DemoHome {
  account: string;
  sells: boolean;
}

const START_CREDITS = 50_000n; // 500.00 THB
const TOP_UP_BELOW = 10_000n;

export class DemoTrader {
  private timer?: NodeJS.Timeout;
  private readonly keys = new Map<string, string>();
  private running: Promise<void> | null = null;
  placed = 0;
  refused = 0;

  constructor(
    private readonly settlement: Settlement,
    private readonly homes: DemoHome[],
    private readonly market: string,
    private readonly now: () => number,
    private readonly log: (line: string) => void,
  ) {}

  /** `keysFile`: the homes' prosumer keys (mode 0600), reused across restarts instead of adding keys. */
  async start(keysFile: string, everyMs = 5_000): Promise<void> {
    const store = new ApiKeyStore(this.settlement.ledger.db);
    const saved = (existsSync(keysFile) ? JSON.parse(readFileSync(keysFile, 'utf8')) : {}) as Record<string, string>;
    for (const h of this.homes) {
      const key = saved[h.account];
      const principal = key ? await store.authenticate(key) : undefined;
      this.keys.set(h.account, principal?.role === 'prosumer' && principal.account === h.account ? key! : (await store.create('prosumer', 'gtx demo home', h.account)).key);
    }
    writeFileSync(keysFile, JSON.stringify(Object.fromEntries(this.keys), null, 2), { mode: 0o600 });
    this.timer = setInterval(() => {
      this.running ??= this.tick().finally(() => (this.running = null));
    }, everyMs);
    this.timer.unref();
  }

  async stop(): Promise<void> {
    clearInterval(this.timer);
    await this.running;
  }

  private async api<T>(account: string, method: string, path: string, body?: unknown): Promise<{ status: number; json: T }> {
    const res = await fetch(`${this.settlement.httpUrl}${path}`, {
      method,
      headers: { authorization: `Bearer ${this.keys.get(account)}`, ...(body ? { 'content-type': 'application/json' } : {}) },
      ...(body ? { body: JSON.stringify(body) } : {}),
    });
    return { status: res.status, json: (await res.json()) as T };
  }

  private async tick(): Promise<void> {
    const { current } = (await this.api<{ current: { price: string } }>(this.homes[0]!.account, 'GET', `/api/v1/markets/${this.market}/price`)).json;
    const indicative = Number(current.price);
    for (const [n, h] of this.homes.entries()) {
      if (!h.sells) {
        const [thb] = (await this.settlement.market.money.balances(h.account)).filter((b) => b.currency === 'THB');
        if (!thb || thb.balance < TOP_UP_BELOW) await this.settlement.market.deposit(h.account, 'THB', START_CREDITS, 'gtx demo credits');
      }
      // One open order per home at a time: after its auction, the next delivery's.
      const open = await this.api<unknown[]>(h.account, 'GET', '/api/v1/orders?status=open&limit=1');
      if (open.json.length > 0) continue;
      const side = h.sells ? 'sell' : 'buy';
      const spread = 0.1 + 0.05 * (n % 4);
      const limit = Math.max(0, indicative + (h.sells ? -spread : spread)).toFixed(2);
      const energyKwh = (0.1 + (n % 3) * 0.1).toFixed(3);
      const r = await this.api<{ code?: string; message?: string }>(h.account, 'POST', '/api/v1/orders', { market: this.market, side, energyKwh, limitPrice: limit });
      if (r.status === 201) {
        this.placed++;
      } else {
        this.refused++;
        if (this.refused <= 3) this.log(`demo order of ${h.account} refused: ${r.json.code}: ${r.json.message}`);
      }
    }
  }
}
