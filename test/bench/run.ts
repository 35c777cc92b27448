/**
 * `npm run bench`: the market and ingest benchmarks (docs/benchmarks.md).
 *
 *   node --expose-gc --import tsx test/bench/run.ts [--suite all|ingest|market] [--engine sqlite|postgres|both] [--seconds N]
 *        [--out docs/benchmarks.md] [--quick] [--profile auto|always|never] [--strict]
 *   node --expose-gc --import tsx test/bench/run.ts --suite footprint [footprint-nodered.ts options]
 *
 * --quick is a 2-second smoke run; it writes the report only when --out is given. --strict
 * exits 1 when a target is missed (a run whose checks fail always exits 1). --gateways and
 * --window (unacked envelopes per gateway in the max phases) default to 32 and the gateway's
 * own default max_in_flight (32).
 * --suite footprint is not part of `all` (about 14 minutes, and it needs `npm run build` first): the
 * gateway beside Node-RED and the outbox replay rate, test/bench/footprint-nodered.ts, which gets the
 * other arguments (`npm run bench:nodered` builds and runs the same).
 * GTX_BENCH_TRACE=/some/prefix makes the load generator write [sent-at ms, latency ms] per
 * envelope and phase to /some/prefix-<phase>.json, for looking at latency tails over time.
 */
import { cpus, release, totalmem } from 'node:os';
import { resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { gatewayDefaults } from '../../gateway/config.ts';
import { defaultSettlementConfig } from '../../settlement/config.ts';
import { postgresUrl } from '../support/services.ts';
import { runIngest, type Engine, type IngestOptions } from './ingest.ts';
import { runMarketBench } from './market.ts';
import { settlementNodeFlags } from './node-flags.ts';
import { printSummary, renderEngine, verdicts, writeReport, type EngineOutcome, type RunContext, codeRevision } from './report.ts';

const USAGE =
  'usage: node --expose-gc --import tsx test/bench/run.ts [--suite all|ingest|market] [--engine sqlite|postgres|both] [--seconds N] [--out FILE] [--quick]\n' +
  '         [--profile auto|always|never] [--strict] [--gateways N] [--window N]\n' +
  '       node --expose-gc --import tsx test/bench/run.ts --suite footprint [--warmup-s N] [--measure-s N] [--quick] … (test/bench/footprint-nodered.ts)';

function fail(message: string): never {
  process.stderr.write(`${message}\n${USAGE}\n`);
  process.exit(2);
}

async function main(): Promise<number> {
  const argv = process.argv.slice(2);
  // Its own options: hand everything but the suite choice to it.
  const suiteAt = argv.findIndex((a, i) => a === '--suite=footprint' || (a === '--suite' && argv[i + 1] === 'footprint'));
  if (suiteAt >= 0) {
    const rest = argv.filter((_, i) => i !== suiteAt && !(argv[suiteAt] === '--suite' && i === suiteAt + 1));
    const { main: footprint } = await import('./footprint-nodered.ts');
    return footprint(rest, true);
  }
  let values;
  try {
    ({ values } = parseArgs({
      args: argv,
      options: {
        engine: { type: 'string', default: 'both' },
        seconds: { type: 'string' },
        out: { type: 'string' },
        quick: { type: 'boolean', default: false },
        profile: { type: 'string', default: 'auto' },
        strict: { type: 'boolean', default: false },
        gateways: { type: 'string', default: '32' },
        // As many unacknowledged envelopes per gateway as a gateway allows by default.
        window: { type: 'string', default: String(gatewayDefaults('bench', '.').mqtt.maxInFlight) },
        suite: { type: 'string', default: 'all' },
        help: { type: 'boolean', default: false },
      },
    }));
  } catch (e) {
    fail((e as Error).message);
  }
  if (values.help) {
    process.stdout.write(`${USAGE}\n`);
    return 0;
  }
  const engines: Engine[] =
    values.engine === 'both' ? ['sqlite', 'postgres'] : values.engine === 'sqlite' || values.engine === 'postgres' ? [values.engine] : fail(`--engine must be sqlite, postgres or both, got "${values.engine}"`);
  const seconds = values.seconds !== undefined ? Number(values.seconds) : values.quick ? 2 : 10;
  if (!Number.isFinite(seconds) || seconds < 1) fail(`--seconds must be a number ≥ 1, got "${values.seconds}"`);
  const gateways = Number(values.gateways);
  const window = Number(values.window);
  if (!Number.isInteger(gateways) || gateways < 1) fail('--gateways must be a whole number ≥ 1');
  if (!Number.isInteger(window) || window < 1) fail('--window must be a whole number ≥ 1');
  if (!['auto', 'always', 'never'].includes(values.profile!)) fail('--profile must be auto, always or never');
  const repo = fileURLToPath(new URL('../../', import.meta.url));
  // A smoke run never lands in docs/benchmarks.md unless asked to.
  const out = values.out ? resolve(values.out) : values.quick ? undefined : resolve(repo, 'docs/benchmarks.md');

  // The settlement runs in this process: it must run with the V8 flags it is deployed with.
  const missing = settlementNodeFlags(repo).filter((f) => !process.execArgv.includes(f));
  if (missing.length) fail(`the settlement runs with ${missing.join(' ')} (bin/gtx.js, first line); run this as \`npm run bench\` or pass the flag to node`);
  const viaNpm = process.env.npm_lifecycle_event === 'bench';
  const resolvedCommand = ['node', ...process.execArgv.filter((a) => a.startsWith('--') && a !== '--import'), '--import tsx test/bench/run.ts', ...argv].join(' ');
  const ctx: RunContext = {
    command: viaNpm ? ['npm run bench', ...(argv.length ? ['--', ...argv] : [])].join(' ') : resolvedCommand,
    resolvedCommand,
    machine: `${cpus().length} × ${cpus()[0]?.model.trim() ?? 'unknown CPU'}, ${Math.round(totalmem() / 2 ** 30)} GiB, Linux ${release()}, Node ${process.version}`,
    revision: codeRevision(repo, ['settlement', 'protocol', 'package.json', 'package-lock.json']),
    seconds,
    gateways,
    metersPerGateway: 4,
    window,
    commitBatchMax: defaultSettlementConfig().ingest.commitBatchMax,
  };
  const opts: IngestOptions = {
    seconds,
    gateways,
    metersPerGateway: ctx.metersPerGateway,
    window,
    verifyRoundMs: values.quick ? 300 : 1000,
    profile: values.profile as IngestOptions['profile'],
    profileSeconds: Math.min(seconds, 5),
  };

  if (!['all', 'ingest', 'market'].includes(values.suite!)) fail('--suite must be all, ingest, market or footprint');
  let marketOk = true;
  if (values.suite !== 'ingest') {
    const pgUrl = engines.includes('postgres') ? await postgresUrl() : undefined;
    const market = await runMarketBench({ engines, seconds: values.quick ? 2 : seconds, postgresUrl: pgUrl, quick: values.quick!, ctx });
    process.stdout.write(`\n${market.text}\n`);
    marketOk = market.ok;
    if (out) {
      writeReport(out, [{ key: 'market', text: market.text }]);
      process.stdout.write(`\nwritten to ${out}\n`);
    }
    if (values.suite === 'market') return market.valid ? (values.strict && !marketOk ? 1 : 0) : 1;
  }

  const outcomes: EngineOutcome[] = [];
  for (const engine of engines) {
    if (engine === 'postgres') {
      const url = await postgresUrl();
      if (!url) {
        const reason = 'no PostgreSQL at GTX_TEST_DATABASE_URL or postgres://postgres@127.0.0.1:5432/test';
        process.stderr.write(`[bench] skipping PostgreSQL: ${reason}\n`);
        outcomes.push({ engine, skipped: reason });
        continue;
      }
      opts.postgresUrl = url;
    }
    outcomes.push({ engine, report: await runIngest(engine, opts) });
  }

  process.stdout.write('\n');
  printSummary(outcomes);
  if (out) {
    writeReport(out, outcomes.map((o) => ({ key: `ingest:${o.engine}`, text: renderEngine(o, ctx) })));
    process.stdout.write(`\nwritten to ${out}\n`);
  }
  const ran = outcomes.flatMap((o) => ('report' in o ? [verdicts(o.report)] : []));
  if (ran.some((v) => !v.valid)) return 1;
  if (values.strict && (!marketOk || ran.some((v) => !(v.ok1 && v.ok16 && v.okP1 && v.okP16)))) return 1;
  return 0;
}

main().then(
  (code) => process.exit(code),
  (e: unknown) => {
    process.stderr.write(`bench failed: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`);
    process.exit(1);
  },
);
