import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

/**
 * The settlement's Prometheus metrics, one registry per settlement instance (tests and the
 * demo run several in one process). Served at GET /metrics.
 */
export interface MetricSources {
  /** Gateways currently online. */
  connectedGateways?: () => number;
  /** Points waiting for InfluxDB. */
  influxBacklog?: () => number;
  /** Envelopes between receipt and commit outcome (intake pushes back past its limit). */
  intakeQueuedEnvelopes?: () => number;
  /** Rejection payload samples not kept because of the sample rate limits, since start. */
  rejectionSamplesDropped?: () => number;
  /** Times the ledger writer thread was replaced, since start. */
  writerRestarts?: () => number;
}

export function createMetrics(opts: { defaultMetrics?: boolean; sources?: MetricSources } = {}) {
  const sources = opts.sources ?? {};
  const registry = new Registry();
  if (opts.defaultMetrics) collectDefaultMetrics({ register: registry, prefix: 'gtx_' });
  const readingsVerified = new Counter({
    name: 'gtx_readings_verified_total',
    help: 'Readings verified and committed to the ledger',
    registers: [registry],
  });
  const envelopesRejected = new Counter({
    name: 'gtx_envelopes_rejected_total',
    help: 'Envelopes refused, by reason (duplicate = a resend that was already stored)',
    labelNames: ['reason'] as const,
    registers: [registry],
  });
  const ingestLatency = new Histogram({
    name: 'gtx_ingest_latency_seconds',
    help: 'From receipt of an envelope to its ack or rejection being published',
    buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
    registers: [registry],
  });
  const dbBatchSize = new Histogram({
    name: 'gtx_ledger_batch_envelopes',
    help: 'Envelopes committed per ledger transaction',
    buckets: [1, 2, 4, 8, 16, 32, 64, 128, 256, 512],
    registers: [registry],
  });
  const dbCommitSeconds = new Histogram({
    name: 'gtx_ledger_commit_seconds',
    help: 'Duration of ledger transactions committing envelopes',
    buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
    registers: [registry],
  });
  const influxBacklog = new Gauge({
    name: 'gtx_influx_backlog_points',
    help: 'Points waiting to be written to InfluxDB',
    registers: [registry],
    collect() {
      if (sources.influxBacklog) this.set(sources.influxBacklog());
    },
  });
  const connectedGateways = new Gauge({
    name: 'gtx_gateways_connected',
    help: 'Gateways whose retained status is online',
    registers: [registry],
    collect() {
      if (sources.connectedGateways) this.set(sources.connectedGateways());
    },
  });
  const intakeQueued = new Gauge({
    name: 'gtx_intake_queued_envelopes',
    help: 'Envelopes received and awaiting their commit outcome; past [ingest] max_queued_envelopes the broker stops reading their senders',
    registers: [registry],
    collect() {
      if (sources.intakeQueuedEnvelopes) this.set(sources.intakeQueuedEnvelopes());
    },
  });
  // Totals kept by their owners: a Counter set from the source at each scrape.
  const rejectionSamplesDropped = new Counter({
    name: 'gtx_rejection_samples_dropped_total',
    help: 'Refusals counted without keeping their payload (sample rate limits, [ingest] rejection_samples_per_minute)',
    registers: [registry],
    collect() {
      if (sources.rejectionSamplesDropped) {
        this.reset();
        this.inc(sources.rejectionSamplesDropped());
      }
    },
  });
  const writerRestarts = new Counter({
    name: 'gtx_ledger_writer_restarts_total',
    help: 'Times the ledger writer thread died or stalled and was replaced',
    registers: [registry],
    collect() {
      if (sources.writerRestarts) {
        this.reset();
        this.inc(sources.writerRestarts());
      }
    },
  });
  const marketOrders = new Counter({
    name: 'gtx_market_orders_total',
    help: 'Orders decided, by market and result (accepted, or the refusal code: insufficient_credits, price_out_of_band …)',
    labelNames: ['market', 'result'] as const,
    registers: [registry],
  });
  const marketAuctions = new Counter({
    name: 'gtx_market_auctions_total',
    help: 'Auctions run, by market and whether bids and asks crossed',
    labelNames: ['market', 'crossed'] as const,
    registers: [registry],
  });
  const marketTradedWh = new Counter({
    name: 'gtx_market_traded_wh_total',
    help: 'Energy matched in auctions, Wh',
    labelNames: ['market'] as const,
    registers: [registry],
  });
  const marketTradesSettled = new Counter({
    name: 'gtx_market_trades_settled_total',
    help: 'Trades settled against metered energy',
    registers: [registry],
  });
  const marketPrice = new Gauge({
    name: 'gtx_market_price_minor_per_kwh',
    help: 'The latest indicative price, minor currency units (satang, cents) per kWh',
    labelNames: ['market', 'currency'] as const,
    registers: [registry],
  });
  const recsMinted = new Counter({
    name: 'gtx_recs_minted_total',
    help: 'Renewable Energy Certificates minted from verified exact export, by market and energy source',
    labelNames: ['market', 'source'] as const,
    registers: [registry],
  });
  const recsCertifiedWh = new Counter({
    name: 'gtx_recs_certified_wh_total',
    help: 'Energy certified by minted certificates, Wh',
    labelNames: ['market', 'source'] as const,
    registers: [registry],
  });
  const rewardsPaid = new Counter({
    name: 'gtx_rewards_paid_total',
    help: 'Conservation reward payments made from the incentive pool, by market',
    labelNames: ['market'] as const,
    registers: [registry],
  });
  const proposalsDecided = new Counter({
    name: 'gtx_governance_proposals_total',
    help: 'Proposals decided or executed, by outcome (passed, rejected, executed)',
    labelNames: ['outcome'] as const,
    registers: [registry],
  });
  return {
    registry,
    recsMinted,
    recsCertifiedWh,
    rewardsPaid,
    proposalsDecided,
    marketOrders,
    marketAuctions,
    marketTradedWh,
    marketTradesSettled,
    marketPrice,
    readingsVerified,
    envelopesRejected,
    ingestLatency,
    dbBatchSize,
    dbCommitSeconds,
    influxBacklog,
    connectedGateways,
    intakeQueued,
    rejectionSamplesDropped,
    writerRestarts,
  };
}

export type SettlementMetrics = ReturnType<typeof createMetrics>;
