import type { Settlement } from '../../settlement/main.ts';
import type { DemoHomes } from './demo-homes.ts';

/**
 * The demo's homes at the market, as a prosumer would be through the REST API with its own
 * prosumer key: homes with PV offer energy a little below the indicative price, households bid
 * a little above it, one order per home and delivery interval. Credits come from an admin
 * deposit (in process, as `gtx market deposit` would). What it does is what a home automation
 * flow would do; nothing here reaches into the market's internals.
 */
const START_CREDITS = 50_000n; // 500.00 THB
const TOP_UP_BELOW = 10_000n;

export class DemoTrader {
  placed = 0;
  refused = 0;

  constructor(
    private readonly settlement: Settlement,
    private readonly homes: DemoHomes,
    private readonly market: string,
    private readonly log: (line: string) => void,
  ) {}

  async tick(): Promise<void> {
    const first = this.homes.homes[0]!.account;
    const { current } = (await this.homes.api<{ current: { price: string } }>(first, 'GET', `/api/v1/markets/${this.market}/price`)).json;
    const indicative = Number(current.price);
    for (const [n, h] of this.homes.homes.entries()) {
      if (!h.sells) {
        const [thb] = (await this.settlement.market.money.balances(h.account)).filter((b) => b.currency === 'THB');
        if (!thb || thb.balance < TOP_UP_BELOW) await this.settlement.market.deposit(h.account, 'THB', START_CREDITS, 'gtx demo credits');
      }
      // One open order per home at a time: after its auction, the next delivery's.
      const open = await this.homes.api<unknown[]>(h.account, 'GET', '/api/v1/orders?status=open&limit=1');
      if (open.json.length > 0) continue;
      const side = h.sells ? 'sell' : 'buy';
      const spread = 0.1 + 0.05 * (n % 4);
      const limit = Math.max(0, indicative + (h.sells ? -spread : spread)).toFixed(2);
      const energyKwh = (0.1 + (n % 3) * 0.1).toFixed(3);
      const r = await this.homes.api<{ code?: string; message?: string }>(h.account, 'POST', '/api/v1/orders', { market: this.market, side, energyKwh, limitPrice: limit });
      if (r.status === 201) {
        this.placed++;
      } else {
        this.refused++;
        if (this.refused <= 3) this.log(`demo order of ${h.account} refused: ${r.json.code}: ${r.json.message}`);
      }
    }
  }
}
