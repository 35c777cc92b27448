import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import mqtt from 'mqtt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
// `yaml` is only a transitive dependency today: it must become a devDependency.
import { parse as parseYaml } from 'yaml';
import { encodeEnvelope, generateGatewayKeyPair, signEnvelope, loadPrivateKey, topics, type Reading } from '../../protocol/index.ts';
import { getDefinition } from '../../devices/catalog.ts';
import type { Gateway } from '../../gateway/main.ts';
import { startSettlement, type Settlement } from '../../settlement/main.ts';
import { EnvelopeFactory } from '../support/envelopes.ts';
import { influxUrl } from '../support/influxd.ts';
import { enrollTestGateway, TEST_MARKET } from '../support/registry.ts';
import { requireOrSkip } from '../support/services.ts';
import { gatewayConfig, settlementConfig, startRegisteredGateway, startSimulator, testLog } from '../support/stack.ts';
import { tempDir } from '../support/tmp.ts';
import { waitFor } from '../support/wait.ts';

/**
 * The Grafana provisioning in grafana/: the YAML is what Grafana reads, and every InfluxQL query
 * of every dashboard (panel targets and template variables), with Grafana's macros substituted
 * the way Grafana does, returns rows from an InfluxDB that a real settlement filled.
 */

const ROOT = join(import.meta.dirname, '..', '..');
const GRAFANA = join(ROOT, 'grafana');
const DASHBOARDS_DIR = join(GRAFANA, 'dashboards');
/** Where the README tells a utility to copy grafana/dashboards; the provider must point there. */
const INSTALLED_DASHBOARDS = '/var/lib/grafana/dashboards/gridtokenx';

interface Target {
  refId?: string;
  query?: string;
  rawQuery?: boolean;
  datasource?: { type?: string; uid?: string };
}
interface Panel {
  title?: string;
  type?: string;
  datasource?: { type?: string; uid?: string };
  targets?: Target[];
  panels?: Panel[];
}
interface Variable {
  name: string;
  type: string;
  query?: string;
  datasource?: { type?: string; uid?: string };
  includeAll?: boolean;
  multi?: boolean;
}
interface Dashboard {
  uid: string;
  title: string;
  schemaVersion: number;
  time: { from: string; to: string };
  templating: { list: Variable[] };
  panels: Panel[];
}

const dashboards: Array<{ file: string; d: Dashboard }> = readdirSync(DASHBOARDS_DIR)
  .filter((f) => f.endsWith('.json'))
  .sort()
  .map((file) => ({ file, d: JSON.parse(readFileSync(join(DASHBOARDS_DIR, file), 'utf8')) as Dashboard }));

/** Panels, including those inside collapsed rows. */
function allPanels(panels: Panel[]): Panel[] {
  return panels.flatMap((p) => [p, ...allPanels(p.panels ?? [])]);
}

describe('Grafana provisioning files', () => {
  const datasources = parseYaml(readFileSync(join(GRAFANA, 'provisioning', 'datasources', 'gridtokenx.yaml'), 'utf8')) as {
    apiVersion: number;
    datasources: Array<{ uid: string; type: string; url: string; database: string; jsonData: { dbName: string } }>;
  };
  const providers = parseYaml(readFileSync(join(GRAFANA, 'provisioning', 'dashboards', 'gridtokenx.yaml'), 'utf8')) as {
    apiVersion: number;
    providers: Array<{ type: string; options: { path: string } }>;
  };

  it('declares one InfluxDB datasource whose URL and database come from the environment', () => {
    expect(datasources.apiVersion).toBe(1);
    expect(datasources.datasources).toHaveLength(1);
    const ds = datasources.datasources[0]!;
    expect(ds).toMatchObject({ type: 'influxdb', url: '${GTX_INFLUX_URL}', database: '${GTX_INFLUX_DB}', jsonData: { dbName: '${GTX_INFLUX_DB}' } });
  });

  it('has a file provider pointing at the dashboards directory the README names', () => {
    expect(providers.apiVersion).toBe(1);
    expect(providers.providers).toHaveLength(1);
    expect(providers.providers[0]).toMatchObject({ type: 'file', options: { path: INSTALLED_DASHBOARDS } });
    const readme = readFileSync(join(ROOT, 'README.md'), 'utf8');
    expect(readme).toContain(INSTALLED_DASHBOARDS);
    expect(dashboards.length).toBeGreaterThanOrEqual(4);
  });

  it('dashboards are Grafana 10/11 JSON and use the provisioned datasource by uid everywhere', () => {
    const uid = datasources.datasources[0]!.uid;
    const uids = new Set<string>();
    for (const { file, d } of dashboards) {
      expect(d.schemaVersion, file).toBeGreaterThanOrEqual(36);
      expect(d.uid, file).toMatch(/^[a-zA-Z0-9_-]{1,40}$/);
      expect(uids.has(d.uid), `${file}: duplicate uid ${d.uid}`).toBe(false);
      uids.add(d.uid);
      for (const p of allPanels(d.panels)) {
        if (p.type === 'row') continue;
        expect(p.datasource, `${file} "${p.title}"`).toEqual({ type: 'influxdb', uid });
        expect(p.targets?.length, `${file} "${p.title}" has no query`).toBeGreaterThan(0);
        for (const t of p.targets ?? []) {
          expect(t.datasource, `${file} "${p.title}" ${t.refId}`).toEqual({ type: 'influxdb', uid });
          expect(t.rawQuery && typeof t.query === 'string', `${file} "${p.title}" ${t.refId}: raw InfluxQL`).toBe(true);
        }
      }
      for (const v of d.templating.list) {
        if (v.type === 'query') expect(v.datasource, `${file} $${v.name}`).toEqual({ type: 'influxdb', uid });
      }
    }
  });
});

// ---- Grafana's side of a query: macros and variables ----------------------------------------

/** `now`, `now-24h`, `now+1h` as Grafana reads a dashboard's relative time range. */
function relativeTime(s: string, nowMs: number): number {
  const m = /^now(?:([+-])(\d+)([smhdw]))?$/.exec(s);
  if (!m) throw new Error(`time range "${s}" is not of the form now[+-]N<unit>`);
  if (!m[1]) return nowMs;
  const unit = { s: 1_000, m: 60_000, h: 3_600_000, d: 86_400_000, w: 604_800_000 }[m[3] as 's' | 'm' | 'h' | 'd' | 'w'];
  return nowMs + (m[1] === '-' ? -1 : 1) * Number(m[2]) * unit;
}

/** Grafana's rangeutil.roundInterval: the bucket Grafana picks for ~1000 points over the range. */
function roundInterval(ms: number): string {
  const steps: Array<[number, string]> = [
    [1_500, '1s'], [3_500, '2s'], [7_500, '5s'], [12_500, '10s'], [17_500, '15s'], [25_000, '20s'], [45_000, '30s'],
    [90_000, '1m'], [210_000, '2m'], [450_000, '5m'], [750_000, '10m'], [1_050_000, '15m'], [1_500_000, '20m'], [2_700_000, '30m'],
    [5_400_000, '1h'], [9_000_000, '2h'], [16_200_000, '3h'], [32_400_000, '6h'], [64_800_000, '12h'],
  ];
  return steps.find(([limit]) => ms <= limit)?.[1] ?? '1d';
}

/** A value as Grafana formats it into an InfluxQL regex (`=~ /^$v$/`): escaped, several as (a|b). */
function regexValue(values: string[]): string {
  const esc = (v: string) => v.replace(/[\\^$*+?.()|[\]{}/]/g, '\\$&');
  return values.length === 1 ? esc(values[0]!) : `(${values.map(esc).join('|')})`;
}

function substitute(query: string, ctx: { fromMs: number; toMs: number; interval: string; vars: Map<string, string[]> }): string {
  let q = query
    .replaceAll('$timeFilter', `time >= ${ctx.fromMs}ms and time <= ${ctx.toMs}ms`)
    .replaceAll('$__interval_ms', String(parseDuration(ctx.interval)))
    .replaceAll('$__interval', ctx.interval)
    .replaceAll('$interval', ctx.interval);
  // Longest names first, so $meter never eats part of $meters.
  for (const [name, values] of [...ctx.vars].sort((a, b) => b[0].length - a[0].length)) {
    const v = regexValue(values);
    q = q.replaceAll(`\${${name}}`, v).replaceAll(`[[${name}]]`, v).replaceAll(`$${name}`, v);
  }
  const left = /\$\w+|\[\[\w+\]\]/.exec(q);
  if (left) throw new Error(`unsubstituted "${left[0]}" in: ${q}`);
  return q;
}

function parseDuration(s: string): number {
  const m = /^(\d+)([smhd])$/.exec(s)!;
  return Number(m[1]) * { s: 1_000, m: 60_000, h: 3_600_000, d: 86_400_000 }[m[2] as 's' | 'm' | 'h' | 'd'];
}

interface QueryResult {
  results?: Array<{ error?: string; series?: Array<{ columns: string[]; values?: unknown[][] }> }>;
  error?: string;
}

/**
 * Runs one query. `empty` names the columns that are null in every row: a panel selecting
 * sum("typo") next to a real field still gets rows, but draws nothing for that column.
 */
async function influxQuery(url: string, database: string, q: string): Promise<{ rows: unknown[][]; empty: string[]; error?: string }> {
  const res = await fetch(new URL('/query', url), {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams({ db: database, q, epoch: 'ms' }),
  });
  const body = (await res.json()) as QueryResult;
  const r = body.results?.[0];
  const error = body.error ?? r?.error ?? (res.ok ? undefined : `HTTP ${res.status}`);
  const series = r?.series ?? [];
  const columns = [...new Set(series.flatMap((s) => s.columns))].filter((c) => c !== 'time');
  const empty = columns.filter((c) => !series.some((s) => { const i = s.columns.indexOf(c); return i >= 0 && (s.values ?? []).some((v) => v[i] !== null); }));
  return { rows: series.flatMap((s) => s.values ?? []), empty, ...(error ? { error } : {}) };
}

// ---- the settlement that fills InfluxDB ----------------------------------------------------

const url = await influxUrl();
const skip = requireOrSkip('Grafana dashboards on InfluxDB', !!url, 'no InfluxDB (set GTX_INFLUX_URL or install the Debian influxdb package)');

describe.skipIf(skip)('every dashboard query returns rows from InfluxDB filled by a settlement', () => {
  const dir = tempDir();
  const database = `gtx_grafana_${process.pid}_${Date.now()}`;
  let s: Settlement;
  let gateway: Gateway | undefined;
  const closers: Array<() => unknown> = [];

  beforeAll(async () => {
    const cfg = settlementConfig(dir.path);
    cfg.influxdb = { url: url!, database, flushIntervalMs: 100, maxBacklogPoints: 100_000 };
    const m = cfg.markets[0]!;
    // Open around the clock, so the auction runs at any hour.
    m.rules = { ...m.rules, auction: { ...m.rules.auction, openMinute: 0, closeMinute: 1440 } };
    s = await startSettlement(cfg, { log: testLog('settlement') });

    // A real gateway polling a simulated three-phase meter over Modbus TCP, signing and publishing.
    const { sim, port } = await startSimulator('sdm630', 'prosumer', 3);
    closers.push(() => sim.stop());
    gateway = await startRegisteredGateway(s, gatewayConfig(dir.path, 'gw-grafana', s.brokerUrl, [{ id: 'grafana-live-1', model: 'sdm630', port }]));
    await waitFor(async () => (await s.ledger.readings('grafana-live-1')).length >= 6, 'the live meter’s readings in the ledger');

    // A PV meter's history (5 h ago to 2 h ago, every 10 min), published signed like a gateway
    // catching up after an outage: hours old enough to be certified.
    const hist = new EnvelopeFactory('gw-grafana-pv');
    await enrollTestGateway(s.ledger, 'gw-grafana-pv', hist.publicKeyPem, ['grafana-pv-1']);
    const H = 3_600_000;
    const t0 = Math.floor((Date.now() - 5 * H) / 600_000) * 600_000;
    const rs: Reading[] = [];
    for (let i = 0; i <= 18; i++) {
      const r = hist.nextReading('grafana-pv-1', { importWh: 1_000, exportWh: 5_000 + i * 400, powerW: -2_400 }, t0 + i * 600_000);
      hist.advance(r);
      rs.push(r);
    }
    const client = await mqtt.connectAsync(s.brokerUrl, { reconnectPeriod: 0 });
    closers.push(() => client.endAsync());
    await client.publishAsync(topics.readings('gw-grafana-pv'), encodeEnvelope(hist.sign(rs)), { qos: 1 });
    // Rejections: junk, and an envelope signed with a key nobody enrolled.
    await client.publishAsync(topics.readings('gw-grafana-pv'), 'not json', { qos: 1 });
    const stranger = loadPrivateKey(generateGatewayKeyPair().privateKeyPem);
    const { sig: _ownSig, ...unsigned } = hist.sign([hist.nextReading('grafana-pv-1')]);
    await client.publishAsync(topics.readings('gw-grafana-pv'), encodeEnvelope(signEnvelope(unsigned, stranger)), { qos: 1 });
    await waitFor(async () => (await s.ledger.readings('grafana-pv-1')).length === rs.length, 'the PV history in the ledger');
    await waitFor(async () => (await s.ledger.counts()).rejections >= 2, 'two rejections in the ledger');

    // A price signal, an auction with a trade, certificates, the closed market intervals.
    await s.pricing[0]!.runOnce();
    await enrollTestGateway(s.ledger, 'gw-grafana-home', generateGatewayKeyPair().publicKeyPem, [
      { id: 'grafana-home-1', model: 'eastron-sdm120', role: 'consumption', ratedPowerW: 20_000, energySource: null },
    ]);
    await s.market.deposit('owner-gw-grafana-home', 'THB', 100_000n);
    expect((await s.market.placeOrder('owner-gw-grafana-pv', TEST_MARKET, { side: 'sell', energyWh: 2000, limit: 380n })).ok).toBe(true);
    expect((await s.market.placeOrder('owner-gw-grafana-home', TEST_MARKET, { side: 'buy', energyWh: 1500, limit: 420n })).ok).toBe(true);
    const due = await s.market.store.dueDeliveries(TEST_MARKET, Number.MAX_SAFE_INTEGER, 1);
    const run = await s.market.runAuction(TEST_MARKET, due[0]! - m.rules.auction.intervalMinutes * 60_000);
    expect(run?.trades).toBe(1);
    expect((await s.jobs.recMinting.runOnce())?.minted).toBeGreaterThan(0);
    expect((await s.influxMarketIntervals!.runOnce())?.intervals).toBeGreaterThan(0);

    await s.idle();
    await waitFor(async () => {
      await s.influx!.flush();
      return s.influx!.stats().backlog === 0;
    }, 'the sink’s backlog written');
    expect(s.influx!.stats().failedWrites).toBe(0);
  }, 60_000);

  afterAll(async () => {
    await gateway?.stop();
    for (const c of closers.reverse()) await c();
    await s?.stop();
    await fetch(new URL('/query', url!), { method: 'POST', body: new URLSearchParams({ q: `DROP DATABASE "${database}"` }) }).catch(() => undefined);
    dir.remove();
  });

  it('tags readings with the meter’s market, model and role from the registry', async () => {
    const { rows, error } = await influxQuery(url!, database, `SELECT last("import_wh"), "market", "model", "role" FROM "readings" WHERE "meter" = 'grafana-live-1'`);
    expect(error).toBeUndefined();
    expect(rows[0]?.slice(2)).toEqual([TEST_MARKET, getDefinition('sdm630').id, 'bidirectional']);
  });

  for (const { file, d } of dashboards) {
    it(`${file}: every variable and panel query returns rows`, async () => {
      const nowMs = Date.now();
      const fromMs = relativeTime(d.time.from, nowMs);
      const toMs = relativeTime(d.time.to, nowMs);
      const ctx = { fromMs, toMs, interval: roundInterval((toMs - fromMs) / 1000), vars: new Map<string, string[]>() };
      const empty: string[] = [];
      // Variables in order: a later one may use an earlier one (meter WHERE market =~ /^$market$/). All selected.
      for (const v of d.templating.list) {
        if (v.type !== 'query') continue;
        const q = substitute(v.query ?? '', ctx);
        const { rows, error } = await influxQuery(url!, database, q);
        const values = rows.map((r) => String(r[1]));
        if (error || values.length === 0) {
          empty.push(`variable $${v.name}: ${q}${error ? ` (${error})` : ''}`);
          continue;
        }
        ctx.vars.set(v.name, v.includeAll ? values : values.slice(0, 1));
      }
      for (const p of allPanels(d.panels)) {
        for (const t of p.targets ?? []) {
          const q = substitute(t.query ?? '', ctx);
          const res = await influxQuery(url!, database, q);
          const why = res.error ?? (res.rows.length === 0 ? 'no rows' : res.empty.length > 0 ? `no values in ${res.empty.join(', ')}` : undefined);
          if (why) empty.push(`panel "${p.title}" ${t.refId ?? ''}: ${q} (${why})`);
        }
      }
      expect(empty, `queries of ${d.title} that returned no rows`).toEqual([]);
    });
  }
});
