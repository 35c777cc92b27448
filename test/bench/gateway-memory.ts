/**
 * Where the resident memory of `gtx gateway run` goes (not written to docs/; prints tables):
 *
 *   npm run build && node --import tsx test/bench/gateway-memory.ts [--warmup-s 120] [--measure-s 60] [--meters 32] [--reps 3]
 *        [--replay-hours 24] [--skip-imports] [--skip-flags] [--skip-heap] [--skip-replay]
 *
 * A. Imports: a fresh `node` that imports one module (or opens a SQLite file), collects its
 *    garbage and reports /proc/self/status and process.memoryUsage(); the median of --reps runs,
 *    against node alone. What each dependency costs before any work is done.
 * B. V8 flags and allocator settings: the same compiled gateway started in several variants at
 *    once (one process each, each polling the same 32 simulated SDM630s every second and
 *    publishing to one settlement in this process), sampled like footprint-nodered.ts; a tiny
 *    preload (--import) writes the gateway's process.memoryUsage() and V8 heap spaces to a file,
 *    so heap against RSS is seen from inside without touching gateway code. Node-RED with the flow
 *    of footprint-nodered.ts runs beside them as the reference.
 * C. Heap snapshots of the running gateway (node's --heapsnapshot-signal), grouped by type and constructor.
 * D. Some of those flags under a burst of work: footprint-nodered.ts's outbox replay, one at a time.
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import { findFreePort } from '../../devices/simulator.ts';
import { loadGatewayConfig } from '../../gateway/config.ts';
import { startSettlement } from '../../settlement/main.ts';
import { enrollGatewayConfig, settlementConfig, testLog } from '../support/stack.ts';
import { gatewayToml, NODE_RED, nodeRedUserDir, replay, startBus, startNodeRedBroker } from './footprint-nodered.ts';
import { tempDir } from '../support/tmp.ts';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const MiB = (b: number) => (b / 2 ** 20).toFixed(1);
const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, Math.max(0, ms)));
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;

interface Status {
  rss: number;
  anon: number;
  file: number;
  threads: number;
}

function parseStatus(s: string): Status {
  const kb = (key: string) => Number(new RegExp(`^${key}:\\s+(\\d+)`, 'm').exec(s)?.[1] ?? NaN) * 1024;
  return { rss: kb('VmRSS'), anon: kb('RssAnon'), file: kb('RssFile') + kb('RssShmem'), threads: kb('Threads') / 1024 };
}

// ---------------------------------------------------------------------------------------------
// A. Imports.

interface ImportCase {
  label: string;
  /** ESM statements run in the child before measuring; cwd is the repository. */
  code: string;
}

const IMPORTS: ImportCase[] = [
  { label: 'node alone', code: '' },
  { label: 'pino (+ a logger to stderr)', code: "const { pino } = await import('pino'); globalThis.keep = pino({ level: 'info' }, pino.destination(2));" },
  { label: 'mqtt', code: "globalThis.keep = await import('mqtt');" },
  { label: 'better-sqlite3 (imported)', code: "globalThis.keep = await import('better-sqlite3');" },
  {
    label: 'better-sqlite3 (a WAL file opened, as the outbox)',
    code: "const D = (await import('better-sqlite3')).default; const db = new D(process.env.TMPF); db.pragma('journal_mode = WAL'); db.exec('CREATE TABLE IF NOT EXISTS t (x)'); globalThis.keep = db;",
  },
  { label: 'modbus-serial (serialport and its native binding)', code: "globalThis.keep = await import('modbus-serial');" },
  { label: '@sinclair/typebox (+ compiler, value)', code: "globalThis.keep = [await import('@sinclair/typebox'), await import('@sinclair/typebox/compiler'), await import('@sinclair/typebox/value')];" },
  { label: 'serialport alone (modbus-serial requires it at load, for RTU)', code: "globalThis.keep = await import('serialport');" },
  { label: '@sinclair/typebox alone (no compiler)', code: "globalThis.keep = await import('@sinclair/typebox');" },
  { label: 'smol-toml', code: "globalThis.keep = await import('smol-toml');" },
  { label: 'dist/protocol (envelopes, schemas)', code: "globalThis.keep = await import('./dist/protocol/index.js');" },
  { label: 'dist/devices/catalog (definitions compiled)', code: "const c = await import('./dist/devices/catalog.js'); globalThis.keep = c.getDefinition('sdm630');" },
  { label: 'dist/gateway/main.js (all gateway code and deps)', code: "globalThis.keep = await import('./dist/gateway/main.js');" },
  { label: 'dist/bin/commands/gateway.js (what `gtx gateway run` loads)', code: "globalThis.keep = await import('./dist/bin/commands/gateway.js');" },
];

interface ImportResult {
  label: string;
  status: Status;
  heapUsed: number;
  heapTotal: number;
  external: number;
}

/** The gateway's third-party dependencies, loaded as the gateway uses them, for the leave-one-out table. */
const DEPS: Record<string, string> = {
  pino: "const { pino } = await import('pino'); globalThis.k1 = pino({ level: 'info' }, pino.destination(2));",
  mqtt: "globalThis.k2 = await import('mqtt');",
  'better-sqlite3': "const D = (await import('better-sqlite3')).default; const db = new D(process.env.TMPF); db.pragma('journal_mode = WAL'); globalThis.k3 = db;",
  'modbus-serial': "globalThis.k4 = await import('modbus-serial');",
  '@sinclair/typebox': "globalThis.k5 = [await import('@sinclair/typebox'), await import('@sinclair/typebox/compiler'), await import('@sinclair/typebox/value')];",
  'smol-toml': "globalThis.k6 = await import('smol-toml');",
};

const LEAVE_ONE_OUT: ImportCase[] = [
  { label: 'all six', code: Object.values(DEPS).join('\n') },
  ...Object.keys(DEPS).map((name) => ({ label: `all but ${name}`, code: Object.entries(DEPS).filter(([n]) => n !== name).map(([, c]) => c).join('\n') })),
];

function measureImport(c: ImportCase, tmp: string, flags: string[] = []): ImportResult {
  // Two collections after a pause: what stays is what the module keeps, not the garbage of loading it.
  const script = `${c.code}
await new Promise((r) => setTimeout(r, 500)); gc(); await new Promise((r) => setTimeout(r, 500)); gc();
const { readFileSync } = await import('node:fs');
process.stdout.write(JSON.stringify({ status: readFileSync('/proc/self/status', 'utf8'), mem: process.memoryUsage() }));
process.exit(0);`;
  const out = execFileSync(process.execPath, [...flags, '--expose-gc', '--input-type=module', '-e', script], {
    cwd: ROOT,
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'ignore'],
    env: { ...process.env, TMPF: join(tmp, `db-${Math.random().toString(36).slice(2)}.sqlite`) },
  });
  const j = JSON.parse(out) as { status: string; mem: NodeJS.MemoryUsage };
  return { label: c.label, status: parseStatus(j.status), heapUsed: j.mem.heapUsed, heapTotal: j.mem.heapTotal, external: j.mem.external };
}

function importsTable(reps: number): string {
  const dir = tempDir('gtx-mem-');
  try {
    const measure = (c: ImportCase, flags: string[]): ImportResult => {
      const runs = Array.from({ length: reps }, () => measureImport(c, dir.path, flags));
      const m = (f: (r: ImportResult) => number) => median(runs.map(f));
      return {
        label: c.label,
        status: { rss: m((r) => r.status.rss), anon: m((r) => r.status.anon), file: m((r) => r.status.file), threads: m((r) => r.status.threads) },
        heapUsed: m((r) => r.heapUsed),
        heapTotal: m((r) => r.heapTotal),
        external: m((r) => r.external),
      };
    };
    // Loading code allocates a lot that dies young; the young generation it grows stays committed.
    // The same imports with a 1 MiB semi-space show how much of the cost is that, not what is kept.
    const rows = IMPORTS.map((c) => {
      process.stderr.write(`[memory] imports: ${c.label}\n`);
      return { plain: measure(c, []), small: measure(c, ['--max-semi-space-size=1']) };
    });
    const base = rows[0]!;
    const d = (x: number, b: number) => `${x - b >= 0 ? '+' : ''}${MiB(x - b)}`;
    // Dependencies share what loading any of them costs (node's loader, libuv's threads, a grown
    // young generation), so single imports do not add up; leaving one out of all of them shows
    // what that one costs beside the others.
    const loo = LEAVE_ONE_OUT.map((c) => {
      process.stderr.write(`[memory] imports: ${c.label}\n`);
      return { plain: measure(c, []), small: measure(c, ['--max-semi-space-size=1']) };
    });
    const all = loo[0]!;
    return [
      `| process imports | RSS | + over node | RssAnon | + over node | file-backed | V8 heap used | heap total | external | threads | RSS, semi-space 1 MiB | + over node |`,
      `| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |`,
      ...rows.map(
        ({ plain: r, small }) =>
          `| ${r.label} | ${MiB(r.status.rss)} | ${d(r.status.rss, base.plain.status.rss)} | ${MiB(r.status.anon)} | ${d(r.status.anon, base.plain.status.anon)} | ${MiB(r.status.file)} | ${MiB(r.heapUsed)} | ${MiB(r.heapTotal)} | ${MiB(r.external)} | ${r.status.threads} | ${MiB(small.status.rss)} | ${d(small.status.rss, base.small.status.rss)} |`,
      ),
      '',
      `Leave one out: the gateway's six third-party dependencies loaded together (as above, the outbox's WAL file opened), and all but one.`,
      '',
      `| process imports | RSS | saved | RssAnon | saved | file-backed | V8 heap used | heap total | RSS, semi-space 1 MiB | saved |`,
      `| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |`,
      ...loo.map(
        ({ plain: r, small }) =>
          `| ${r.label} | ${MiB(r.status.rss)} | ${MiB(all.plain.status.rss - r.status.rss)} | ${MiB(r.status.anon)} | ${MiB(all.plain.status.anon - r.status.anon)} | ${MiB(r.status.file)} | ${MiB(r.heapUsed)} | ${MiB(r.heapTotal)} | ${MiB(small.status.rss)} | ${MiB(all.small.status.rss - small.status.rss)} |`,
      ),
    ].join('\n');
  } finally {
    dir.remove();
  }
}

// ---------------------------------------------------------------------------------------------
// B. Flags.

interface Variant {
  label: string;
  nodeArgs: string[];
  env?: Record<string, string>;
  /** Node-RED doing the same job (footprint-nodered.ts's flow) instead of the gateway: the reference. */
  nodeRed?: true;
  /** Extra preload (ESM source) for settings a flag cannot reach. */
  preload?: string;
}

/**
 * mqtt.js's writeCache option (default on) makes mqtt-packet build 65,536 two-byte Buffers, one
 * per message id, on the first publish (part D finds them). The gateway does not set the option;
 * this preload turns the cache off the way `writeCache: false` would, so its cost can be measured
 * without changing gateway code. Resolved from the repository: the same module instance mqtt uses.
 */
const NO_NUMBER_CACHE = `import { createRequire } from 'node:module';
createRequire(${JSON.stringify(join(ROOT, 'package.json'))})('mqtt-packet').writeToStream.cacheNumbers = false;
`;

const AS_INSTALLED = '--max-semi-space-size=32';
const VARIANTS: Variant[] = [
  { label: 'as installed (bin/gtx.js first line: --max-semi-space-size=32)', nodeArgs: [AS_INSTALLED] },
  { label: 'no V8 flags (node defaults)', nodeArgs: [] },
  { label: '--max-semi-space-size=1', nodeArgs: ['--max-semi-space-size=1'] },
  { label: '--max-semi-space-size=4', nodeArgs: ['--max-semi-space-size=4'] },
  { label: '--max-old-space-size=48 (+ as installed)', nodeArgs: [AS_INSTALLED, '--max-old-space-size=48'] },
  { label: '--optimize-for-size (+ as installed)', nodeArgs: [AS_INSTALLED, '--optimize-for-size'] },
  { label: '--lite-mode (+ as installed)', nodeArgs: [AS_INSTALLED, '--lite-mode'] },
  { label: '--jitless (+ as installed)', nodeArgs: [AS_INSTALLED, '--jitless'] },
  { label: '--single-threaded (+ as installed)', nodeArgs: [AS_INSTALLED, '--single-threaded'] },
  { label: 'MALLOC_ARENA_MAX=2 (+ as installed)', nodeArgs: [AS_INSTALLED], env: { MALLOC_ARENA_MAX: '2' } },
  { label: 'combined: semi-space 1, --lite-mode, MALLOC_ARENA_MAX=2', nodeArgs: ['--max-semi-space-size=1', '--lite-mode'], env: { MALLOC_ARENA_MAX: '2' } },
  { label: 'combined: semi-space 1, --optimize-for-size', nodeArgs: ['--max-semi-space-size=1', '--optimize-for-size'] },
  { label: 'mqtt number cache off (as `writeCache: false`; + as installed)', nodeArgs: [AS_INSTALLED], preload: NO_NUMBER_CACHE },
  {
    label: 'combined: semi-space 1, --single-threaded, MALLOC_ARENA_MAX=2, mqtt number cache off',
    nodeArgs: ['--max-semi-space-size=1', '--single-threaded'],
    env: { MALLOC_ARENA_MAX: '2' },
    preload: NO_NUMBER_CACHE,
  },
  // On top of the systemd unit's --max-semi-space-size=1 (config/gtx-gateway.service): one addition each.
  { label: 'semi-space 1 + mqtt number cache off', nodeArgs: ['--max-semi-space-size=1'], preload: NO_NUMBER_CACHE },
  { label: 'semi-space 1 + --single-threaded', nodeArgs: ['--max-semi-space-size=1', '--single-threaded'] },
  { label: 'semi-space 1 + MALLOC_ARENA_MAX=2', nodeArgs: ['--max-semi-space-size=1'], env: { MALLOC_ARENA_MAX: '2' } },
  { label: 'semi-space 1 + --lite-mode', nodeArgs: ['--max-semi-space-size=1', '--lite-mode'] },
  { label: 'Node-RED (reference, node defaults)', nodeArgs: [], nodeRed: true },
];

/** Preloaded into each gateway: every 2 s, its own view of its memory, one JSON line to a file. */
const PROBE = `import { appendFileSync } from 'node:fs';
import v8 from 'node:v8';
const file = process.env.GTX_MEM_PROBE;
if (file) setInterval(() => {
  const spaces = Object.fromEntries(v8.getHeapSpaceStatistics().map((s) => [s.space_name, s.space_used_size]));
  const committed = Object.fromEntries(v8.getHeapSpaceStatistics().map((s) => [s.space_name, s.physical_space_size]));
  appendFileSync(file, JSON.stringify({ t: Date.now(), mem: process.memoryUsage(), spaces, committed }) + '\\n');
}, 2000).unref();
`;

interface Probe {
  mem: NodeJS.MemoryUsage;
  spaces: Record<string, number>;
  committed: Record<string, number>;
}

interface VariantRun {
  v: Variant;
  proc: ChildProcess;
  probeFile: string;
  rss: Status[];
  cpuFrom: number;
  cpuTo: number;
}

function cpuSeconds(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(f[11]) + Number(f[12])) / 100;
}

async function flagsTable(warmupS: number, measureS: number, meters: number): Promise<string> {
  const dir = tempDir('gtx-flags-');
  const probe = join(dir.path, 'probe.mjs');
  writeFileSync(probe, PROBE);
  const settlement = await startSettlement(settlementConfig(dir.path, 0, true), { log: testLog('settlement') });
  const { bus, port } = await startBus(meters);
  const runs: VariantRun[] = [];
  const cleanups: Array<() => Promise<void>> = [];
  // All variants together: the work done is checked in total (every gateway has its own meter ids).
  const work = { from: { verified: 0, nodeRed: 0 }, to: { verified: 0, nodeRed: 0 } };
  try {
    const nrBroker = await startNodeRedBroker('nodered', 'bench');
    cleanups.push(() => nrBroker.close());
    for (const [i, v] of VARIANTS.entries()) {
      const gdir = join(dir.path, `v${i}`);
      mkdirSync(gdir, { recursive: true });
      let args: string[];
      if (v.nodeRed) {
        const settings = nodeRedUserDir(gdir, { modbusPort: port, mqttPort: nrBroker.port, uiPort: await findFreePort('127.0.0.1'), meters, user: 'nodered', password: 'bench' });
        args = [NODE_RED, '--userDir', gdir, '--settings', settings];
      } else {
        const config = join(gdir, 'gateway.toml');
        writeFileSync(config, gatewayToml(`gw-mem-v${i}`, port, meters, 1, `v${i}`));
        await enrollGatewayConfig(settlement, loadGatewayConfig(config));
        args = [join(ROOT, 'bin/gtx.js'), 'gateway', 'run', '--config', config];
      }
      const probeFile = join(gdir, 'probe.jsonl');
      const preloads = [probe];
      if (v.preload) {
        preloads.push(join(gdir, 'preload.mjs'));
        writeFileSync(preloads[1]!, v.preload);
      }
      const proc = spawn(process.execPath, [...v.nodeArgs, ...preloads.flatMap((p) => ['--import', pathToFileURL(p).href]), ...args], {
        stdio: ['ignore', 'ignore', 'ignore'],
        env: { ...process.env, ...v.env, GTX_LOG_LEVEL: 'warn', GTX_MEM_PROBE: probeFile },
      });
      runs.push({ v, proc, probeFile, rss: [], cpuFrom: 0, cpuTo: 0 });
    }
    const t0 = Date.now();
    for (let s = 1; s <= warmupS + measureS; s++) {
      await sleep(t0 + s * 1000 - Date.now());
      for (const r of runs) {
        if (r.proc.exitCode !== null || r.proc.signalCode !== null) throw new Error(`variant "${r.v.label}" exited (${r.proc.exitCode ?? r.proc.signalCode})`);
        r.rss.push(parseStatus(readFileSync(`/proc/${r.proc.pid}/status`, 'utf8')));
      }
      if (s === warmupS) {
        for (const r of runs) r.cpuFrom = cpuSeconds(r.proc.pid!);
        work.from = { verified: settlement.stats.readingsVerified, nodeRed: nrBroker.received };
      }
      if (s === warmupS + measureS) {
        for (const r of runs) r.cpuTo = cpuSeconds(r.proc.pid!);
        work.to = { verified: settlement.stats.readingsVerified, nodeRed: nrBroker.received };
      }
      if (s % 30 === 0) process.stderr.write(`[memory] flags: ${s}/${warmupS + measureS} s, readings verified ${settlement.stats.readingsVerified}\n`);
    }
  } finally {
    for (const r of runs) r.proc.kill('SIGTERM');
    await Promise.all(runs.map((r) => (r.proc.exitCode !== null || r.proc.signalCode !== null ? Promise.resolve() : new Promise<void>((res) => r.proc.once('exit', () => res())))));
    for (const c of cleanups.reverse()) await c();
    await bus.close();
    await settlement.stop();
  }
  const gateways = runs.filter((r) => !r.v.nodeRed).length;
  const base = runs[0]!;
  const stats = (r: VariantRun) => {
    const w = r.rss.slice(warmupS);
    const lines = readFileSync(r.probeFile, 'utf8').trim().split('\n');
    const probes = lines.map((l) => JSON.parse(l) as Probe).slice(-Math.max(1, Math.floor(measureS / 2)));
    return {
      rss: mean(w.map((x) => x.rss)),
      anon: mean(w.map((x) => x.anon)),
      file: mean(w.map((x) => x.file)),
      threads: w.at(-1)!.threads,
      cpuPct: (100 * (r.cpuTo - r.cpuFrom)) / measureS,
      heapUsed: mean(probes.map((p) => p.mem.heapUsed)),
      heapTotal: mean(probes.map((p) => p.mem.heapTotal)),
      external: mean(probes.map((p) => p.mem.external)),
      newSpace: mean(probes.map((p) => p.committed.new_space ?? 0)),
      code: mean(probes.map((p) => (p.committed.code_space ?? 0) + (p.committed.code_large_object_space ?? 0))),
    };
  };
  const b = stats(base);
  const rows = runs.map((r) => {
    const s = stats(r);
    return `| ${r.v.label} | ${MiB(s.rss)} | ${(s.rss / b.rss).toFixed(2)} | ${MiB(s.anon)} | ${MiB(s.file)} | ${MiB(s.heapUsed)} | ${MiB(s.heapTotal)} | ${MiB(s.newSpace)} | ${MiB(s.code)} | ${MiB(s.external)} | ${s.threads} | ${s.cpuPct.toFixed(2)} % | ${(s.cpuPct / b.cpuPct).toFixed(2)} |`;
  });
  return [
    `All ${runs.length} processes at once, each polling the same ${meters} SDM630s every second; means over ${measureS} s after ${warmupS} s. ` +
      `In that window the settlement verified ${work.to.verified - work.from.verified} readings from the ${gateways} gateways (${gateways * meters * measureS} polled), ` +
      `Node-RED's broker received ${work.to.nodeRed - work.from.nodeRed} messages (${meters * measureS} polled). Ratios are to the gateway as installed.`,
    '',
    `| variant | RSS MiB | RSS ratio | RssAnon | file-backed | heap used | heap total | new space (committed) | code space (committed) | external | threads | CPU | CPU ratio |`,
    `| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |`,
    ...rows,
  ].join('\n');
}

// ---------------------------------------------------------------------------------------------
// D. The same flags under a burst: the outbox replay of footprint-nodered.ts, one variant at a time.

async function replayTable(hours: number): Promise<string> {
  const variants = VARIANTS.filter((v) => !v.nodeRed && !v.env && ['as installed', 'no V8', '--max-semi-space-size=1', '--max-semi-space-size=4', '--lite-mode', 'combined: semi-space 1, --optimize'].some((l) => v.label.startsWith(l)));
  const rows: string[] = [];
  let base: { rate: number; peak: number; cpu: number } | undefined;
  for (const v of variants) {
    process.stderr.write(`[memory] replay: ${v.label}\n`);
    const r = await replay(16, 10, hours, v.nodeArgs);
    const x = { rate: r.readings / r.totalS, peak: r.peakRss, cpu: r.cpuS };
    base ??= x;
    rows.push(
      `| ${v.label} | ${Math.round(x.rate)} | ${(x.rate / base.rate).toFixed(2)} | ${MiB(x.peak)} | ${(x.peak / base.peak).toFixed(2)} | ${x.cpu.toFixed(1)} | ${r.verified >= r.readings && r.deadLetters === 0 ? 'all verified' : `${r.verified} of ${r.readings}, ${r.deadLetters} dead`} |`,
    );
  }
  return [
    `${hours} h of 16 meters every 10 s (${16 * hours * 360} readings) replayed from the outbox, each variant against a fresh settlement.`,
    '',
    '| variant | readings/s | ratio | peak RSS (VmHWM) MiB | ratio | CPU s | check |',
    '| --- | ---: | ---: | ---: | ---: | ---: | --- |',
    ...rows,
  ].join('\n');
}

// ---------------------------------------------------------------------------------------------
// C. What the running gateway's V8 heap holds: a heap snapshot (node --heapsnapshot-signal).

interface HeapSnapshotFile {
  snapshot: { meta: { node_fields: string[]; node_types: [string[], ...unknown[]]; edge_fields: string[]; edge_types: [string[], ...unknown[]] } };
  nodes: number[];
  edges: number[];
  strings: string[];
}

interface HeapSummary {
  total: number;
  byType: Map<string, number>;
  /** Objects, arrays, closures and natives by constructor; strings and code by type only (their names are their contents). */
  groups: Map<string, { bytes: number; count: number }>;
  /** What holds the largest group's objects: retainer (type: name) and edge name → count. */
  holders: Map<string, number>;
  largest: string;
}

function summarize(file: string): HeapSummary {
  const snap = JSON.parse(readFileSync(file, 'utf8')) as HeapSnapshotFile;
  const { node_fields: nf, node_types, edge_fields: ef, edge_types } = snap.snapshot.meta;
  const [types, etypes] = [node_types[0], edge_types[0]];
  const [iType, iName, iSize, iEdges] = [nf.indexOf('type'), nf.indexOf('name'), nf.indexOf('self_size'), nf.indexOf('edge_count')];
  const [eType, eName, eTo] = [ef.indexOf('type'), ef.indexOf('name_or_index'), ef.indexOf('to_node')];
  const { nodes, edges, strings } = snap;
  const group = (n: number) => {
    const type = types[nodes[n + iType]!]!;
    return ['object', 'closure', 'native', 'array'].includes(type) ? `${type}: ${strings[nodes[n + iName]!]!.slice(0, 60)}` : type;
  };
  const s: HeapSummary = { total: 0, byType: new Map(), groups: new Map(), holders: new Map(), largest: '' };
  for (let n = 0; n < nodes.length; n += nf.length) {
    const type = types[nodes[n + iType]!]!;
    const size = nodes[n + iSize]!;
    s.total += size;
    s.byType.set(type, (s.byType.get(type) ?? 0) + size);
    const g = s.groups.get(group(n)) ?? { bytes: 0, count: 0 };
    g.bytes += size;
    g.count++;
    s.groups.set(group(n), g);
  }
  s.largest = [...s.groups.entries()].filter(([k]) => k.includes(':')).sort((a, b) => b[1].bytes - a[1].bytes)[0]?.[0] ?? '';
  // One pass over the edges: who points at the largest group's objects (weak edges do not retain).
  for (let n = 0, e = 0; n < nodes.length; n += nf.length) {
    for (let k = 0; k < nodes[n + iEdges]!; k++, e += ef.length) {
      const et = etypes[edges[e + eType]!]!;
      if (et === 'weak' || group(edges[e + eTo]!) !== s.largest) continue;
      const edge = et === 'element' || et === 'hidden' ? `[${et}]` : `.${strings[edges[e + eName]!]}`;
      const key = `${group(n)} ${edge}`;
      s.holders.set(key, (s.holders.get(key) ?? 0) + 1);
    }
  }
  return s;
}

/** Heap snapshots of a running gateway at the given seconds after its start (node --heapsnapshot-signal). */
async function heapTable(at: number[], meters: number): Promise<string> {
  const dir = tempDir('gtx-heap-');
  const settlement = await startSettlement(settlementConfig(dir.path, 0, true), { log: testLog('settlement') });
  const { bus, port } = await startBus(meters);
  let proc: ChildProcess | undefined;
  try {
    const config = join(dir.path, 'gateway.toml');
    writeFileSync(config, gatewayToml('gw-heap', port, meters, 1, 'hp'));
    await enrollGatewayConfig(settlement, loadGatewayConfig(config));
    // As installed (its V8 flag), plus the signal that makes node write a snapshot into its cwd.
    proc = spawn(process.execPath, [AS_INSTALLED, '--heapsnapshot-signal=SIGUSR2', join(ROOT, 'bin/gtx.js'), 'gateway', 'run', '--config', config], {
      cwd: dir.path,
      stdio: ['ignore', 'ignore', 'ignore'],
      env: { ...process.env, GTX_LOG_LEVEL: 'warn' },
    });
    const t0 = Date.now();
    const shots: Array<{ s: number; rss: Status; sum: HeapSummary }> = [];
    for (const s of at) {
      await sleep(t0 + s * 1000 - Date.now());
      const rss = parseStatus(readFileSync(`/proc/${proc.pid}/status`, 'utf8'));
      const seen = new Set(readdirSync(dir.path));
      proc.kill('SIGUSR2');
      // Written synchronously on the gateway's main thread: done when the new file stops growing.
      let file = '';
      for (let last = -1; ; ) {
        await sleep(1000);
        file = readdirSync(dir.path).find((f) => f.endsWith('.heapsnapshot') && !seen.has(f)) ?? '';
        const size = file ? statSync(join(dir.path, file)).size : 0;
        if (size > 0 && size === last) break;
        last = size;
      }
      shots.push({ s, rss, sum: summarize(join(dir.path, file)) });
      process.stderr.write(`[memory] heap snapshot at ${s} s\n`);
    }
    const last = shots.at(-1)!.sum;
    const head = shots.map((x) => `${x.s} s`).join(' | ');
    const cols = (f: (x: HeapSummary) => string) => shots.map((x) => f(x.sum)).join(' | ');
    const topGroups = [...last.groups.entries()].sort((a, b) => b[1].bytes - a[1].bytes).slice(0, 14).map(([k]) => k);
    const cell = (x: HeapSummary, k: string) => {
      const g = x.groups.get(k);
      return g ? `${MiB(g.bytes)} (${g.count.toLocaleString('en-US')})` : '—';
    };
    return [
      `\`gtx gateway run\` (as installed) polling ${meters} SDM630s every second; a heap snapshot (live objects, after V8's own full GC) at each time.`,
      '',
      `| | ${head} |`,
      `| --- | ${shots.map(() => '---:').join(' | ')} |`,
      `| RSS / RssAnon before the snapshot (MiB; after the first, the snapshots' own memory) | ${shots.map((x) => `${MiB(x.rss.rss)} / ${MiB(x.rss.anon)}`).join(' | ')} |`,
      `| live heap objects (MiB) | ${cols((x) => MiB(x.total))} |`,
      ...[...last.byType.entries()].sort((a, b) => b[1] - a[1]).slice(0, 8).map(([t]) => `| type ${t} | ${cols((x) => MiB(x.byType.get(t) ?? 0))} |`),
      '',
      `| largest groups, MiB (count) | ${head} |`,
      `| --- | ${shots.map(() => '---:').join(' | ')} |`,
      ...topGroups.map((k) => `| ${k.replace(/\|/g, '\\|')} | ${shots.map((x) => cell(x.sum, k)).join(' | ')} |`),
      '',
      `What holds the ${last.largest} objects at ${shots.at(-1)!.s} s (retainer and edge, count):`,
      '',
      ...[...last.holders.entries()].sort((a, b) => b[1] - a[1]).slice(0, 10).map(([k, n]) => `- \`${k}\`: ${n.toLocaleString('en-US')}`),
    ].join('\n');
  } finally {
    if (proc && proc.exitCode === null && proc.signalCode === null) {
      const p = proc;
      p.kill('SIGTERM');
      await new Promise<void>((res) => p.once('exit', () => res()));
    }
    await bus.close();
    await settlement.stop();
    dir.remove();
  }
}

async function main(): Promise<number> {
  const { values } = parseArgs({
    options: {
      'warmup-s': { type: 'string', default: '120' },
      'measure-s': { type: 'string', default: '60' },
      meters: { type: 'string', default: '32' },
      reps: { type: 'string', default: '3' },
      'skip-imports': { type: 'boolean', default: false },
      'skip-flags': { type: 'boolean', default: false },
      'skip-replay': { type: 'boolean', default: false },
      'replay-hours': { type: 'string', default: '24' },
      'skip-heap': { type: 'boolean', default: false },
      'heap-at': { type: 'string', default: '60,180' },
    },
  });
  if (!existsSync(join(ROOT, 'dist/gateway/main.js'))) {
    process.stderr.write('dist/ is missing: run `npm run build` first\n');
    return 2;
  }
  const out: string[] = [`Node ${process.version}, ${new Date().toISOString()}`, ''];
  if (!values['skip-imports']) out.push('**A. What each dependency adds** (fresh process, after two GCs; median of runs; MiB)', '', importsTable(Number(values.reps)), '');
  if (!values['skip-flags']) out.push('**B. V8 flags and allocator** (MiB)', '', await flagsTable(Number(values['warmup-s']), Number(values['measure-s']), Number(values.meters)), '');
  if (!values['skip-heap']) out.push('**C. What the V8 heap holds**', '', await heapTable(values['heap-at'].split(',').map(Number), Number(values.meters)), '');
  if (!values['skip-replay']) out.push('**D. The same flags during an outbox replay**', '', await replayTable(Number(values['replay-hours'])));
  process.stdout.write(`${out.join('\n')}\n`);
  return 0;
}

main().then(
  (code) => process.exit(code),
  (e: unknown) => {
    process.stderr.write(`gateway-memory failed: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`);
    process.exit(1);
  },
);
