/**
 * The ingest benchmark on one ledger engine: a settlement in this process (embedded aedes,
 * auth off, no HTTP, no InfluxDB), the load generator in a child process, and the phases of
 * docs/benchmarks.md. After every phase the ledger must hold exactly what was sent.
 */
import { fork, type ChildProcess } from 'node:child_process';
import { settlementNodeFlags } from './node-flags.ts';
import { readdirSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance, type EventLoopUtilization } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import { pino } from 'pino';
import { startSettlement, type Settlement } from '../../settlement/main.ts';
import { enrollTestGateway } from '../support/registry.ts';
import { freshPostgresSchema } from '../support/services.ts';
import { settlementConfig } from '../support/stack.ts';
import { tempDir } from '../support/tmp.ts';
import type { FromLoad, PhaseResult, PhaseSpec, ToLoad } from './messages.ts';
import { PhaseProfiler, summariseProfile, type ProfileSummary } from './profile.ts';
import { bucketQuantile, summarise, type Buckets } from './stats.ts';
import { measureVerifyRate, type VerifyRate } from './verify-rate.ts';

export type Engine = 'sqlite' | 'postgres';

export interface IngestOptions {
  seconds: number;
  gateways: number;
  metersPerGateway: number;
  /** Unacknowledged envelopes per gateway in the max-throughput phases. */
  window: number;
  verifyRoundMs: number;
  /** Profile the max-throughput phases again: 'auto' = only if a target is missed. */
  profile: 'auto' | 'always' | 'never';
  profileSeconds: number;
  postgresUrl?: string;
  /** What-ifs applied to this process by the caller; the load generator applies its part. */
}

export interface PhaseReport {
  spec: PhaseSpec;
  result: PhaseResult;
  presignMs: number;
  /** Readings per second acked within the window. */
  readingsPerSecond: number;
  envelopesPerSecond: number;
  /** The settlement process over the phase: CPU (fraction of one core), event-loop utilisation. */
  settlementCpu: number;
  settlementElu: number;
  /**
   * PostgreSQL only: CPU of the `postgres` processes on this machine over the phase (other
   * clients' backends too, if any are busy), fraction of one core.
   */
  postgresCpu?: number;
  /** gtx_ingest_latency_seconds over the phase: bucket upper bounds, ms. */
  inSettlement: { count: number; p50Ms: number; p99Ms: number; meanMs: number };
  meanCommitBatch: number;
  /**
   * The ledger commits over the phase, as the settlement reports them (its onCommit hook,
   * from handing a batch to the commit thread to its outcomes): count, p50/p99/max ms, and
   * their summed share of the wall time (above 100 % when batches overlap).
   */
  commits: { count: number; p50Ms: number; p99Ms: number; maxMs: number; shareOfWall: number };
  /** Empty when every ack was 'accepted' and the ledger holds exactly what was sent. */
  problems: string[];
}

export interface ProfileReport {
  phase: string;
  path: string;
  readingsPerSecond: number;
  summary: ProfileSummary;
}

export interface EngineReport {
  engine: Engine;
  engineVersion: string;
  startedAt: string;
  loadAverage: number[];
  verifyBefore: VerifyRate;
  verifyAfter: VerifyRate;
  verify16: VerifyRate;
  /** The baseline the ratios use: mean of the before and after medians. */
  rawVerifyPerSecond: number;
  phases: PhaseReport[];
  max1: PhaseReport;
  max16: PhaseReport;
  paced1: PhaseReport;
  paced16: PhaseReport;
  profiles: ProfileReport[];
  problems: string[];
}

/** The fork IPC channel, one request and one answer at a time. */
class LoadChannel {
  private readonly inbox: FromLoad[] = [];
  private waiter: ((m: FromLoad) => void) | undefined;
  private dead: Error | undefined;

  constructor(readonly child: ChildProcess) {
    child.on('message', (m) => {
      const msg = m as FromLoad;
      if (this.waiter) {
        const w = this.waiter;
        this.waiter = undefined;
        w(msg);
      } else this.inbox.push(msg);
    });
    child.on('exit', (code, signal) => {
      this.dead = new Error(`the load generator exited (code ${code}, signal ${signal})`);
      this.waiter?.({ t: 'error', message: this.dead.message });
    });
  }

  send(msg: ToLoad): void {
    this.child.send(msg);
  }

  async next<T extends FromLoad['t']>(t: T): Promise<Extract<FromLoad, { t: T }>> {
    const msg = this.inbox.shift() ?? (this.dead ? { t: 'error' as const, message: this.dead.message } : await new Promise<FromLoad>((r) => (this.waiter = r)));
    if (msg.t === 'error') throw new Error(`load generator: ${msg.message}`);
    if (msg.t !== t) throw new Error(`load generator answered ${msg.t}, expected ${t}`);
    return msg as Extract<FromLoad, { t: T }>;
  }
}

async function readBuckets(s: Settlement, which: 'ingestLatency' | 'dbBatchSize'): Promise<Buckets> {
  const m = await s.metrics[which].get();
  const buckets = m.values.filter((v) => v.metricName?.endsWith('_bucket') && v.labels.le !== '+Inf');
  return {
    bounds: buckets.map((v) => Number(v.labels.le)),
    cumulative: buckets.map((v) => v.value),
    count: m.values.find((v) => v.metricName?.endsWith('_count'))?.value ?? 0,
    sum: m.values.find((v) => v.metricName?.endsWith('_sum'))?.value ?? 0,
  };
}

const logLine = (s: string) => process.stderr.write(`[bench] ${s}\n`);

export async function runIngest(engine: Engine, opts: IngestOptions): Promise<EngineReport> {
  const dir = tempDir('gtx-bench-');
  const cfg = settlementConfig(dir.path, 0, false);
  cfg.http = null;
  cfg.influxdb = null;
  cfg.logLevel = 'warn';
  let schema: Awaited<ReturnType<typeof freshPostgresSchema>> | undefined;
  if (engine === 'postgres') {
    if (!opts.postgresUrl) throw new Error('no PostgreSQL URL');
    schema = await freshPostgresSchema(opts.postgresUrl);
    cfg.ledger.databaseUrl = schema.url;
  } else {
    cfg.ledger.databaseUrl = undefined;
  }
  const problems: string[] = [];
  const startedAt = new Date().toISOString();
  const { loadavg } = await import('node:os');
  const loadAverage = loadavg();

  logLine(`${engine}: raw Ed25519 verify rate…`);
  const verifyBefore = measureVerifyRate(1, opts.verifyRoundMs);
  const verify16 = measureVerifyRate(16, opts.verifyRoundMs, 1);
  logLine(`${engine}: ${Math.round(verifyBefore.perSecond)} verify/s (1-reading envelope, ${verifyBefore.bytes} B)`);

  // Warnings and errors (an ingest failure, a rejection) go to stderr; routine logs do not.
  const log = pino({ name: 'settlement', level: 'warn' }, pino.destination(2));
  const commitMs: number[] = [];
  const settlement = await startSettlement(cfg, { log, onCommit: (_envelopes, ms) => commitMs.push(ms) });
  const engineVersion = await versionOf(engine, schema?.url, cfg.ledger.sqlitePath);

  // The load generator holds 32 gateways' unacknowledged envelopes, as the settlement does: with
  // V8's default young generation its own collections delayed the acks it timestamps (p99 at
  // half load 52–111 ms against 40–53 ms with the settlement's flags, docs/benchmarks.md).
  const child = fork(fileURLToPath(new URL('./load.ts', import.meta.url)), [], {
    execArgv: ['--import', 'tsx', '--expose-gc', ...settlementNodeFlags(fileURLToPath(new URL('../../', import.meta.url)))],
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    // Structured clone: Infinity ("until the pool is used up") survives the trip.
    serialization: 'advanced',
  });
  const chan = new LoadChannel(child);
  const phases: PhaseReport[] = [];
  const profiles: ProfileReport[] = [];
  try {
    chan.send({ t: 'init', brokerUrl: settlement.brokerUrl, gateways: opts.gateways, metersPerGateway: opts.metersPerGateway, tag: `${engine}${Date.now().toString(36)}` });
    const { gateways } = await chan.next('keys');
    for (const g of gateways) {
      await enrollTestGateway(settlement.ledger, g.id, g.publicKeyPem, g.meters);
    }
    logLine(`${engine}: ${gateways.length} gateways × ${opts.metersPerGateway} meters enrolled`);

    const sent = { envelopes: 0, readings: 0 };
    const K = opts.gateways;

    const phase = async (spec: PhaseSpec, profilePath?: string): Promise<PhaseReport & { profile?: ProfileSummary }> => {
      chan.send({ t: 'prepare', spec });
      const prepared = await chan.next('prepared');
      await settlement.idle();
      settlement.metrics.ingestLatency.reset();
      settlement.metrics.dbBatchSize.reset();
      const statsBefore = { ...settlement.stats, rejected: { ...settlement.stats.rejected } };
      commitMs.length = 0;
      // Garbage of the previous phase is collected before the clock starts, not inside it
      // (npm run bench passes --expose-gc; without it this is skipped).
      (globalThis as { gc?: () => void }).gc?.();
      const profiler = profilePath ? new PhaseProfiler() : undefined;
      await profiler?.start();
      const pg0 = engine === 'postgres' ? postgresCpuMs() : undefined;
      const cpu0 = process.cpuUsage();
      const elu0: EventLoopUtilization = performance.eventLoopUtilization();
      const t0 = performance.now();
      chan.send({ t: 'run' });
      const { result } = await chan.next('result');
      const wall = performance.now() - t0;
      const elu = performance.eventLoopUtilization(elu0);
      const cpu = process.cpuUsage(cpu0);
      const pgCpu = pg0 !== undefined ? cpuSince(pg0, postgresCpuMs()) / wall : undefined;
      const profile = profiler && profilePath ? summariseProfile(await profiler.stop(profilePath)) : undefined;
      await settlement.idle();

      const commits = summarise(commitMs);
      const commitTotal = commitMs.reduce((a, b) => a + b, 0);
      const lat = await readBuckets(settlement, 'ingestLatency');
      const batch = await readBuckets(settlement, 'dbBatchSize');
      sent.envelopes += result.sentEnvelopes;
      sent.readings += result.sentReadings;
      const phaseProblems: string[] = [];
      if (result.failureCount > 0) phaseProblems.push(`${result.failureCount} envelope(s) not accepted: ${result.failures.join('; ')}`);
      if (result.acceptedEnvelopes !== result.sentEnvelopes) phaseProblems.push(`${result.acceptedEnvelopes} of ${result.sentEnvelopes} envelopes acked 'accepted'`);
      const counts = await settlement.ledger.counts();
      if (counts.envelopes !== sent.envelopes || counts.readings !== sent.readings) {
        phaseProblems.push(`ledger holds ${counts.envelopes} envelopes / ${counts.readings} readings, ${sent.envelopes} / ${sent.readings} were sent`);
      }
      if (counts.rejections !== 0) phaseProblems.push(`${counts.rejections} rejection(s) recorded in the ledger`);
      const dup = settlement.stats.duplicates - statsBefore.duplicates;
      if (dup) phaseProblems.push(`${dup} duplicate(s)`);
      for (const [reason, n] of Object.entries(settlement.stats.rejected)) {
        const d = (n ?? 0) - (statsBefore.rejected[reason as keyof typeof statsBefore.rejected] ?? 0);
        if (d) phaseProblems.push(`${d} rejected as ${reason}`);
      }
      const report: PhaseReport & { profile?: ProfileSummary } = {
        spec,
        result,
        presignMs: prepared.ms,
        readingsPerSecond: (result.windowReadings * 1000) / result.windowMs,
        envelopesPerSecond: (result.windowEnvelopes * 1000) / result.windowMs,
        settlementCpu: (cpu.user + cpu.system) / 1000 / wall,
        settlementElu: elu.utilization,
        ...(pgCpu !== undefined ? { postgresCpu: pgCpu } : {}),
        inSettlement: {
          count: lat.count,
          p50Ms: bucketQuantile(lat, 0.5) * 1000,
          p99Ms: bucketQuantile(lat, 0.99) * 1000,
          meanMs: lat.count ? (lat.sum / lat.count) * 1000 : NaN,
        },
        meanCommitBatch: batch.count ? batch.sum / batch.count : NaN,
        commits: { count: commits.count, p50Ms: commits.p50, p99Ms: commits.p99, maxMs: commits.max, shareOfWall: commitTotal / wall },
        problems: phaseProblems,
        profile,
      };
      problems.push(...phaseProblems.map((p) => `${spec.name}: ${p}`));
      logLine(
        `${engine} ${spec.name}: ${Math.round(report.readingsPerSecond)} readings/s, ${Math.round(report.envelopesPerSecond)} envelopes/s, ` +
          `p99 ${result.latency.p99.toFixed(1)} ms, settlement CPU ${(report.settlementCpu * 100).toFixed(0)} %, load CPU ${(result.cpu * 100).toFixed(0)} %` +
          `${pgCpu !== undefined ? `, postgres CPU ${(pgCpu * 100).toFixed(0)} %` : ''}` +
          `${result.poolExhausted ? ' (pool ran out early)' : ''}${phaseProblems.length ? ` — PROBLEMS: ${phaseProblems.join('; ')}` : ''}`,
      );
      return report;
    };

    const perGateway = (envelopesPerSecond: number, seconds: number, margin: number) =>
      Math.max(opts.window * 6, Math.ceil((envelopesPerSecond * seconds * margin) / K));
    const raw = verifyBefore.perSecond;
    const warmSeconds = Math.min(2, opts.seconds / 2);

    const maxPhase = async (rpe: number, name: string, guessEnvPerSec: number) => {
      // Warm-up (JIT, caches, ledger pages), timed too: its rate sizes the timed phase's pool.
      const warm = await phase({
        mode: 'max',
        name: `${name} warm-up`,
        readingsPerEnvelope: rpe,
        envelopesPerGateway: perGateway(guessEnvPerSec, warmSeconds, 1.5),
        seconds: warmSeconds,
        window: opts.window,
      });
      phases.push(warm);
      // Gateways are not served evenly, and the window closes when the first pool runs dry.
      // The warm-up's rate counts its drain too: a cold first batch can fill its whole window.
      const warmRate = (warm.result.sentEnvelopes * 1000) / warm.result.totalMs;
      const main = await phase({
        mode: 'max',
        name,
        readingsPerEnvelope: rpe,
        envelopesPerGateway: perGateway(Math.max(warmRate, warm.envelopesPerSecond), opts.seconds, 2.5),
        seconds: opts.seconds,
        window: opts.window,
      });
      phases.push(main);
      return main;
    };

    // The 1-reading rate cannot pass the raw verify rate; the 16-reading one is guessed at 4×.
    const max1 = await maxPhase(1, 'A: max, 1 reading/envelope', raw * 0.6);
    const max16 = await maxPhase(16, 'B: max, 16 readings/envelope', (raw * 0.6) / 4);
    const verifyAfter = measureVerifyRate(1, opts.verifyRoundMs);
    logLine(`${engine}: ${Math.round(verifyAfter.perSecond)} verify/s after the max phases`);

    const paced = async (rpe: number, name: string, max: PhaseReport) => {
      const p = await phase({ mode: 'paced', name, readingsPerEnvelope: rpe, envelopesPerSecond: max.envelopesPerSecond / 2, seconds: opts.seconds });
      phases.push(p);
      return p;
    };
    const paced1 = await paced(1, 'C1: half load, 1 reading/envelope', max1);
    const paced16 = await paced(16, 'C16: half load, 16 readings/envelope', max16);

    const rawVerifyPerSecond = (verifyBefore.perSecond + verifyAfter.perSecond) / 2;
    const missed =
      max1.readingsPerSecond / rawVerifyPerSecond < 0.6 ||
      max16.readingsPerSecond / rawVerifyPerSecond < 5 ||
      !(paced1.result.latency.p99 < 50) ||
      !(paced16.result.latency.p99 < 50);
    if (opts.profile === 'always' || (opts.profile === 'auto' && missed)) {
      for (const [rpe, name, max] of [
        [1, 'A (profiled)', max1],
        [16, 'B (profiled)', max16],
      ] as const) {
        const path = join(tmpdir(), `gtx-bench-${engine}-${rpe}-${Date.now()}.cpuprofile`);
        const p = await phase(
          {
            mode: 'max',
            name,
            readingsPerEnvelope: rpe,
            envelopesPerGateway: perGateway(max.envelopesPerSecond, opts.profileSeconds, 2.5),
            seconds: opts.profileSeconds,
            window: opts.window,
          },
          path,
        );
        profiles.push({ phase: name, path, readingsPerSecond: p.readingsPerSecond, summary: p.profile! });
        logLine(`${engine}: profile written to ${path}`);
      }
    }
    return {
      engine,
      engineVersion,
      startedAt,
      loadAverage,
      verifyBefore,
      verifyAfter,
      verify16,
      rawVerifyPerSecond,
      phases,
      max1,
      max16,
      paced1,
      paced16,
      profiles,
      problems,
    };
  } finally {
    chan.send({ t: 'stop' });
    await new Promise<void>((resolve) => {
      if (child.exitCode !== null || child.signalCode !== null) return resolve();
      const timer = setTimeout(() => {
        child.kill();
        resolve();
      }, 10_000);
      child.once('exit', () => {
        clearTimeout(timer);
        resolve();
      });
    });
    await settlement.stop();
    await schema?.drop();
    dir.remove();
  }
}

async function versionOf(engine: Engine, pgUrl: string | undefined, sqlitePath: string): Promise<string> {
  if (engine === 'postgres') {
    const { default: pg } = await import('pg');
    const c = new pg.Client({ connectionString: pgUrl });
    await c.connect();
    try {
      const { rows } = await c.query<{ server_version: string }>('SHOW server_version');
      return `PostgreSQL ${rows[0]?.server_version} (node-postgres)`;
    } finally {
      await c.end();
    }
  }
  const { default: Database } = await import('better-sqlite3');
  const db = new Database(':memory:');
  try {
    const v = db.prepare('SELECT sqlite_version()').pluck().get() as string;
    return `SQLite ${v} (better-sqlite3, WAL, synchronous=FULL), file in ${sqlitePath.startsWith(tmpdir()) ? tmpdir() : sqlitePath}`;
  } finally {
    db.close();
  }
}

/** user + system CPU, ms, per process named `postgres` (Linux /proc; empty elsewhere). */
function postgresCpuMs(): Map<string, number> {
  const tick = 10; // USER_HZ is 100 on Linux
  const out = new Map<string, number>();
  let pids: string[];
  try {
    pids = readdirSync('/proc').filter((d) => /^\d+$/.test(d));
  } catch {
    return out;
  }
  for (const pid of pids) {
    try {
      const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
      const close = stat.lastIndexOf(')');
      if (stat.slice(stat.indexOf('(') + 1, close) !== 'postgres') continue;
      const f = stat.slice(close + 2).split(' ');
      out.set(pid, (Number(f[11]) + Number(f[12])) * tick);
    } catch {
      // gone in the meantime
    }
  }
  return out;
}

/** CPU ms spent between two snapshots by the processes alive at the second (a process that exited is lost). */
function cpuSince(before: Map<string, number>, after: Map<string, number>): number {
  let ms = 0;
  for (const [pid, t] of after) ms += Math.max(0, t - (before.get(pid) ?? 0));
  return ms;
}
