import { Agent as HttpAgent } from 'node:http';
import { Agent as HttpsAgent } from 'node:https';
import { FieldType, InfluxDB, type IPoint, type ISchemaOptions } from 'influx';
import type { Logger } from 'pino';
import { isValidId } from '../../protocol/index.ts';

/**
 * Writes the verified time series to InfluxDB 1.x for utilities and Grafana (docs/influxdb.md).
 *
 * The ledger is the source of truth; this is a copy for dashboards, so it must never slow the
 * ledger down or fail it. The record methods only append to an in-memory backlog; a single
 * writer sends the backlog in order, in batches, and keeps whatever InfluxDB did not take for
 * the next attempt. The backlog is bounded: past the bound the oldest points are dropped and
 * counted.
 */

export interface InfluxSinkOptions {
  /** Base URL of the 1.x HTTP API, e.g. http://127.0.0.1:8086 (user:password@ for auth). */
  url: string;
  database: string;
  /** How often buffered points are written (ms). Default 1000. */
  flushIntervalMs?: number;
  /** Points per write request; reaching it triggers a write without waiting for the interval. Default 5000. */
  maxBatchPoints?: number;
  /** Points kept while InfluxDB is unreachable; past it the oldest are dropped. Default 1 000 000. */
  maxBacklogPoints?: number;
  /** Upper bound on stop(): the final flush is abandoned after this long (ms). Default 2000. */
  stopTimeoutMs?: number;
  /** Timeout of one HTTP request to InfluxDB (ms). Default 10 000. */
  requestTimeoutMs?: number;
  log: Logger;
  /** Clock for the outage durations in the logs. */
  now?: () => number;
}

/** One verified reading, with the metadata that becomes tags. Energy in Wh, power in W, the rest in milli units. */
export interface SinkReading {
  meter: string;
  gateway: string;
  market?: string;
  model?: string;
  role?: string;
  tsMs: number;
  importWh: number;
  exportWh: number;
  powerW: number;
  voltageMilliV?: number;
  currentMilliA?: number;
  frequencyMilliHz?: number;
}

export interface SinkRejection {
  tsMs: number;
  gateway: string | null;
  reason: string;
  bytes: number;
}

export interface SinkMarketInterval {
  market: string;
  intervalStartMs: number;
  supplyWh: number;
  demandWh: number;
}

/** A published price signal (measurement `market_price`). Prices are integer minor units per kWh (400 = 4.00 THB/kWh). */
export interface SinkPrice {
  market: string;
  currency: string;
  computedAtMs: number;
  priceMinorPerKwh: bigint;
  /** Supply/demand ratio the price came from. */
  ratio: number;
}

/** One auction's outcome (measurement `auctions`), stamped with its delivery interval's start. */
export interface SinkAuction {
  market: string;
  currency: string;
  auctionId: string;
  deliveryStartMs: number;
  /** null: the books did not cross, nothing traded. */
  clearingPriceMinorPerKwh: bigint | null;
  volumeWh: number;
  trades: number;
  orders: number;
}

/** One issued certificate (measurement `certificates`). */
export interface SinkCertificate {
  market: string;
  source: string;
  certificate: string;
  meter: string;
  issuedAtMs: number;
  volumeWh: number;
}

export interface InfluxSinkStats {
  /** Points waiting to be written (including a batch in flight). */
  backlog: number;
  /** Points InfluxDB acknowledged. */
  written: number;
  /** Successful write requests (each carries up to maxBatchPoints points). */
  batchesWritten: number;
  /** Write requests (or database creations) that failed. */
  failedWrites: number;
  /** Points given up: the oldest beyond maxBacklogPoints, and points InfluxDB refused as malformed. */
  dropped: number;
  lastError?: string;
}

/** Rejections carry a gateway id taken from the MQTT topic, i.e. chosen by whoever publishes: bound its cardinality. */
const MAX_REJECTION_GATEWAY_TAGS = 1_000;
const OTHER_GATEWAY = '_other';
const INVALID_GATEWAY = '_invalid';

const SCHEMA: ISchemaOptions[] = [
  {
    measurement: 'readings',
    tags: ['meter', 'gateway', 'market', 'model', 'role'],
    fields: {
      import_wh: FieldType.INTEGER,
      export_wh: FieldType.INTEGER,
      power_w: FieldType.FLOAT,
      voltage_v: FieldType.FLOAT,
      current_a: FieldType.FLOAT,
      frequency_hz: FieldType.FLOAT,
    },
  },
  { measurement: 'rejections', tags: ['reason', 'gateway'], fields: { count: FieldType.INTEGER, bytes: FieldType.INTEGER } },
  { measurement: 'market_interval', tags: ['market'], fields: { supply_wh: FieldType.INTEGER, demand_wh: FieldType.INTEGER } },
  { measurement: 'market_price', tags: ['market', 'currency'], fields: { price_minor_per_kwh: FieldType.INTEGER, ratio: FieldType.FLOAT } },
  {
    measurement: 'auctions',
    tags: ['market', 'currency', 'crossed'],
    fields: {
      clearing_price_minor_per_kwh: FieldType.INTEGER,
      volume_wh: FieldType.INTEGER,
      trades: FieldType.INTEGER,
      orders: FieldType.INTEGER,
      auction_id: FieldType.STRING,
    },
  },
  {
    measurement: 'certificates',
    tags: ['market', 'source'],
    fields: { volume_wh: FieldType.INTEGER, count: FieldType.INTEGER, certificate: FieldType.STRING, meter: FieldType.STRING },
  },
];

/**
 * Tag values that come from the ledger (market ids, currencies, energy sources) are bounded by
 * its registry; this bounds them anyway so one bad row cannot blow up series or line length.
 */
const MAX_TAG_CHARS = 128;

/** Nanosecond timestamp string for a ms instant plus a sub-millisecond offset (line protocol, precision n). */
function nanos(ms: number, offsetNs = 0): string {
  if (offsetNs === 0) return ms === 0 ? '0' : `${ms}000000`;
  return (BigInt(ms) * 1_000_000n + BigInt(offsetNs)).toString();
}

/** The influx package escapes ',', '=' and ' ' in tag values but not newlines or backslashes. */
const UNSAFE_TAG = /[\\\n\r\t]/g;
function tagValue(s: string): string {
  const short = s.length > MAX_TAG_CHARS ? s.slice(0, MAX_TAG_CHARS) : s;
  return UNSAFE_TAG.test(short) ? short.replace(UNSAFE_TAG, '_') : short;
}

/**
 * A bigint price as an InfluxDB integer field. Prices are far inside ±2^53 in practice; one
 * outside (a corrupt row) is left out rather than written rounded.
 */
function safeInteger(v: bigint): number | undefined {
  const n = Number(v);
  return Number.isSafeInteger(n) ? n : undefined;
}

/**
 * How many points of a batch InfluxDB answered 400 to were not stored. A 1.x "partial write"
 * stores the valid lines and reports `dropped=N` for type conflicts; lines it could not parse
 * are named ("unable to parse '…'") but not counted in N. Anything else: the whole batch.
 */
function lostInRefusedBatch(message: string, batchSize: number): number {
  const dropped = /dropped=(\d+)/.exec(message);
  const unparsable = message.match(/unable to parse '/g)?.length ?? 0;
  if (!dropped && unparsable === 0) return batchSize;
  return Math.min(batchSize, Number(dropped?.[1] ?? 0) + unparsable);
}

function errorMessage(e: unknown): string {
  return e instanceof Error ? e.message || e.name : String(e);
}

/** HTTP status of an error thrown by the influx package's pool, if it was an HTTP answer. */
function httpStatus(e: unknown): number | undefined {
  const res = (e as { res?: { statusCode?: number } } | null)?.res;
  return typeof res?.statusCode === 'number' ? res.statusCode : undefined;
}

/**
 * What the backlog holds: a compact, fixed-shape copy of what was recorded (about a third of
 * the memory of a ready IPoint with its tag and field objects); turned into the influx
 * package's IPoint only when its batch is written.
 */
interface Queued {
  toPoint(): IPoint;
}

class QueuedReading implements Queued {
  readonly meter: string;
  readonly gateway: string;
  readonly market: string | undefined;
  readonly model: string | undefined;
  readonly role: string | undefined;
  readonly tsMs: number;
  readonly importWh: number;
  readonly exportWh: number;
  readonly powerW: number;
  readonly voltageMilliV: number | undefined;
  readonly currentMilliA: number | undefined;
  readonly frequencyMilliHz: number | undefined;

  constructor(r: SinkReading) {
    this.meter = r.meter;
    this.gateway = r.gateway;
    this.market = r.market;
    this.model = r.model;
    this.role = r.role;
    this.tsMs = r.tsMs;
    this.importWh = r.importWh;
    this.exportWh = r.exportWh;
    this.powerW = r.powerW;
    this.voltageMilliV = r.voltageMilliV;
    this.currentMilliA = r.currentMilliA;
    this.frequencyMilliHz = r.frequencyMilliHz;
  }

  toPoint(): IPoint {
    const tags: Record<string, string> = { meter: tagValue(this.meter), gateway: tagValue(this.gateway) };
    if (this.market) tags.market = tagValue(this.market);
    if (this.model) tags.model = tagValue(this.model);
    if (this.role) tags.role = tagValue(this.role);
    // A non-finite value would make InfluxDB refuse the line; leave such a field out instead.
    const fields: Record<string, number> = {};
    if (Number.isFinite(this.importWh)) fields.import_wh = this.importWh;
    if (Number.isFinite(this.exportWh)) fields.export_wh = this.exportWh;
    if (Number.isFinite(this.powerW)) fields.power_w = this.powerW;
    if (Number.isFinite(this.voltageMilliV)) fields.voltage_v = this.voltageMilliV! / 1000;
    if (Number.isFinite(this.currentMilliA)) fields.current_a = this.currentMilliA! / 1000;
    if (Number.isFinite(this.frequencyMilliHz)) fields.frequency_hz = this.frequencyMilliHz! / 1000;
    return { measurement: 'readings', tags, fields, timestamp: nanos(this.tsMs) };
  }
}

class QueuedRejection implements Queued {
  constructor(
    readonly tsMs: number,
    /** Sub-millisecond offset (ns) that keeps rejections in the same ms distinct points. */
    readonly offsetNs: number,
    readonly reason: string,
    readonly gateway: string | undefined,
    readonly bytes: number,
  ) {}

  toPoint(): IPoint {
    const tags: Record<string, string> = { reason: tagValue(this.reason) };
    if (this.gateway !== undefined) tags.gateway = this.gateway;
    return { measurement: 'rejections', tags, fields: { count: 1, bytes: this.bytes }, timestamp: nanos(this.tsMs, this.offsetNs) };
  }
}

class QueuedMarketInterval implements Queued {
  constructor(
    readonly market: string,
    readonly intervalStartMs: number,
    readonly supplyWh: number,
    readonly demandWh: number,
  ) {}

  toPoint(): IPoint {
    return {
      measurement: 'market_interval',
      tags: { market: tagValue(this.market) },
      fields: { supply_wh: this.supplyWh, demand_wh: this.demandWh },
      timestamp: nanos(this.intervalStartMs),
    };
  }
}

class QueuedPrice implements Queued {
  constructor(
    readonly market: string,
    readonly currency: string,
    readonly tsMs: number,
    readonly price: number | undefined,
    readonly ratio: number,
  ) {}

  toPoint(): IPoint {
    const fields: Record<string, number> = {};
    if (this.price !== undefined) fields.price_minor_per_kwh = this.price;
    if (Number.isFinite(this.ratio)) fields.ratio = this.ratio;
    return { measurement: 'market_price', tags: { market: tagValue(this.market), currency: tagValue(this.currency) }, fields, timestamp: nanos(this.tsMs) };
  }
}

class QueuedAuction implements Queued {
  constructor(
    readonly a: SinkAuction,
    readonly price: number | undefined,
  ) {}

  toPoint(): IPoint {
    const a = this.a;
    const fields: Record<string, number | string> = { volume_wh: a.volumeWh, trades: a.trades, orders: a.orders, auction_id: a.auctionId };
    if (this.price !== undefined) fields.clearing_price_minor_per_kwh = this.price;
    return {
      measurement: 'auctions',
      tags: { market: tagValue(a.market), currency: tagValue(a.currency), crossed: String(a.clearingPriceMinorPerKwh !== null) },
      fields,
      timestamp: nanos(a.deliveryStartMs),
    };
  }
}

class QueuedCertificate implements Queued {
  constructor(
    readonly c: SinkCertificate,
    readonly offsetNs: number,
  ) {}

  toPoint(): IPoint {
    const c = this.c;
    return {
      measurement: 'certificates',
      tags: { market: tagValue(c.market), source: tagValue(c.source) },
      fields: { volume_wh: c.volumeWh, count: 1, certificate: c.certificate, meter: c.meter },
      timestamp: nanos(c.issuedAtMs, this.offsetNs),
    };
  }
}

/** A FIFO with O(1) push and drop (an array with a moving head, compacted now and then). */
class PointQueue {
  private items: Queued[] = [];
  private head = 0;

  get length(): number {
    return this.items.length - this.head;
  }
  push(p: Queued): void {
    this.items.push(p);
  }
  /** The first n points, left in place. */
  peekFront(n: number): Queued[] {
    return this.items.slice(this.head, this.head + Math.min(n, this.length));
  }
  /** Removes up to n points from the front; returns how many. */
  dropFront(n: number): number {
    const k = Math.max(0, Math.min(n, this.length));
    this.head += k;
    if (this.head >= 4096 && this.head * 2 >= this.items.length) {
      this.items = this.items.slice(this.head);
      this.head = 0;
    }
    return k;
  }
}

export class InfluxSink {
  private readonly influx: InfluxDB;
  private readonly agent: HttpAgent;
  private readonly database: string;
  private readonly flushIntervalMs: number;
  private readonly maxBatchPoints: number;
  private readonly maxBacklogPoints: number;
  private readonly stopTimeoutMs: number;
  private readonly log: Logger;
  private readonly now: () => number;
  private readonly redactedUrl: string;

  private readonly queue = new PointQueue();
  /** Points of the batch being written that are still at the front of the queue. */
  private inflightLeft = 0;
  /** Points of that batch that the backlog bound dropped meanwhile: lost only if the write fails. */
  private inflightDropped = 0;
  private writing: Promise<void> | undefined;
  /** The running drain should write a partial last batch too (a timer tick or flush() came meanwhile). */
  private wantAll = false;
  private timer: NodeJS.Timeout | undefined;
  private kick: NodeJS.Immediate | undefined;
  private started = false;
  private stopped = false;
  /** Set when stop() has given up on the final flush: no further batch is sent. */
  private closed = false;
  private databaseReady = false;
  /** Set while writes fail; cleared (and logged) by the first success. */
  private outage: { sinceMs: number } | undefined;
  /** Dropping is warned about once, until the backlog has been written out again. */
  private dropWarned = false;

  private readonly rejectionGateways = new Set<string>();
  /** Sub-millisecond sequence per instant, so that rejections (and certificates) in the same ms stay distinct points. */
  private readonly instantSeq = new Map<number, number>();

  private readonly counters = { written: 0, batchesWritten: 0, failedWrites: 0, dropped: 0, lastError: undefined as string | undefined };

  constructor(opts: InfluxSinkOptions) {
    const url = new URL(opts.url);
    this.database = opts.database;
    this.flushIntervalMs = Math.max(10, opts.flushIntervalMs ?? 1_000);
    this.maxBacklogPoints = Math.max(1, opts.maxBacklogPoints ?? 1_000_000);
    this.maxBatchPoints = Math.max(1, Math.min(opts.maxBatchPoints ?? 5_000, this.maxBacklogPoints));
    this.stopTimeoutMs = opts.stopTimeoutMs ?? 2_000;
    this.log = opts.log;
    this.now = opts.now ?? Date.now;
    this.redactedUrl = `${url.protocol}//${url.host}${url.pathname === '/' ? '' : url.pathname}`;

    const https = url.protocol === 'https:';
    // Our own agent: keep-alive between batches, and stop() can cut a request that hangs.
    this.agent = https ? new HttpsAgent({ keepAlive: true, maxSockets: 2 }) : new HttpAgent({ keepAlive: true, maxSockets: 2 });
    const requestTimeout = opts.requestTimeoutMs ?? 10_000;
    this.influx = new InfluxDB({
      host: url.hostname,
      port: url.port ? Number(url.port) : https ? 443 : 8086,
      protocol: https ? 'https' : 'http',
      path: url.pathname === '/' ? '' : url.pathname,
      database: opts.database,
      ...(url.username ? { username: decodeURIComponent(url.username), password: decodeURIComponent(url.password) } : {}),
      options: { agent: this.agent, timeout: requestTimeout },
      schema: SCHEMA.map((s) => ({ ...s, database: opts.database })),
      pool: {
        // The package's pool takes a failing host out of rotation for up to 10 s and retries
        // twice by itself; the sink has its own retry (every flush interval), so neither.
        backoff: { getDelay: () => 0, next() { return this; }, reset() { return this; } },
        maxRetries: 0,
        requestTimeout,
      },
    });
  }

  /** Starts the flush timer and makes sure the database exists (retried on each flush while InfluxDB is down). */
  async start(): Promise<void> {
    if (this.started || this.stopped) return;
    this.started = true;
    this.timer = setInterval(() => void this.drainOnce(true), this.flushIntervalMs);
    this.timer.unref();
    this.log.info({ url: this.redactedUrl, database: this.database }, 'influx sink started');
    // Creates the database now if InfluxDB is there, but never holds up the caller for long.
    let timeout: NodeJS.Timeout | undefined;
    await Promise.race([this.flush(), new Promise<void>((resolve) => (timeout = setTimeout(resolve, this.stopTimeoutMs)))]);
    clearTimeout(timeout);
  }

  /** Records verified readings (measurement `readings`). Synchronous: only appends to the backlog. */
  readingsVerified(readings: readonly SinkReading[]): void {
    if (this.stopped) return;
    for (const r of readings) this.queue.push(new QueuedReading(r));
    this.afterEnqueue();
  }

  /**
   * Records one refused envelope (measurement `rejections`, count=1). Each rejection is its own
   * point: InfluxDB keeps one point per series and timestamp, so rejections of the same reason
   * and gateway within one millisecond get distinct nanosecond offsets instead of overwriting.
   */
  rejection(r: SinkRejection): void {
    if (this.stopped) return;
    const gateway = r.gateway !== null && r.gateway !== '' ? this.rejectionGatewayTag(r.gateway) : undefined;
    this.queue.push(new QueuedRejection(r.tsMs, this.nextInstantSeq(r.tsMs), r.reason, gateway, r.bytes));
    this.afterEnqueue();
  }

  /** Records the metered supply and demand of one market interval (measurement `market_interval`); a rewrite replaces it. */
  marketInterval(m: SinkMarketInterval): void {
    if (this.stopped) return;
    this.queue.push(new QueuedMarketInterval(m.market, m.intervalStartMs, m.supplyWh, m.demandWh));
    this.afterEnqueue();
  }

  /** Records a price signal (measurement `market_price`), at the instant it was computed. */
  price(p: SinkPrice): void {
    if (this.stopped) return;
    // A point needs a field: a signal with neither a writable price nor a ratio is not written.
    if (safeInteger(p.priceMinorPerKwh) === undefined && !Number.isFinite(p.ratio)) return;
    this.queue.push(new QueuedPrice(p.market, p.currency, p.computedAtMs, safeInteger(p.priceMinorPerKwh), p.ratio));
    this.afterEnqueue();
  }

  /**
   * Records an auction's outcome (measurement `auctions`) at its delivery start: one auction per
   * market and delivery interval, so a rewrite is the same point.
   */
  auction(a: SinkAuction): void {
    if (this.stopped) return;
    this.queue.push(new QueuedAuction({ ...a }, a.clearingPriceMinorPerKwh === null ? undefined : safeInteger(a.clearingPriceMinorPerKwh)));
    this.afterEnqueue();
  }

  /**
   * Records an issued certificate (measurement `certificates`, count=1). Several are issued in
   * one minting run at the same instant: like rejections, they get distinct sub-ms offsets.
   */
  certificate(c: SinkCertificate): void {
    if (this.stopped) return;
    this.queue.push(new QueuedCertificate({ ...c }, this.nextInstantSeq(c.issuedAtMs)));
    this.afterEnqueue();
  }

  stats(): InfluxSinkStats {
    const { lastError, ...c } = this.counters;
    return { backlog: this.queue.length, ...c, ...(lastError !== undefined ? { lastError } : {}) };
  }

  /**
   * Writes everything pending, in batches, in order; resolves when it is written or a write
   * failed (the rest then waits for the next attempt). Never rejects.
   */
  async flush(): Promise<void> {
    if (this.closed) return;
    this.wantAll = true;
    if (this.writing) {
      while (this.writing) await this.writing;
      // That run ended on a failed write: it was this flush's attempt.
      if (this.outage) return;
    }
    if (!this.closed && (this.queue.length > 0 || !this.databaseReady)) await this.drainOnce(true);
  }

  /** A final flush bounded by stopTimeoutMs, then closes the connections. Never throws, never hangs. */
  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    if (this.timer) clearInterval(this.timer);
    if (this.kick) clearImmediate(this.kick);
    this.timer = undefined;
    this.kick = undefined;
    let timeout: NodeJS.Timeout | undefined;
    const timedOut = new Promise<'timeout'>((resolve) => {
      timeout = setTimeout(() => resolve('timeout'), this.stopTimeoutMs);
    });
    const finalFlush = (async () => {
      if (this.started || this.queue.length > 0) await this.flush();
    })();
    const outcome = await Promise.race([finalFlush.then(() => 'done' as const), timedOut]);
    clearTimeout(timeout);
    // Cuts a request that is still hanging; its promise then fails and the drain loop ends.
    this.closed = true;
    this.agent.destroy();
    const left = this.queue.length;
    if (left > 0) {
      this.log.warn(
        { backlog: left, reason: outcome === 'timeout' ? `final flush did not finish within ${this.stopTimeoutMs} ms` : this.counters.lastError },
        'influx sink stopped with unwritten points; they are lost from the time series (the ledger still has the readings)',
      );
    } else {
      this.log.info({ written: this.counters.written }, 'influx sink stopped');
    }
  }

  private afterEnqueue(): void {
    const over = this.queue.length - this.maxBacklogPoints;
    if (over > 0) this.dropOldest(over);
    // A full batch goes out without waiting for the timer, unless InfluxDB is down (then the timer retries).
    if (this.started && !this.stopped && this.queue.length >= this.maxBatchPoints && !this.writing && !this.outage && !this.kick) {
      // Never start I/O inside a record call: the caller is the ingest path.
      this.kick = setImmediate(() => {
        this.kick = undefined;
        void this.drainOnce(false);
      });
    }
  }

  /**
   * One writer at a time. `all`: write a partial last batch too (timer, flush); otherwise only
   * full batches (a full batch triggered it), and the interval takes the rest.
   */
  private drainOnce(all: boolean): Promise<void> {
    if (all) this.wantAll = true;
    if (!this.writing) {
      this.writing = this.drain().finally(() => {
        this.writing = undefined;
        this.wantAll = false;
      });
    }
    return this.writing;
  }

  private dropOldest(n: number): void {
    const k = this.queue.dropFront(n);
    if (k === 0) return;
    const ofInflight = Math.min(k, this.inflightLeft);
    this.inflightLeft -= ofInflight;
    this.inflightDropped += ofInflight;
    this.counters.dropped += k - ofInflight;
    if (!this.dropWarned) {
      this.dropWarned = true;
      this.log.warn(
        { maxBacklogPoints: this.maxBacklogPoints, lastError: this.counters.lastError },
        this.outage
          ? 'influx backlog full: dropping the oldest points until InfluxDB accepts writes again'
          : 'influx backlog full: InfluxDB is not keeping up, dropping the oldest points',
      );
    }
  }

  private async drain(): Promise<void> {
    if (this.closed) return;
    if (!this.databaseReady && !(await this.ensureDatabase())) return;
    while (!this.closed && this.queue.length >= (this.wantAll ? 1 : this.maxBatchPoints)) {
      // The batch stays at the front of the queue until InfluxDB has acknowledged it.
      const batch = this.queue.peekFront(this.maxBatchPoints);
      this.inflightLeft = batch.length;
      this.inflightDropped = 0;
      try {
        await this.influx.writePoints(batch.map((q) => q.toPoint()), { precision: 'n' });
        this.queue.dropFront(this.inflightLeft);
        this.counters.written += batch.length;
        this.counters.batchesWritten++;
        this.recovered();
        if (this.queue.length === 0) this.dropWarned = false;
      } catch (e) {
        const status = httpStatus(e);
        if (status === 400) {
          // InfluxDB refused the content (a field type conflict, a malformed line): sending it
          // again would fail forever and hold up everything behind it. It wrote what it could.
          this.queue.dropFront(this.inflightLeft);
          const lost = lostInRefusedBatch(errorMessage(e), batch.length);
          this.counters.failedWrites++;
          this.counters.dropped += lost;
          this.counters.written += batch.length - lost;
          this.counters.lastError = errorMessage(e);
          this.log.error({ err: errorMessage(e), points: batch.length, dropped: lost }, 'InfluxDB refused a batch as invalid; not retrying it');
          continue;
        }
        // Down, timing out, overloaded, unauthorized, or the database vanished: the batch stays
        // at the front and goes again on the next flush.
        this.counters.dropped += this.inflightDropped;
        if (status === 404) this.databaseReady = false;
        this.failed(e);
        return;
      } finally {
        this.inflightLeft = 0;
        this.inflightDropped = 0;
      }
    }
  }

  private async ensureDatabase(): Promise<boolean> {
    try {
      const names = await this.influx.getDatabaseNames();
      if (!names.includes(this.database)) {
        await this.influx.createDatabase(this.database);
        this.log.info({ database: this.database }, 'created InfluxDB database');
      }
      this.databaseReady = true;
      return true;
    } catch (e) {
      const status = httpStatus(e);
      if (status === 401 || status === 403) {
        // A user without admin rights can write to an existing database but not list or
        // create them: go on and let the writes tell.
        this.log.warn({ err: errorMessage(e), database: this.database }, 'cannot check or create the InfluxDB database; assuming it exists');
        this.databaseReady = true;
        return true;
      }
      this.failed(e);
      return false;
    }
  }

  private failed(e: unknown): void {
    this.counters.failedWrites++;
    this.counters.lastError = errorMessage(e);
    if (!this.outage && !this.closed) {
      this.outage = { sinceMs: this.now() };
      this.log.warn(
        { url: this.redactedUrl, err: this.counters.lastError, backlog: this.queue.length },
        'InfluxDB write failed; keeping points in memory and retrying',
      );
    }
  }

  private recovered(): void {
    if (!this.outage) return;
    this.log.info(
      { url: this.redactedUrl, downForMs: this.now() - this.outage.sinceMs, backlog: this.queue.length, dropped: this.counters.dropped },
      'InfluxDB writes resumed',
    );
    this.outage = undefined;
  }

  private rejectionGatewayTag(gateway: string): string {
    if (!isValidId(gateway)) return INVALID_GATEWAY;
    if (this.rejectionGateways.has(gateway)) return gateway;
    if (this.rejectionGateways.size >= MAX_REJECTION_GATEWAY_TAGS) return OTHER_GATEWAY;
    this.rejectionGateways.add(gateway);
    return gateway;
  }

  private nextInstantSeq(tsMs: number): number {
    const n = Math.min(this.instantSeq.get(tsMs) ?? 0, 999_999);
    this.instantSeq.set(tsMs, n + 1);
    if (this.instantSeq.size > 1_000) {
      // Forget the oldest instants (insertion order); rejections arrive stamped with "now".
      for (const k of this.instantSeq.keys()) {
        this.instantSeq.delete(k);
        if (this.instantSeq.size <= 500) break;
      }
    }
    return n;
  }
}
