import type { Logger } from 'pino';
import { REPLY_QOS, loadPublicKey, parseGatewayTopic, topics } from '../protocol/index.ts';
import { readFileSync } from 'node:fs';
import { hashSecret, newSecret } from './broker/credentials.ts';
import { AedesBus, ClientBus, type Bus, type BusStatus } from './broker/bus.ts';
import { startEmbeddedBroker, type EmbeddedBroker } from './broker/embedded.ts';
import { LedgerCredentialStore } from './broker/ledger-credentials.ts';
import { MosquittoPasswordSync } from './broker/mosquitto-sync.ts';
import { checkAdminKey, type SettlementConfig } from './config.ts';
import { BatchCommitter } from './ingest/committer.ts';
import { LookupCache } from './ingest/lookup-cache.ts';
import { ReadingsHandler, type IngestStats } from './ingest/readings-handler.ts';
import { EnvelopeVerifier, type EnrolledMeter, type GatewayKey } from './ingest/verify.ts';
import type { Ledger } from './ledger/ledger.ts';
import type { MarketId } from './registry/registry.ts';
import { Enrollment } from './registry/enrollment.ts';
import { HandoverStore } from './registry/handovers.ts';
import { ApiKeyStore } from './registry/api-keys.ts';
import { CommitThread } from './ledger/commit-thread.ts';
import { DirectWriter, type LedgerWriter } from './ledger/writer.ts';
import { RejectionRecorder } from './ingest/rejection-recorder.ts';
import { gapEstimator } from './jobs/gap-estimator.ts';
import { rejectionRetention } from './jobs/rejection-retention.ts';
import type { PeriodicJob } from './jobs/periodic-job.ts';
import { rewardsJob } from './jobs/rewards-job.ts';
import { RewardPayer } from './rewards/rewards.ts';
import { auctionJob, deliveryJob, pricingJobs } from './jobs/market-jobs.ts';
import { MarketService } from './market/market.ts';
import { Staking } from './governance/governance.ts';
import { MarketParameters, Voting } from './governance/voting.ts';
import { governanceJob } from './jobs/governance-job.ts';
import { recMintingJob } from './jobs/rec-minting-job.ts';
import { RecMinter } from './recs/minting.ts';
import { RecLifecycle } from './recs/lifecycle.ts';
import { GovernanceStore } from './store/governance-store.ts';
import { NrgToken } from './tokens/nrg.ts';
import { marketEventPublisher } from './market-events.ts';
import { openLedger } from './ledger/open.ts';
import { createLogger } from './logger.ts';
import { createMetrics, type SettlementMetrics } from './metrics.ts';
import { StatusHandler } from './ingest/status-handler.ts';
import { buildApi, listenApi } from './api/server.ts';
import { InfluxSink } from './timeseries/influx-sink.ts';
import { ReadingTagger } from './timeseries/reading-tags.ts';
import { marketIntervalJob } from './timeseries/market-interval-job.ts';
import { EventHub } from './events/hub.ts';
import { certificateEvent } from './events/live-events.ts';
import { readingFeed } from './events/reading-feed.ts';

/** A running settlement: the composition root's handle for the CLI, the demo and tests. */
export interface Settlement {
  /** Revokes a gateway: its readings and logins are refused from this moment. */
  revokeGateway(id: string): Promise<boolean>;
  enrollment: Enrollment;
  /** The time-series sink, when [influxdb] is configured. */
  influx?: InfluxSink;
  /** Writes closed market intervals to InfluxDB (timeseries/market-interval-job.ts), when [influxdb] is configured. */
  influxMarketIntervals?: PeriodicJob<{ intervals: number }>;
  brokerUrl: string;
  /** The embedded broker's TLS listener, when [mqtt] tls_listen is set. */
  brokerTlsUrl: string | null;
  /** Base URL of the REST API and /metrics, when the HTTP server is on. */
  httpUrl?: string;
  metrics: SettlementMetrics;
  ledger: Ledger;
  stats: IngestStats;
  /** The settlement's MQTT link: connected, subscribed, last error (for a readiness check). */
  mqttStatus(): BusStatus;
  /** The ledger's one writer: its status for readiness. */
  writer: LedgerWriter;
  /**
   * Envelopes (and bytes) between receipt and commit outcome now, and the most envelopes held at
   * once since start (`peakEnvelopes`, measured on every message, which sampling would miss).
   */
  intakeQueue(): { envelopes: number; bytes: number; peakEnvelopes: number };
  /** Periodic jobs (each runs under the ledger's advisory lock; `runOnce()` runs one now). */
  jobs: {
    gapEstimates: PeriodicJob<{ estimated: number; unestimable: number }>;
    rejectionRetention: PeriodicJob<{ samples: number; counts: number }>;
    auctions: PeriodicJob<{ auctions: number }>;
    deliveries: PeriodicJob<{ trades: number }>;
    governance: PeriodicJob<{ decided: number; executed: number }>;
    recMinting: PeriodicJob<{ minted: number }>;
    rewards: PeriodicJob<{ paid: number }>;
  };
  /** Pricing jobs, one per market. */
  pricing: Array<PeriodicJob<unknown>>;
  /** Orders, auctions, delivery settlement, credits (market/market.ts). */
  market: MarketService;
  /** The NRG token (tokens/nrg.ts) and staking (governance/governance.ts). */
  nrg: NrgToken;
  staking: Staking;
  voting: Voting;
  /** Certificates from verified generation (recs/minting.ts). */
  recs: RecMinter;
  /** Counts and samples refusals; `flush()` writes what it holds. */
  recorder: RejectionRecorder;
  /** Live events (prices, auctions, trades, settlements, certificates, readings) for GET /api/v1/events. */
  events: EventHub;
  /** Resolves when every message received so far is committed and answered. */
  idle(): Promise<void>;
  stop(): Promise<void>;
}

export interface SettlementDeps {
  now?: () => number;
  log?: Logger;
  /** Called after each ledger commit with its size and duration (the benchmark listens). */
  onCommit?: (envelopes: number, ms: number) => void;
  /**
   * How often (real ms) the auction and delivery-settlement jobs look for work; defaults 30 s
   * and 60 s. The demo shortens them when its clock runs faster than real time.
   */
  marketJobEveryMs?: { auctions?: number; deliveries?: number };
}

/** How long a gateway's key and status are cached; bounds how late a revocation bites. */
const KEY_CACHE_MS = 2_000;

export async function startSettlement(cfg: SettlementConfig, deps: SettlementDeps = {}): Promise<Settlement> {
  // What was opened before a failure (a port in use, say) is closed again, newest first.
  const undo: Array<() => Promise<unknown>> = [];
  try {
    return await assemble(cfg, deps, undo);
  } catch (e) {
    for (const u of undo.reverse()) await u().catch(() => undefined);
    throw e;
  }
}

async function assemble(cfg: SettlementConfig, deps: SettlementDeps, undo: Array<() => Promise<unknown>>): Promise<Settlement> {
  const now = deps.now ?? Date.now;
  const log = deps.log ?? createLogger('settlement', cfg.logLevel);
  // Before anything is opened or bound: a short admin key refuses the start (ConfigError).
  checkAdminKey(cfg.adminKey);

  const ledger: Ledger = await openLedger(cfg.ledger);
  undo.push(() => ledger.close());
  for (const m of cfg.markets) await ledger.putMarket({ ...m, id: m.id as MarketId });

  // The settlement subscribes inside its embedded broker; its MQTT user's secret is random and
  // never leaves this process, so nobody can log in as the settlement.
  const ownSecret = newSecret();
  let broker: EmbeddedBroker | undefined;
  let brokerUrl: string;
  if (cfg.mqtt.mode === 'embedded') {
    const tls = cfg.mqtt.tls
      ? { key: readFileSync(cfg.mqtt.tls.keyFile), cert: readFileSync(cfg.mqtt.tls.certFile), host: cfg.mqtt.tls.host, port: cfg.mqtt.tls.port }
      : undefined;
    broker = await startEmbeddedBroker(cfg.mqtt.listenHost, cfg.mqtt.listenPort, {
      auth: cfg.mqtt.auth ? new LedgerCredentialStore(ledger, hashSecret(ownSecret)) : undefined,
      tls,
      log: log.child({ component: 'broker' }),
      // Nobody gets in before the settlement's own subscriptions exist (admitAll below).
      holdFor: '',
    });
    const opened = broker;
    undo.push(() => opened.close());
    brokerUrl = broker.url;
    log.info({ url: brokerUrl, tls: broker.tlsUrl, auth: cfg.mqtt.auth }, 'embedded MQTT broker listening');
  } else {
    brokerUrl = cfg.mqtt.url;
  }

  const keyCache = new LookupCache<GatewayKey | undefined>(
    (id) => ledger.getGateway(id).then((rec) => (rec ? { status: rec.status, key: loadPublicKey(rec.publicKeyPem) } : undefined)),
    KEY_CACHE_MS,
  );
  const handovers = new HandoverStore(ledger.db);
  // One cached read of each meter's registry record, for everything that needs its facts.
  const meterRecords = new LookupCache((id: string) => ledger.getMeter(id), KEY_CACHE_MS);
  const meterCache = new LookupCache<EnrolledMeter | undefined>(async (id) => {
    const m = await meterRecords.get(id);
    const market = m && (await ledger.getMarket(m.market));
    if (!m || !market) return undefined;
    const takeover = (await handovers.forMeter(id)).filter((h) => h.newGateway === m.gateway).at(-1);
    return {
      gateway: m.gateway,
      context: { ratedPowerW: m.ratedPowerW, market: market.id, timeZone: market.timeZone, intervalMs: market.intervalMinutes * 60_000 },
      ...(takeover ? { fromSeq: takeover.fromSeq } : {}),
    };
  }, KEY_CACHE_MS);

  const verifier = new EnvelopeVerifier({
    gatewayKey: (id) => keyCache.get(id),
    meter: (id) => meterCache.get(id),
    now,
    maxPayloadBytes: cfg.ingest.maxPayloadBytes,
    maxClockSkewMs: cfg.ingest.maxClockSkewMs,
    maxBackfillMs: cfg.ingest.maxBackfillMs,
  });
  const influx = cfg.influxdb
    ? new InfluxSink({ ...cfg.influxdb, log: log.child({ component: 'influx' }), now })
    : undefined;
  await influx?.start();
  if (influx) undo.push(() => influx.stop());
  // Readings get their meter's market, model and role as tags, from a per-meter cache.
  const tagger = influx
    ? new ReadingTagger(influx, {
        lookup: (id) => meterRecords.get(id).then((m) => (m ? { market: m.market, model: m.model, role: m.role } : undefined)),
        onError: (e) => log.warn({ err: e }, 'meter tags for InfluxDB not looked up; its readings go untagged'),
      })
    : undefined;
  const status = new StatusHandler(log);
  const metrics = createMetrics({
    defaultMetrics: true,
    // Read at scrape time only, after everything below exists.
    sources: {
      connectedGateways: () => status.onlineCount(),
      influxBacklog: () => influx?.stats().backlog ?? 0,
      intakeQueuedEnvelopes: () => handler.queue().envelopes,
      rejectionSamplesDropped: () => recorder.samplesDropped,
      writerRestarts: () => writer.status().restarts,
    },
  });
  const commitsInFlight = cfg.ingest.commitsInFlight ?? (ledger.engine === 'postgres' ? 2 : 1);
  // Every write goes through one writer: its own thread (ledger/commit-thread.ts), unless the
  // ledger lives in memory.
  const writer: LedgerWriter =
    cfg.ledger.databaseUrl || cfg.ledger.sqlitePath !== ':memory:'
      ? new CommitThread(cfg.ledger, {
          commitTimeoutMs: cfg.ingest.commitTimeoutMs,
          restarted: (cause) => log.error({ err: cause }, 'ledger writer thread replaced; the envelopes it held are committed again one by one'),
          stalled: (cause) => log.error({ err: cause }, 'ledger writer stalled: envelopes go unanswered (gateways resend) until it answers again'),
          recovered: () => log.warn('ledger writer answers again'),
        })
      : new DirectWriter(ledger);
  const committer = new BatchCommitter(
    (batch) => writer.commit(batch, { nowMs: now(), maxSpanMs: cfg.ingest.maxBackfillMs }),
    cfg.ingest.commitBatchMax,
    (n, ms) => {
      metrics.dbBatchSize.observe(n);
      metrics.dbCommitSeconds.observe(ms / 1000);
      deps.onCommit?.(n, ms);
    },
    commitsInFlight,
    (env, e) => log.error({ envelope: env.id, gateway: env.gateway, err: e }, 'envelope refused as commit_failed: its commit fails on its own'),
  );
  const recorder = new RejectionRecorder({
    write: (batch) => writer.recordRejections(batch, cfg.ingest.rejectionSampleBytes),
    now,
    log,
    samplesPerMinute: cfg.ingest.rejectionSamplesPerMinute,
    sampleBytes: cfg.ingest.rejectionSampleBytes,
  });
  undo.push(() => writer.close());
  recorder.start();
  undo.push(() => recorder.stop());
  const events = new EventHub((e) => log.error({ err: e }, 'a live event subscriber failed; it was dropped'));
  // Market events go out on MQTT once the bus exists (below); until then there are none.
  const marketEvents = marketEventPublisher({ log: log.child({ component: 'market' }), metrics, publish: (topic, payload) => bus.publish(topic, payload, { qos: 1, retain: topic.endsWith('/price') }), currency: (m) => cfg.markets.find((x) => x.id === m)?.rules.currency ?? cfg.credits.defaultCurrency, hub: events, timeseries: influx });
  // A market's rules: its config, overridden by proposals executed by vote (governance/voting.ts).
  const parameters = new MarketParameters(new GovernanceStore(ledger.db), (id) => cfg.markets.find((m) => m.id === id)?.rules);
  await parameters.refresh();
  const market = new MarketService(ledger, {
    rules: (id) => parameters.rules(id),
    credits: cfg.credits,
    now,
    events: marketEvents,
  });
  const marketDeps = { ledger, market, markets: cfg.markets, log: log.child({ component: 'market' }), now };
  // NRG: the supply is minted once (the first start of the first worker), then only moves.
  const nrg = new NrgToken(market.money, cfg.governance.supply, now, async (id) => (await ledger.getAccount(id)) !== undefined);
  if (await nrg.genesis()) log.info({ event: 'NrgGenesis', total_supply: cfg.governance.supply.totalSupply.toString(), incentive_pool: cfg.governance.supply.incentivePool.toString() }, 'NRG supply minted to the treasury');
  const staking = new Staking(ledger.db, market.money, cfg.governance.rules, now, log.child({ component: 'governance' }));
  const rewardPayer = new RewardPayer(ledger, market.money, {
    rules: (id) => ({ ...cfg.rewards, ratePerKwh: parameters.rewardRate(id, cfg.rewards.ratePerKwh) }),
    holidays: (id) => new Set(cfg.markets.find((m) => m.id === id)?.holidays ?? []),
    now,
    settleMs: cfg.ingest.gapGraceMs + 60_000,
    log: log.child({ component: 'rewards' }),
    onPaid: (m) => metrics.rewardsPaid.inc({ market: m }),
  });
  const recMinter = new RecMinter(ledger, market.money, { now, settleMs: cfg.ingest.gapGraceMs + 60_000, lookbackMs: cfg.ingest.maxBackfillMs, rules: cfg.recs,
    log: log.child({ component: 'recs' }),
    onMinted: (r) => {
      metrics.recsMinted.inc({ market: r.market, source: r.energySource });
      metrics.recsCertifiedWh.inc({ market: r.market, source: r.energySource }, r.volumeWh);
      events.publish(certificateEvent(r));
      influx?.certificate({ market: r.market, source: r.energySource, certificate: r.id, meter: r.meter, issuedAtMs: r.issuedAtMs, volumeWh: r.volumeWh });
    },
  });
  const voting = new Voting(ledger.db, market.money, staking, {
    rules: cfg.governance.rules,
    parameters,
    energyMinutes: (id) => cfg.markets.find((m) => m.id === id)?.intervalMinutes,
    now,
    log: log.child({ component: 'governance' }),
    onOutcome: (outcome) => metrics.proposalsDecided.inc({ outcome }),
  });
  const jobs = {
    gapEstimates: gapEstimator({ ledger, writer, log, now, graceMs: cfg.ingest.gapGraceMs, maxSpanMs: cfg.ingest.maxBackfillMs }),
    rejectionRetention: rejectionRetention({ ledger, writer, log, now, retentionMs: cfg.ingest.rejectionRetentionMs }),
    auctions: auctionJob({ ...marketDeps, everyMs: deps.marketJobEveryMs?.auctions }),
    // After the gap grace, so estimated energy across gaps is booked (or replaced) first.
    deliveries: deliveryJob({ ...marketDeps, graceMs: cfg.ingest.gapGraceMs + 60_000, everyMs: deps.marketJobEveryMs?.deliveries }),
    governance: governanceJob({ ledger, voting, log: log.child({ component: 'governance' }), now, everyMs: deps.marketJobEveryMs?.auctions }),
    // Hours are certified once their readings are in: after the gap grace, like delivery settlement.
    recMinting: recMintingJob({ ledger, minter: recMinter, log: log.child({ component: 'recs' }), now, everyMs: deps.marketJobEveryMs?.deliveries }),
    rewards: rewardsJob({ ledger, payer: rewardPayer, log: log.child({ component: 'rewards' }), now, everyMs: deps.marketJobEveryMs?.deliveries }),
  };
  const pricing = pricingJobs(marketDeps);
  // Rewrites intervals that closed within the gap grace (and a bit), so late readings and gap estimates land too.
  const influxMarketIntervals = influx
    ? marketIntervalJob({ ledger, sink: influx, markets: cfg.markets, log, now, lookbackMs: cfg.ingest.gapGraceMs + 120_000, everyMs: deps.marketJobEveryMs?.deliveries })
    : undefined;
  const seriesJobs = influxMarketIntervals ? [influxMarketIntervals] : [];

  // Embedded: the settlement subscribes inside aedes. External: an mqtt.js client.
  const bus: Bus = broker
    ? new AedesBus(broker.aedes)
    : await ClientBus.connect(
        brokerUrl,
        {
          clientId: cfg.mqtt.clientId,
          clean: true,
          reconnectPeriod: 1000,
          ...(cfg.mqtt.mode === 'external' && cfg.mqtt.username ? { username: cfg.mqtt.username, password: cfg.mqtt.password } : {}),
        },
        (e) => log.warn({ err: e.message }, 'mqtt error'),
        // Returns at once and keeps (re)connecting in the background, also after a refused login.
        { log: log.child({ component: 'mqtt' }) },
      );
  // Several workers on one broker share the readings; each still sees every status.
  const readingsFilter =
    cfg.mqtt.mode === 'external' && cfg.mqtt.sharedGroup ? `$share/${cfg.mqtt.sharedGroup}/${topics.allReadings}` : topics.allReadings;
  const publisher = { publish: (topic: string, payload: string) => bus.publish(topic, payload, { qos: REPLY_QOS }) };
  const handler = new ReadingsHandler({
    verifier,
    committer,
    recorder,
    publisher,
    log,
    now,
    metrics,
    timeseries: tagger,
    limits: { maxEnvelopes: cfg.ingest.maxQueuedEnvelopes, maxBytes: cfg.ingest.maxQueuedBytes },
    // Meter owners for the live `reading` events, cached like the verifier's lookups.
    committed: readingFeed(events, (id) => meterRecords.get(id).then((m) => m?.owner), { now, onError: (e) => log.warn({ err: e }, 'reading event not published: owner lookup failed') }),
  });

  const inflight = new Set<Promise<void>>();
  let intakePeak = 0;
  await bus.subscribe([readingsFilter, topics.allStatus], (topic, payload) => {
    if (parseGatewayTopic(topic)?.kind === 'status') return status.handle(topic, payload);
    const held = handler.accept(topic, payload, (handled) => {
      const p = handled.catch((e: unknown) => {
        // A ledger or broker failure, not bad input: the gateway will resend after its ack timeout.
        log.error({ err: e, topic }, 'ingest failed; envelope left for the gateway to resend');
      });
      inflight.add(p);
      void p.finally(() => inflight.delete(p));
    });
    // The queue only grows here, so its peak is exact.
    if (handler.queuedEnvelopes > intakePeak) intakePeak = handler.queuedEnvelopes;
    return held;
  });
  undo.push(() => bus.close());
  for (const job of [...Object.values(jobs), ...pricing, ...seriesJobs]) job.start();
  undo.push(() => Promise.all([...Object.values(jobs), ...pricing, ...seriesJobs].map((j) => j.stop())));
  // A first price per market now, so the retained signal exists from the start.
  for (const p of pricing) void p.runOnce();
  broker?.admitAll();
  log.info({ broker: brokerUrl, ledger: ledger.engine }, 'settlement ingest running');

  let httpUrl: string | undefined;
  const mosquitto =
    cfg.mqtt.mode === 'external' && cfg.mqtt.mosquittoPasswordFile
      ? new MosquittoPasswordSync({ passwordFile: cfg.mqtt.mosquittoPasswordFile, pidFile: cfg.mqtt.mosquittoPidFile, log })
      : undefined;
  const forget = (gateway: string) => {
    keyCache.forget(gateway);
    meterRecords.clear();
    meterCache.clear();
    tagger?.clear();
  };
  const revoked = (gateway: string) => {
    forget(gateway);
    try {
      mosquitto?.revoked(gateway);
    } catch {
      // Logged by the sync (a reserved name never reaches the password file); the ledger has it revoked.
    }
  };
  const enrollment = new Enrollment(ledger, {
    now,
    mqttUrl: () => (cfg.mqtt.mode === 'embedded' ? brokerUrl : cfg.mqtt.url),
    onEnrolled: (gateway, _meters, secret) => {
      forget(gateway);
      mosquitto?.issued(gateway, secret);
    },
  });
  const api = cfg.http
    ? buildApi({
        ledger,
        metrics,
        log,
        enrollment,
        apiKeys: new ApiKeyStore(ledger.db),
        adminKey: cfg.adminKey,
        codeTtlMs: cfg.enrollmentCodeTtlMs,
        onRevoke: revoked,
        gatewayPresence: (id) => status.presence(id),
        readiness: {
          broker: () => bus.status(),
          writer: () => writer.status(),
          influx: () => influx?.stats() ?? null,
          jobs: () => ({ pricing: pricing.map((p) => p.health()), auctions: jobs.auctions.health(), governance: jobs.governance.health() }),
        },
        market: { market, currencyOf: (m) => cfg.markets.find((x) => x.id === m)?.rules.currency ?? cfg.credits.defaultCurrency },
        governance: { staking, nrg, voting },
        recs: { minter: recMinter, lifecycle: new RecLifecycle(recMinter.recs, market.money, now, log.child({ component: 'recs' })) },
        writeRateLimitPerMinute: cfg.writeRateLimitPerMinute,
        events: { hub: events },
      })
    : undefined;
  if (api && cfg.http) {
    httpUrl = await listenApi(api, cfg.http.host, cfg.http.port);
    log.info({ url: httpUrl }, 'HTTP API listening');
  }

  const idle = async () => {
    while (inflight.size > 0) await Promise.all([...inflight]);
    await committer.flush();
  };

  return {
    brokerUrl,
    brokerTlsUrl: broker?.tlsUrl ?? null,
    httpUrl,
    enrollment,
    async revokeGateway(id: string) {
      const ok = await ledger.setGatewayStatus(id, 'revoked', Date.now());
      if (ok) revoked(id);
      return ok;
    },
    influx,
    influxMarketIntervals,
    metrics,
    ledger,
    stats: handler.stats,
    mqttStatus: () => bus.status(),
    writer,
    intakeQueue: () => ({ ...handler.queue(), peakEnvelopes: intakePeak }),
    jobs,
    pricing,
    market,
    nrg,
    staking,
    voting,
    recs: recMinter,
    recorder,
    events,
    idle,
    async stop() {
      await api?.close();
      await bus.close().catch(() => undefined);
      await idle();
      for (const job of [...Object.values(jobs), ...pricing, ...seriesJobs]) await job.stop();
      await recorder.stop();
      await tagger?.idle();
      await influx?.stop();
      await broker?.close();
      await writer.close();
      await ledger.close();
      log.info('settlement stopped');
    },
  };
}
