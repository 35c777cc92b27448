/**
 * `npm run bench:footprint`: resident memory of `gtx gateway run` polling simulated meters,
 * started the old way (tsx compiling the TypeScript sources in the process) and from dist/
 * (compiled JavaScript, no loader). docs/benchmarks.md, "Footprint".
 *
 *   node --import tsx test/bench/footprint.ts [--seconds 120] [--meters 32] [--poll-s 5]
 *        [--launchers tsx,dist] [--out docs/benchmarks.md] [--quick]
 *
 * This process runs the settlement (embedded broker with auth) and the simulated meters; only
 * the gateway is a child process, and only the child is measured: VmRSS from /proc/<pid>/status
 * every second, its peak (VmHWM) and its CPU time at the end. --quick: 15 s, written only with --out.
 */
import { codeRevision } from './report.ts';
import { spawn } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { cpus, release, totalmem } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { loadGatewayConfig } from '../../gateway/config.ts';
import { startSettlement } from '../../settlement/main.ts';
import { enrollGatewayConfig, settlementConfig, startSimulator, testLog } from '../support/stack.ts';
import { tempDir } from '../support/tmp.ts';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const LAUNCHERS = {
  tsx: { file: join(ROOT, 'test/bench/tsx-launcher.js'), title: 'before: tsx in the process (TypeScript sources)' },
  dist: { file: join(ROOT, 'bin/gtx.js'), title: 'after: compiled (dist/, no loader)' },
} as const;
type Launcher = keyof typeof LAUNCHERS;
const USAGE = 'usage: node --import tsx test/bench/footprint.ts [--seconds N] [--meters N] [--poll-s N] [--launchers tsx,dist] [--out FILE] [--quick]';

interface Run {
  launcher: Launcher;
  command: string;
  /** VmRSS in bytes, one sample per second from the child's start. */
  rss: number[];
  peakRss: number;
  cpuSeconds: number;
  readingsVerified: number;
  rejected: number;
}

const MiB = (bytes: number) => (bytes / 2 ** 20).toFixed(1);

function procStatus(pid: number): { rss: number; hwm: number } {
  const s = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = (key: string) => Number(new RegExp(`^${key}:\\s+(\\d+) kB`, 'm').exec(s)?.[1] ?? NaN) * 1024;
  return { rss: kb('VmRSS'), hwm: kb('VmHWM') };
}

/** utime + stime of a process, in seconds (clock ticks of 1/100 s on Linux). */
function cpuSeconds(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(fields[11]) + Number(fields[12])) / 100;
}

async function measure(launcher: Launcher, seconds: number, meters: number, pollS: number): Promise<Run> {
  const dir = tempDir('gtx-footprint-');
  const settlement = await startSettlement(settlementConfig(dir.path, 0, true), { log: testLog('settlement') });
  const sims: Array<{ stop(): Promise<void> }> = [];
  try {
    const lines = [`[gateway]\nid = "gw-fp-${launcher}"\ndata_dir = "gw-data"\npoll_interval_s = ${pollS}\n`];
    for (let i = 0; i < meters; i++) {
      const model = i % 2 ? 'sdm630' : 'sdm120';
      const { sim, port } = await startSimulator(model, (['household', 'pv', 'prosumer'] as const)[i % 3]!, i + 1);
      sims.push(sim);
      lines.push(`[[meters]]\nid = "fp-${launcher}-m${String(i + 1).padStart(2, '0')}"\nmodel = "${model}"\nhost = "127.0.0.1"\nport = ${port}\nrole = "bidirectional"\nenergy_source = "Solar"\n`);
    }
    const config = join(dir.path, 'gateway.toml');
    writeFileSync(config, lines.join('\n'));
    await enrollGatewayConfig(settlement, loadGatewayConfig(config));

    // The compiled CLI starts as installed (its first line names node and its flags); the tsx
    // launcher as node's script.
    const cli = ['gateway', 'run', '--config', config];
    const [exe, args] = launcher === 'dist' ? [LAUNCHERS.dist.file, cli] : [process.execPath, [LAUNCHERS.tsx.file, ...cli]];
    const child = spawn(exe, args, { stdio: ['ignore', 'ignore', 'pipe'], env: { ...process.env, GTX_LOG_LEVEL: 'warn' } });
    let stderr = '';
    child.stderr!.on('data', (d: Buffer) => (stderr = (stderr + d.toString()).slice(-4000)));
    const exited = new Promise<number | null>((res) => child.once('exit', (code) => res(code)));
    const pid = child.pid!;
    const rss: number[] = [];
    let last = { rss: NaN, hwm: NaN };
    let cpu = NaN;
    const started = Date.now();
    for (let s = 1; s <= seconds; s++) {
      await new Promise((r) => setTimeout(r, started + s * 1000 - Date.now()));
      if (child.exitCode !== null) throw new Error(`the gateway exited (code ${child.exitCode}) after ${s} s:\n${stderr}`);
      last = procStatus(pid);
      rss.push(last.rss);
      if (s === seconds) cpu = cpuSeconds(pid);
      if (s % 10 === 0 || s === seconds) process.stderr.write(`[footprint] ${launcher}: ${s}/${seconds} s, RSS ${MiB(last.rss)} MiB, readings verified ${settlement.stats.readingsVerified}\n`);
    }
    child.kill('SIGTERM');
    await exited;
    const rejected = Object.values(settlement.stats.rejected).reduce((a, b) => a + (b ?? 0), 0);
    return {
      launcher,
      command: [launcher === 'dist' ? exe : 'node', ...args].map((a) => a.replace(ROOT, '').replace(dir.path, '$TMP')).join(' '),
      rss,
      peakRss: last.hwm,
      cpuSeconds: cpu,
      readingsVerified: settlement.stats.readingsVerified,
      rejected,
    };
  } finally {
    for (const sim of sims) await sim.stop();
    await settlement.stop();
    dir.remove();
  }
}

function render(runs: Run[], ctx: { command: string; machine: string; revision: string; seconds: number; meters: number; pollS: number }): string {
  const at = (r: Run, s: number) => (r.rss.length >= s ? MiB(r.rss[s - 1]!) : '—');
  const marks = [10, 30, 60, ctx.seconds].filter((s, i, a) => s <= ctx.seconds && a.indexOf(s) === i);
  // The last minute (or second half of a shorter run): one sample is at the mercy of the garbage collector.
  const tail = (r: Run) => r.rss.slice(ctx.seconds > 60 ? ctx.seconds - 60 : Math.floor(ctx.seconds / 2));
  const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
  const tailLabel = ctx.seconds > 60 ? `${ctx.seconds - 60}–${ctx.seconds} s` : `${Math.floor(ctx.seconds / 2)}–${ctx.seconds} s`;
  const rows = runs.map(
    (r) =>
      `| ${LAUNCHERS[r.launcher].title} | \`${r.command}\` | ${marks.map((s) => at(r, s)).join(' | ')} | ${MiB(mean(tail(r)))} | ${MiB(r.peakRss)} | ${r.cpuSeconds.toFixed(1)} | ${r.readingsVerified.toLocaleString('en-US')} (${r.rejected} rejected) |`,
  );
  return [
    `- Command: \`${ctx.command}\``,
    `- Run: ${new Date().toISOString()} · code at ${ctx.revision} · ${ctx.machine}`,
    `- Load: one \`gtx gateway run\` process polling ${ctx.meters} simulated meters (sdm120 and sdm630 alternately, Modbus TCP on loopback) every ${ctx.pollS} s, publishing to an embedded broker (auth on) of a settlement in the benchmark's process; ${ctx.seconds} s per launcher, one after the other`,
    '',
    `| launcher | gateway command | ${marks.map((s) => `RSS at ${s} s (MiB)`).join(' | ')} | mean RSS ${tailLabel} (MiB) | peak RSS (MiB) | CPU s | readings verified |`,
    `| --- | --- | ${marks.map(() => '---:').join(' | ')} | ---: | ---: | ---: | ---: |`,
    ...rows,
  ].join('\n');
}


const BEGIN = '<!-- bench:footprint:begin -->';
const END = '<!-- bench:footprint:end -->';

async function main(): Promise<number> {
  const argv = process.argv.slice(2);
  const { values } = parseArgs({
    args: argv,
    options: {
      seconds: { type: 'string' },
      meters: { type: 'string', default: '32' },
      'poll-s': { type: 'string', default: '5' },
      launchers: { type: 'string', default: 'tsx,dist' },
      out: { type: 'string' },
      quick: { type: 'boolean', default: false },
      help: { type: 'boolean', default: false },
    },
  });
  if (values.help) {
    process.stdout.write(`${USAGE}\n`);
    return 0;
  }
  const seconds = Number(values.seconds ?? (values.quick ? 15 : 120));
  const meters = Number(values.meters);
  const pollS = Number(values['poll-s']);
  const launchers = values.launchers.split(',') as Launcher[];
  if (!Number.isInteger(seconds) || seconds < 1 || !Number.isInteger(meters) || meters < 1 || !(pollS > 0) || !launchers.every((l) => l in LAUNCHERS)) {
    process.stderr.write(`${USAGE}\n`);
    return 2;
  }
  if (launchers.includes('dist') && !existsSync(join(ROOT, 'dist/bin/cli.js'))) {
    process.stderr.write('dist/ is missing: run `npm run build` first (npm run bench:footprint does)\n');
    return 2;
  }
  const out = values.out ? resolve(values.out) : values.quick ? undefined : join(ROOT, 'docs/benchmarks.md');

  const runs: Run[] = [];
  for (const l of launchers) runs.push(await measure(l, seconds, meters, pollS));

  const viaNpm = process.env.npm_lifecycle_event === 'bench:footprint';
  const text = render(runs, {
    command: viaNpm ? ['npm run bench:footprint', ...(argv.length ? ['--', ...argv] : [])].join(' ') : ['node --import tsx test/bench/footprint.ts', ...argv].join(' '),
    machine: `${cpus().length} × ${cpus()[0]?.model.trim() ?? 'unknown CPU'}, ${Math.round(totalmem() / 2 ** 30)} GiB, Linux ${release()}, Node ${process.version}`,
    revision: codeRevision(ROOT),
    seconds,
    meters,
    pollS,
  });
  process.stdout.write(`\n${text}\n`);
  if (out) {
    let doc = existsSync(out) ? readFileSync(out, 'utf8') : '# Benchmarks\n';
    const block = `${BEGIN}\n${text}\n${END}`;
    const b = doc.indexOf(BEGIN);
    const e = doc.indexOf(END);
    doc = b >= 0 && e > b ? doc.slice(0, b) + block + doc.slice(e + END.length) : `${doc.trimEnd()}\n\n## Footprint\n\n${block}\n`;
    writeFileSync(out, doc);
    process.stdout.write(`\nwritten to ${out}\n`);
  }
  return runs.some((r) => r.readingsVerified === 0) ? 1 : 0;
}

main().then(
  (code) => process.exit(code),
  (e: unknown) => {
    process.stderr.write(`\nfootprint bench failed: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`);
    process.exit(1);
  },
);
