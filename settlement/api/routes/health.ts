import type { FastifyPluginAsync } from 'fastify';
import { Type, type Static } from '@sinclair/typebox';
import { sql } from 'kysely';
import type { BusStatus } from '../../broker/bus.ts';
import type { Ledger } from '../../ledger/ledger.ts';
import type { WriterStatus } from '../../ledger/writer.ts';
import type { JobHealth } from '../../jobs/periodic-job.ts';
import type { InfluxSinkStats } from '../../timeseries/influx-sink.ts';
import type { ApiDeps } from '../server.ts';

/**
 * What /health/ready looks at besides the ledger. Absent when the API runs without ingest (a
 * test, the CLI): the broker and writer checks then say `off` and do not count.
 */
export interface ReadinessSources {
  /** The settlement's MQTT link (Bus.status()). */
  broker(): BusStatus;
  /** The ledger's one writer (LedgerWriter.status()). */
  writer(): WriterStatus;
  /** The InfluxDB sink's counters; null when [influxdb] is not configured. Shown, never required. */
  influx(): InfluxSinkStats | null;
  /**
   * The market services' scheduled jobs (settlement/jobs); absent: their checks say `off`. Shown,
   * never required: readiness steers HTTP traffic, and taking the API away when auctions or
   * pricing fail would also take the routes people need then (cancel an order and get its
   * escrow back, read trades); a failing job is for an alert, not for the load balancer.
   */
  jobs?(): MarketServiceJobs;
}

/** The jobs behind the reference design's pricing service, auction scheduler and governance services. */
export interface MarketServiceJobs {
  /** One per market (`pricing:<market>`). */
  pricing: JobHealth[];
  auctions: JobHealth;
  governance: JobHealth;
}

/**
 * A job is down when its last run failed, or when it has not succeeded for two of its periods
 * and a minute (a run that hangs, or a timer that stopped); a job not started here is `off`.
 */
const JOB_STALE_GRACE_MS = 60_000;

/** How long the ledger may take to answer `SELECT 1` before it counts as down. */
const LEDGER_PROBE_TIMEOUT_MS = 1_000;

const CheckStatus = Type.Union([Type.Literal('ok'), Type.Literal('down'), Type.Literal('off')]);
const common = {
  status: CheckStatus,
  /** ISO-8601 instant of the last success; null when none was seen. */
  lastSuccess: Type.Union([Type.String({ format: 'date-time' }), Type.Null()]),
  /** The latest error the part reported (it may predate lastSuccess); null when none. */
  lastError: Type.Union([Type.String(), Type.Null()]),
  required: Type.Boolean({ description: 'whether this check being down makes the answer 503 not_ready' }),
};
const jobFields = {
  ...common,
  everyS: Type.Union([Type.Number(), Type.Null()], { description: 'how often the job runs, in seconds; null when off' }),
};
const Readiness = Type.Object({
  status: Type.Union([Type.Literal('ready'), Type.Literal('not_ready')]),
  checks: Type.Object({
    broker: Type.Object({ ...common, connected: Type.Boolean(), subscribed: Type.Boolean() }),
    writer: Type.Object({ ...common, restarts: Type.Integer() }),
    ledger: Type.Object({ ...common, engine: Type.String() }),
    influxdb: Type.Object({
      ...common,
      configured: Type.Boolean(),
      backlog: Type.Integer(),
      written: Type.Integer(),
      failedWrites: Type.Integer(),
      dropped: Type.Integer(),
    }),
    pricingService: Type.Object({
      ...jobFields,
      markets: Type.Array(
        Type.Object({
          market: Type.String(),
          status: CheckStatus,
          lastSuccess: Type.Union([Type.String({ format: 'date-time' }), Type.Null()]),
          lastError: Type.Union([Type.String(), Type.Null()]),
        }),
        { description: 'one price signal job per market' },
      ),
    }),
    auctionScheduler: Type.Object(jobFields),
    governanceServices: Type.Object(jobFields),
  }),
});
type Readiness = Static<typeof Readiness>;
type Check = Static<typeof CheckStatus>;

const iso = (ms: number | null) => (ms === null ? null : new Date(ms).toISOString());

interface JobCheck {
  status: Check;
  lastSuccess: string | null;
  lastError: string | null;
  required: false;
  everyS: number | null;
}

export function jobCheck(h: JobHealth | undefined): JobCheck {
  if (!h || !h.started) return { status: 'off', lastSuccess: iso(h?.lastSuccessAtMs ?? null), lastError: h?.lastError ?? null, required: false, everyS: null };
  const stale = h.sinceSuccessMs !== null && h.sinceSuccessMs > 2 * h.everyMs + JOB_STALE_GRACE_MS;
  return {
    status: h.failing || stale ? 'down' : 'ok',
    lastSuccess: iso(h.lastSuccessAtMs),
    lastError: stale ? `no successful run for ${Math.round(h.sinceSuccessMs! / 1000)} s; it runs every ${h.everyMs / 1000} s` : h.lastError,
    required: false,
    everyS: h.everyMs / 1000,
  };
}

/** The pricing jobs of all markets as one check: down when any market's is; its last success the oldest of theirs. */
function pricingCheck(jobs: readonly JobHealth[] | undefined): JobCheck & { markets: Array<{ market: string; status: Check; lastSuccess: string | null; lastError: string | null }> } {
  const markets = (jobs ?? []).map((h) => ({ market: h.name.replace(/^pricing:/, ''), ...jobCheck(h), at: h.lastSuccessAtMs }));
  const running = markets.filter((m) => m.status !== 'off');
  const down = running.filter((m) => m.status === 'down');
  const at = running.map((m) => m.at);
  return {
    status: running.length === 0 ? 'off' : down.length > 0 ? 'down' : 'ok',
    lastSuccess: at.length === 0 || at.includes(null) ? null : iso(Math.min(...(at as number[]))),
    lastError: (down[0] ?? running.find((m) => m.lastError !== null))?.lastError ?? null,
    required: false,
    everyS: running.length === 0 ? null : Math.min(...running.map((m) => m.everyS!)),
    markets: markets.map(({ market, status, lastSuccess, lastError }) => ({ market, status, lastSuccess, lastError })),
  };
}

/**
 * The ledger probe: one trivial query with a deadline. Concurrent probes share the query under
 * way, so a load balancer polling a hung ledger does not pile up queries on its pool.
 */
class LedgerProbe {
  lastSuccessAtMs: number | null = null;
  lastError: string | null = null;
  private running: Promise<boolean> | null = null;

  constructor(private readonly ledger: Ledger) {}

  probe(): Promise<boolean> {
    this.running ??= this.run().finally(() => (this.running = null));
    return this.running;
  }

  private async run(): Promise<boolean> {
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`the ledger did not answer SELECT 1 within ${LEDGER_PROBE_TIMEOUT_MS} ms`)), LEDGER_PROBE_TIMEOUT_MS);
    });
    try {
      await Promise.race([sql`SELECT 1`.execute(this.ledger.db), late]);
      this.lastSuccessAtMs = Date.now();
      return true;
    } catch (e) {
      this.lastError = e instanceof Error ? e.message : String(e);
      return false;
    } finally {
      clearTimeout(timer);
    }
  }
}

/**
 * The InfluxDB sink counts what it did but does not say whether it works now: read that from how
 * its counters moved since the previous probe (a write succeeded: ok; only failures: down).
 */
class InfluxView {
  private batches = 0;
  private failed = 0;
  private down = false;

  check(s: InfluxSinkStats): Check {
    if (s.batchesWritten > this.batches) this.down = false;
    else if (s.failedWrites > this.failed) this.down = true;
    this.batches = s.batchesWritten;
    this.failed = s.failedWrites;
    return this.down ? 'down' : 'ok';
  }
}

export const healthRoutes: FastifyPluginAsync<ApiDeps> = async (app, { ledger, metrics, readiness }) => {
  const ledgerProbe = new LedgerProbe(ledger);
  const influxView = new InfluxView();

  // Liveness: answered from memory, so a load balancer's polling costs no ledger work and a
  // slow ledger does not get the process restarted (readiness says that instead).
  app.get(
    '/health',
    {
      config: { public: 'liveness for load balancers; no per-meter data' },
      schema: { response: { 200: Type.Object({ status: Type.Literal('ok'), ledger: Type.String() }) } },
    },
    async () => ({ status: 'ok' as const, ledger: ledger.engine }),
  );

  app.get(
    '/health/ready',
    {
      config: { public: 'readiness for load balancers and operators; states of the broker link, writer, ledger, InfluxDB and market jobs, no per-meter data' },
      schema: { response: { 200: Readiness, 503: Readiness } },
    },
    async (_req, reply) => {
      const ledgerOk = await ledgerProbe.probe();
      const bus = readiness?.broker();
      const writer = readiness?.writer();
      const influx = readiness?.influx() ?? null;
      const jobs = readiness?.jobs?.();
      const brokerOk = bus ? bus.connected && bus.subscribed : true;
      const writerOk = writer ? writer.alive : true;
      const body: Readiness = {
        status: ledgerOk && brokerOk && writerOk ? 'ready' : 'not_ready',
        checks: {
          broker: {
            status: !bus ? 'off' : brokerOk ? 'ok' : 'down',
            lastSuccess: iso(bus?.lastConnectedAtMs ?? null),
            // Connected but a filter not (yet) granted leaves no error of its own.
            lastError: bus?.lastError ?? (bus && !brokerOk ? (bus.connected ? 'subscriptions not granted yet' : 'connecting') : null),
            required: true,
            connected: bus?.connected ?? false,
            subscribed: bus?.subscribed ?? false,
          },
          writer: {
            status: !writer ? 'off' : writerOk ? 'ok' : 'down',
            lastSuccess: iso(writer?.lastSuccessAtMs ?? null),
            lastError: writer?.lastError ?? null,
            required: true,
            restarts: writer?.restarts ?? 0,
          },
          ledger: {
            status: ledgerOk ? 'ok' : 'down',
            lastSuccess: iso(ledgerProbe.lastSuccessAtMs),
            lastError: ledgerProbe.lastError,
            required: true,
            engine: ledger.engine,
          },
          influxdb: {
            status: influx ? influxView.check(influx) : 'off',
            // The sink does not timestamp its writes.
            lastSuccess: null,
            lastError: influx?.lastError ?? null,
            required: false,
            configured: influx !== null,
            backlog: influx?.backlog ?? 0,
            written: influx?.written ?? 0,
            failedWrites: influx?.failedWrites ?? 0,
            dropped: influx?.dropped ?? 0,
          },
          pricingService: pricingCheck(jobs?.pricing),
          auctionScheduler: jobCheck(jobs?.auctions),
          governanceServices: jobCheck(jobs?.governance),
        },
      };
      reply.header('cache-control', 'no-store');
      return reply.code(body.status === 'ready' ? 200 : 503).send(body);
    },
  );

  app.get(
    '/metrics',
    {
      config: { public: 'totals for Prometheus scrapers; no per-meter data' },
      // Documented by content type (text, not JSON); a string with its content-type is sent as it is.
      schema: { response: { 200: { description: 'Prometheus text exposition format', content: { 'text/plain': { schema: Type.String() } } } } },
    },
    async (_req, reply) => {
      reply.header('content-type', metrics.registry.contentType);
      return metrics.registry.metrics();
    },
  );
};
