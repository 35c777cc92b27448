import { spawn, spawnSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { tempDir } from '../support/tmp.ts';
import { waitFor } from '../support/wait.ts';

const GTX = join(import.meta.dirname, '../../bin/gtx.js');

describe('gtx demo (what npm start runs)', () => {
  const dir = tempDir('gtx-demo-');
  afterAll(() => dir.remove());
  /** `npm start -- …` runs package.json's start script (`./bin/gtx.js demo`) as a user would. */
  const demo = (seconds: number, fresh: boolean, via: 'npm start' | 'node' = 'node') => {
    const args = ['--data', dir.path, '--duration', String(seconds), '--mqtt-port', '0', '--http-port', '0', ...(fresh ? ['--fresh'] : [])];
    const [cmd, argv] = via === 'npm start' ? ['npm', ['start', '--silent', '--', ...args]] : [process.execPath, [GTX, 'demo', ...args]];
    return spawnSync(cmd, argv, { encoding: 'utf8', cwd: join(import.meta.dirname, '../..'), env: { ...process.env, GTX_LOG_LEVEL: 'error' }, timeout: 60_000 });
  };

  /** The sign-in keys the demo prints under its web pages' URL, by role. */
  const keysIn = (out: string) => Object.fromEntries([...out.matchAll(/^ {2}(prosumer|installer|utility) +(gtx_\S+)/gm)].map((m) => [m[1]!, m[2]!]));
  let firstKeys: Record<string, string> = {};

  it('shows verified readings within 10 seconds and stops cleanly (npm start)', () => {
    const r = demo(10, true, 'npm start');
    expect(r.status, r.stderr).toBe(0);
    firstKeys = keysIn(r.stdout);
    expect(r.stdout).toMatch(/home 4: sdm630 prosumer/);
    const verified = [...r.stdout.matchAll(/readings verified (\d+)/g)].map((m) => Number(m[1]));
    expect(Math.max(...verified)).toBeGreaterThan(0);
    expect(r.stdout).toMatch(/stopped: ledger holds [1-9]\d* readings .*; 0 rejections recorded/);
  }, 60_000);

  it('continues after a restart on the same data without a single rejection', () => {
    const r = demo(6, false);
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/stopped: .*; 0 rejections recorded/);
  }, 60_000);

  it('prints the web pages’ URL and a key per role (the same after a restart); the page answers and each key signs in as its role', async () => {
    const child = spawn(process.execPath, [GTX, 'demo', '--data', dir.path, '--duration', '40', '--mqtt-port', '0', '--http-port', '0'], {
      cwd: join(import.meta.dirname, '../..'),
      env: { ...process.env, GTX_LOG_LEVEL: 'error' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    child.stdout.on('data', (b: Buffer) => (out += b.toString()));
    const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
    try {
      const [, url] = await waitFor(() => /^web pages +(http:\/\/[\d.:]+\/) /m.exec(out), 'the web pages line', 30_000);
      await waitFor(() => /^ {2}utility +gtx_/m.test(out), 'the utility key line', 10_000);
      const keys = keysIn(out);
      expect(Object.keys(keys).sort()).toEqual(['installer', 'prosumer', 'utility']);
      expect(keys).toEqual(firstKeys); // kept in the data dir, not new keys on every start
      const page = await fetch(url!);
      expect(page.status).toBe(200);
      expect(page.headers.get('content-type')).toBe('text/html; charset=utf-8');
      expect(page.headers.get('content-security-policy')).toContain("script-src 'self'");
      expect(await page.text()).toContain('id="sign-in-form"');
      const me = async (key: string) => (await (await fetch(`${url}api/v1/me`, { headers: { authorization: `Bearer ${key}` } })).json()) as { role: string; account?: string; customers?: string[] };
      expect(await me(keys.prosumer!)).toMatchObject({ role: 'prosumer', account: 'prosumer-1' });
      expect(await me(keys.installer!)).toMatchObject({ role: 'installer', customers: ['prosumer-1', 'prosumer-2', 'prosumer-3', 'prosumer-4'] });
      expect(await me(keys.utility!)).toMatchObject({ role: 'utility' });
    } finally {
      child.kill('SIGTERM');
    }
    expect(await exited).toBe(0);
  }, 60_000);
});

describe('gtx demo trades, certifies, rewards and votes (the market and certificate issues’ done-when)', () => {
  const dir = tempDir('gtx-demo-market-');
  afterAll(() => dir.remove());
  let retiredId = '';

  it('homes sell and buy, an auction clears them, the trade settles against metered energy and every credit is accounted for', async () => {
    // 60 simulated seconds per real second: 15-minute auctions every 15 s, settlement ~3 min after delivery.
    const child = spawn(process.execPath, [GTX, 'demo', '--data', dir.path, '--fresh', '--speed', '60', '--mqtt-port', '0', '--http-port', '0'], {
      cwd: join(import.meta.dirname, '../..'),
      env: { ...process.env, GTX_LOG_LEVEL: 'error' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    child.stdout.on('data', (b: Buffer) => (out += b.toString()));
    const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
    try {
      const [, key, base] = await waitFor(() => /Authorization: Bearer (gtx_\S+)' (http:\/\/[\d.:]+)\/api\/v1\/meters/.exec(out), 'the demo’s API line', 60_000);
      const get = async <T>(path: string) => (await (await fetch(`${base}${path}`, { headers: { authorization: `Bearer ${key}` } })).json()) as T;
      type Trade = { buyer: string; seller: string; energyKwh: string; price: string; delivery: null | { sellerMeteredKwh: string; buyerMeteredKwh: string; basis: { seller: { meters: unknown[] } } } };
      const settled = await waitFor(async () => (await get<Trade[]>('/api/v1/trades?limit=500')).find((t) => t.delivery !== null), 'a settled trade', 240_000, 1_000);
      expect(settled.buyer).not.toBe(settled.seller);
      expect(Number(settled.energyKwh)).toBeGreaterThan(0);
      expect(settled.delivery!.basis.seller.meters.length).toBeGreaterThan(0);
      const auctions = await get<Array<{ clearingPrice: string | null; trades: number }>>('/api/v1/markets/thailand_central/auctions');
      expect(auctions.some((a) => a.clearingPrice !== null && a.trades > 0)).toBe(true);
      // The PV homes' export turns into hourly certificates with their provenance.
      const recs = await waitFor(async () => {
        const list = await get<Array<{ generator: { meter: string }; volumeWh: number; provenance: { envelopes: string[] } }>>('/api/v1/recs');
        return list.length > 0 ? list : undefined;
      }, 'a certificate', 120_000, 1_000);
      expect(recs[0]!.volumeWh).toBeGreaterThan(0);
      expect(recs[0]!.provenance.envelopes.length).toBeGreaterThan(0);
      expect(['home-2-main', 'home-4-main']).toContain(recs[0]!.generator.meter);
      // Households buy certificates on the marketplace and retire them.
      type Rec = { id: string; owner: string; status: string; retirement: { beneficiary: string } | null };
      const [retired] = await waitFor(async () => {
        const list = await get<Rec[]>('/api/v1/recs?status=retired');
        return list.length > 0 ? list : undefined;
      }, 'a retired certificate', 120_000, 1_000);
      expect(['prosumer-1', 'prosumer-3']).toContain(retired!.owner);
      retiredId = retired!.id;
      // The households' three weeks of history give baselines: who used less was paid, hour by hour.
      type Reward = { meter: string; amount: string; savedWh: number; hours: Array<{ baselineWh: number; actualWh: number; savedWh: number }> };
      const rewards = await get<Reward[]>('/api/v1/rewards');
      const paid = rewards.find((r) => Number(r.amount) > 0)!;
      expect(['home-1-main', 'home-3-main']).toContain(paid.meter);
      expect(paid.hours.reduce((a, h) => a + h.savedWh, 0)).toBe(paid.savedWh);
      expect(paid.hours.every((h) => h.savedWh === Math.max(0, h.baselineWh - h.actualWh))).toBe(true);
      // Stakers raise p_balance by vote; once executed, the price signal is computed with it.
      await waitFor(() => /governance: the price signal follows the vote: [\d.]+ THB\/kWh .*\(p_balance 4\.25,/.exec(out), 'the price signal after the vote', 180_000);
      const [proposal] = await get<Array<{ status: string; parameter: string; value: string; tally: { yes: string; no: string } }>>('/api/v1/governance/proposals');
      expect(proposal).toMatchObject({ status: 'executed', parameter: 'p_balance', value: '4.25' });
      // Operators see the same in Prometheus metrics.
      const metrics = await (await fetch(`${base}/metrics`)).text();
      expect(metrics).toMatch(/^gtx_recs_minted_total\{market="thailand_central",source="Solar"\} [1-9]/m);
      expect(metrics).toMatch(/^gtx_rewards_paid_total\{market="thailand_central"\} [1-9]/m);
      expect(metrics).toMatch(/^gtx_governance_proposals_total\{outcome="executed"\} 1$/m);
      expect(out).toMatch(/governance: prop_\S+ passed \(yes 6000\.0+, no 2000\.0+ of 8000\.0+ NRG voting power\)/);
    } finally {
      child.kill('SIGTERM');
    }
    expect(await exited).toBe(0);
    // The books balance: every currency sums to zero, every balance equals its postings.
    const config = join(dir.path, 'settlement.toml');
    writeFileSync(config, `[settlement]\ndata_dir = "${dir.path}"\n`);
    const check = spawnSync(process.execPath, [GTX, 'market', 'check', '--config', config], { encoding: 'utf8', env: { ...process.env, DATABASE_URL: '' } });
    expect(check.status, check.stdout + check.stderr).toBe(0);
    expect(check.stdout).toMatch(/money ledger sound/);
    // The retired certificate audits down to its signed readings.
    const audit = spawnSync(process.execPath, [GTX, 'audit', 'rec', retiredId, '--config', config], { encoding: 'utf8', env: { ...process.env, DATABASE_URL: '' } });
    expect(audit.status, audit.stdout + audit.stderr).toBe(0);
    expect(audit.stdout.trim().split('\n').at(-1)).toBe('PASS');
  }, 420_000);
});
