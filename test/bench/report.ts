/**
 * Renders benchmark results: a table on the terminal and a block per engine in
 * docs/benchmarks.md. Blocks sit between markers and are replaced in place, so a run of one
 * engine keeps the other engine's last block and any hand-written text outside the markers.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import type { Engine, EngineReport, PhaseReport, ProfileReport } from './ingest.ts';
import type { LatencySummary } from './messages.ts';
import type { ProfileRow } from './profile.ts';

export const TARGETS = { ratio1: 0.6, ratio16: 5, p99Ms: 50 } as const;

export interface RunContext {
  command: string;
  resolvedCommand: string;
  machine: string;
  /** git commit of the code measured (and a note when settlement/ or protocol/ had local changes). */
  revision: string;
  seconds: number;
  gateways: number;
  metersPerGateway: number;
  window: number;
  commitBatchMax: number;
}

export type EngineOutcome = { engine: Engine; report: EngineReport } | { engine: Engine; skipped: string };

const ENGINE_TITLE: Record<Engine, string> = { sqlite: 'SQLite', postgres: 'PostgreSQL' };
const int = (n: number) => (Number.isFinite(n) ? Math.round(n).toLocaleString('en-US') : '—');
const ms = (n: number) => (Number.isFinite(n) ? (n < 10 ? n.toFixed(2) : n.toFixed(1)) : n === Infinity ? '> 2500' : '—');
const pct = (n: number) => `${(n * 100).toFixed(0)} %`;
const verdict = (ok: boolean) => (ok ? 'PASS' : '**MISS**');

export function verdicts(r: EngineReport) {
  const ratio1 = r.max1.readingsPerSecond / r.rawVerifyPerSecond;
  const ratio16 = r.max16.readingsPerSecond / r.rawVerifyPerSecond;
  return {
    ratio1,
    ratio16,
    ok1: ratio1 >= TARGETS.ratio1,
    ok16: ratio16 >= TARGETS.ratio16,
    okP1: r.paced1.result.latency.p99 < TARGETS.p99Ms,
    okP16: r.paced16.result.latency.p99 < TARGETS.p99Ms,
    valid: r.problems.length === 0,
  };
}

function lat(l: LatencySummary): string {
  return `${ms(l.p50)} / ${ms(l.p95)} / ${ms(l.p99)} / ${ms(l.max)}`;
}

function phaseRow(p: PhaseReport): string {
  const notes: string[] = [];
  if (p.result.poolExhausted) notes.push(`pool ran out: window ${(p.result.windowMs / 1000).toFixed(1)} s`);
  if (p.result.maxScheduleLagMs !== undefined) {
    notes.push(`from publish: p99 ${ms(p.result.latencyFromPublish!.p99)} ms; sends up to ${ms(p.result.maxScheduleLagMs)} ms behind schedule`);
  }
  if (p.problems.length) notes.push(`PROBLEMS: ${p.problems.join('; ')}`);
  const c = p.commits;
  return `| ${p.spec.name} | ${int(p.envelopesPerSecond)} | ${int(p.readingsPerSecond)} | ${lat(p.result.latency)} | ≤ ${ms(p.inSettlement.p50Ms)} / ≤ ${ms(p.inSettlement.p99Ms)} (mean ${ms(p.inSettlement.meanMs)}) | ${p.meanCommitBatch.toFixed(1)} | ${ms(c.p50Ms)} / ${ms(c.p99Ms)} / ${ms(c.maxMs)} (${pct(c.shareOfWall)}) | ${pct(p.settlementCpu)} / ${pct(p.settlementElu)}${p.postgresCpu !== undefined ? ` (postgres ${pct(p.postgresCpu)})` : ''} | ${pct(p.result.cpu)} | ${notes.join('; ')} |`;
}

/** SQL fit for an inline code span: no backticks (better-sqlite3's savepoint name has some), at most 70 characters. */
const short = (sql: string) => {
  const t = sql.replaceAll('`', "'").replaceAll('\t', '');
  return t.length > 70 ? `${t.slice(0, 67)}…` : t;
};


function profileTable(title: string, rows: ProfileRow[], withWhere: boolean): string[] {
  const out = [`${title}`, '', withWhere ? '| function | where | ms | share of busy |' : '| where | ms | share of busy |', withWhere ? '| --- | --- | ---: | ---: |' : '| --- | ---: | ---: |'];
  for (const r of rows) out.push(withWhere ? `| \`${r.what}\` | ${r.where} | ${int(r.ms)} | ${pct(r.share)} |` : `| ${r.what} | ${int(r.ms)} | ${pct(r.share)} |`);
  out.push('');
  return out;
}

function profileSection(p: ProfileReport): string[] {
  const s = p.summary;
  return [
    `**${p.phase}** — ${int(p.readingsPerSecond)} readings/s under the profiler; ${int(s.busyMs)} ms busy of ${int(s.totalMs)} ms sampled ` +
      `(${pct(s.busyMs / s.totalMs)}). Profile: \`${p.path}\` (open in Chrome DevTools → Performance).`,
    '',
    ...profileTable('Self time by function:', s.selfByFunction.slice(0, 10), true),
    ...profileTable('Self time by package or file:', s.selfByPlace.slice(0, 8), false),
    ...profileTable('Project functions, time on the stack (synchronous part; awaits split it):', s.inclusiveProject.slice(0, 8), true),
  ];
}

export function renderEngine(o: EngineOutcome, ctx: RunContext): string {
  const title = ENGINE_TITLE[o.engine];
  const head = [`### ${title} ledger`, ''];
  if ('skipped' in o) return [...head, `Not run: ${o.skipped}. Command: \`${ctx.command}\`.`, ''].join('\n');
  const r = o.report;
  const v = verdicts(r);
  const lines = [
    ...head,
    `- Command: \`${ctx.command}\`${ctx.command !== ctx.resolvedCommand ? ` (runs \`${ctx.resolvedCommand}\`)` : ''}`,
    `- Run: ${r.startedAt} · code at ${ctx.revision} · ${ctx.machine} · load average at start ${r.loadAverage.map((n) => n.toFixed(2)).join(' / ')}`,
    `- Ledger: ${r.engineVersion}`,
    `- Load: ${ctx.gateways} gateways × ${ctx.metersPerGateway} meters, one MQTT connection each (mqtt.js defaults as in gateway/publisher.ts, QoS 1; embedded aedes, auth off); ` +
      `max phases keep ≤ ${ctx.window} unacked envelopes per gateway; ${ctx.seconds} s per timed phase; commit_batch_max ${ctx.commitBatchMax}`,
    '',
    '| measure | value | ratio to raw verify | target | result |',
    '| --- | ---: | ---: | --- | --- |',
    `| raw Ed25519 verify (\`crypto.verify\`, ${r.verifyBefore.bytes}-byte envelope) | ${int(r.rawVerifyPerSecond)} /s (before ${int(r.verifyBefore.perSecond)}, after ${int(r.verifyAfter.perSecond)}; 16-reading bytes ${int(r.verify16.perSecond)}) | 1 | baseline | |`,
    `| 1-reading envelopes, max | ${int(r.max1.readingsPerSecond)} readings/s | ${v.ratio1.toFixed(2)} × | ≥ ${TARGETS.ratio1} × | ${verdict(v.ok1)} |`,
    `| 16-reading envelopes, max | ${int(r.max16.readingsPerSecond)} readings/s | ${v.ratio16.toFixed(2)} × | ≥ ${TARGETS.ratio16} × | ${verdict(v.ok16)} |`,
    `| p99 publish→ack, 1-reading at half load (${int(r.paced1.spec.mode === 'paced' ? r.paced1.spec.envelopesPerSecond : NaN)} envelopes/s) | ${ms(r.paced1.result.latency.p99)} ms | | < ${TARGETS.p99Ms} ms | ${verdict(v.okP1)} |`,
    `| p99 publish→ack, 16-reading at half load (${int(r.paced16.spec.mode === 'paced' ? r.paced16.spec.envelopesPerSecond : NaN)} envelopes/s) | ${ms(r.paced16.result.latency.p99)} ms | | < ${TARGETS.p99Ms} ms | ${verdict(v.okP16)} |`,
    '',
    v.valid
      ? `Checks: every envelope of every phase was acked \`accepted\` with its reading count, and after each phase the ledger held exactly the envelopes and readings sent (${int(r.phases.reduce((n, p) => n + p.result.sentReadings, 0))} readings in all), with no rejections.`
      : `**Checks FAILED — these figures are not valid:** ${r.problems.join('; ')}`,
    '',
    'Phases (latency in ms; paced phases count from the scheduled send time; in-settlement = `gtx_ingest_latency_seconds`, receipt → ack published, as bucket bounds):',
    '',
    '| phase | envelopes/s | readings/s | publish→ack p50 / p95 / p99 / max | in-settlement p50 / p99 | envelopes per commit | commit ms p50 / p99 / max (share of wall) | settlement CPU / event loop | load generator CPU | notes |',
    '| --- | ---: | ---: | --- | --- | ---: | --- | --- | --- | --- |',
    ...r.phases.map(phaseRow),
    '',
  ];
  if (r.profiles.length) {
    lines.push(`#### Where the time goes (${title})`, '', 'CPU profile of the settlement process (V8 sampling profiler, 250 µs) during a repeat of the max phases.', '');
    for (const p of r.profiles) lines.push(...profileSection(p));
  }
  return lines.join('\n');
}

/** A rewritable block of docs/benchmarks.md: `ingest:sqlite`, `ingest:postgres`, `market`. */
const BEGIN = (key: string) => `<!-- bench:${key}:begin -->`;
const END = (key: string) => `<!-- bench:${key}:end -->`;

const TEMPLATE = `# Benchmarks

Performance targets live here, in benchmarks, not in timed unit tests. Speed is stated as a
ratio against a baseline measured in the same run, in the same process, so a slower or busier
machine moves both sides. Each result block names the exact command that produced it. The
blocks between \`<!-- bench:… -->\` markers are rewritten by \`npm run bench\`; text outside them is kept.

## Ingest: MQTT → verify → ledger commit → ack

The issue: "Ingest: signed envelopes of 1 and of 16 readings through MQTT → verify → ledger
commit → ack, readings/s on one worker, against the raw Ed25519 verify rate of \`node:crypto\`
measured in the same run. Targets: with 1-reading envelopes at least 60% of the raw verify rate;
with 16-reading envelopes at least 5× the raw verify rate. p99 ingest latency under 50 ms at half
that load. Report SQLite and PostgreSQL."

How \`test/bench/run.ts\` measures it:

- **Baseline**: \`crypto.verify(null, bytes, key, sig)\` in a tight loop over the canonical bytes of a
  typical 1-reading envelope, with a \`KeyObject\` from SPKI PEM as the settlement uses, in the
  settlement process just before it starts (three rounds, median) and again after the max phases;
  the ratios use the mean of the two.
- **One worker**: one settlement (\`startSettlement\`, embedded aedes broker with auth off, HTTP and
  InfluxDB off) in the benchmark's main process, on a fresh SQLite file or a fresh PostgreSQL schema.
- **Load**: a child process (the other core) plays the gateways: one MQTT connection each, QoS 1
  publishes, enrolled through the registry with 100 kW meters; readings are chained per meter,
  5 s apart, counters growing ~7 kW. Every envelope of a phase is signed before the clock starts.
  An envelope counts when the settlement's \`ack\` for its id arrives (after the ledger commit).
- **Phases**: A and B keep a bounded window of unacknowledged envelopes per gateway and report
  the acked readings/s over the timed window (after a short warm-up, listed but not counted,
  whose rate sizes the pre-signed pool; if a gateway's pool still runs dry the window ends
  there and the table says so); C1 and C16 send at half of A's and B's envelope rate, evenly
  spaced (open loop), and report p99 publish→ack latency counted from the *scheduled* send time.
- **Columns**: settlement CPU is the whole process (the embedded broker included; V8's GC
  threads can take it past 100 %); "event loop" is its event-loop utilisation, which also counts
  time the thread is blocked or waiting for a core. Ledger commits run on the settlement's commit
  thread; commit times are from handing a batch to that thread to its outcomes (the settlement's
  \`onCommit\` hook), and their share of wall time passes 100 % when batches overlap.
- **Checks**: every ack must be \`accepted\` with the envelope's reading count, and after each phase
  the ledger must hold exactly what was sent, with no rejections; otherwise the run is marked
  invalid and exits 1.
- When a target is missed the max phases are run once more under the V8 CPU profiler (in-process
  inspector session, the data \`node --cpu-prof\` would write) and the top items are listed.

${BEGIN('ingest:sqlite')}
${END('ingest:sqlite')}

${BEGIN('ingest:postgres')}
${END('ingest:postgres')}
`;

export function writeReport(path: string, blocks: Array<{ key: string; text: string }>): void {
  let doc = existsSync(path) ? readFileSync(path, 'utf8') : TEMPLATE;
  for (const { key, text } of blocks) {
    const b = doc.indexOf(BEGIN(key));
    const e = doc.indexOf(END(key));
    const block = `${BEGIN(key)}\n${text.trimEnd()}\n${END(key)}`;
    if (b >= 0 && e > b) doc = doc.slice(0, b) + block + doc.slice(e + END(key).length);
    else doc = `${doc.trimEnd()}\n\n${block}\n`;
  }
  writeFileSync(path, doc);
}

export function printSummary(outcomes: EngineOutcome[]): void {
  const rows: string[][] = [['engine', 'raw verify/s', '1-rdg readings/s', 'ratio (≥0.6)', '16-rdg readings/s', 'ratio (≥5)', 'p99 C1 ms (<50)', 'p99 C16 ms (<50)', 'checks']];
  for (const o of outcomes) {
    if ('skipped' in o) {
      rows.push([o.engine, `skipped: ${o.skipped}`]);
      continue;
    }
    const r = o.report;
    const v = verdicts(r);
    const tag = (ok: boolean) => (ok ? 'PASS' : 'MISS');
    rows.push([
      o.engine,
      int(r.rawVerifyPerSecond),
      int(r.max1.readingsPerSecond),
      `${v.ratio1.toFixed(2)} ${tag(v.ok1)}`,
      int(r.max16.readingsPerSecond),
      `${v.ratio16.toFixed(2)} ${tag(v.ok16)}`,
      `${ms(r.paced1.result.latency.p99)} ${tag(v.okP1)}`,
      `${ms(r.paced16.result.latency.p99)} ${tag(v.okP16)}`,
      v.valid ? 'ok' : 'FAILED',
    ]);
  }
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => (r[i] ?? '').length)));
  for (const r of rows) process.stdout.write(`${r.map((c, i) => c.padEnd(widths[i]!)).join('  ')}\n`);
  for (const o of outcomes) {
    if ('skipped' in o) continue;
    for (const p of o.report.profiles) {
      process.stdout.write(`\n${o.engine} ${p.phase}: top self time (${int(p.summary.busyMs)} ms busy)\n`);
      for (const row of p.summary.selfByFunction.slice(0, 8)) {
        process.stdout.write(`  ${pct(row.share).padStart(5)}  ${row.what}  ${row.where}\n`);
      }
    }
  }
}

/**
 * The commit measured, and whether the code differed from it (uncommitted changes, anywhere or
 * under `paths`, which are then named).
 */
export function codeRevision(repo: string, paths?: string[]): string {
  try {
    // Not trimmed: a porcelain line starts with a status column that may be a space.
    const git = (...args: string[]) => execFileSync('git', ['-C', repo, ...args], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] });
    const head = git('rev-parse', '--short', 'HEAD').trim();
    const dirty = git('status', '--porcelain', ...(paths ? ['--', ...paths] : []))
      .split('\n')
      .filter((l) => l.length > 3)
      .map((l) => l.slice(3));
    if (dirty.length === 0) return head;
    return paths ? `${head} + uncommitted changes to ${dirty.join(', ')}` : `${head} + uncommitted changes`;
  } catch {
    return 'unknown (not a git checkout)';
  }
}
