import { readFileSync } from 'node:fs';
import { performance } from 'node:perf_hooks';
import { pino, type Logger } from 'pino';
import { MAX_READINGS_PER_ENVELOPE, topics } from '../protocol/index.ts';
import { ClockGuard, type ClockState } from './clock.ts';
import type { GatewayConfig } from './config.ts';
import { brokerSettings } from './enroll.ts';
import { HomeAssistantLink, homeAssistantMarket } from './home-assistant.ts';
import { loadOrCreateKey } from './keys.ts';
import { Outbox, type Sample } from './outbox.ts';
import { BusPoller, type MeterState } from './bus.ts';
import { Publisher } from './publisher.ts';
import { startStatusServer } from './status-server.ts';

export interface GatewayStats {
  polls: number;
  pollErrors: number;
  /** Readings sealed into the outbox. */
  sealed: number;
  acked: number;
  /** Envelopes settlement refused for good (now dead letters). */
  rejected: number;
  /** Retryable refusals: envelopes kept to be sent again after a backoff. */
  deferred: number;
  inFlight: number;
  /** Times an envelope went unacknowledged past the ack timeout (then the window is resent). */
  ackTimeouts: number;
  /** Readings held in memory because the clock is implausible. */
  heldReadings: number;
  /** Readings dropped: held past the cap, or their read time was still implausible. */
  droppedReadings: number;
}

/** A running gateway: poll → decode → stamp (clock check) → seal (sign) into the outbox → publish until acknowledged. */
export interface Gateway {
  id: string;
  publicKeyPem: string;
  /** The broker it publishes to (config, enrollment, or the default). */
  brokerUrl: string;
  /** The local status page, when [gateway] status_listen is set. */
  statusUrl: string | null;
  outboxDepth(): number;
  stats(): GatewayStats;
  clock(): ClockState;
  /** Each meter's last values, errors and schedule, by bus. */
  meters(): MeterState[];
  /** The outbox's size against its cap. */
  outboxFill(): OutboxFill;
  /** Whether the publisher is connected to the broker. */
  connected(): boolean;
  /** Seals whatever samples are waiting, without waiting for the batch to fill. */
  sealNow(): void;
  /**
   * Stops polling, seals what was read, and gives settlement up to `drainMs` to acknowledge
   * the outbox before disconnecting; what is left is sent on the next start.
   */
  stop(opts?: { drainMs?: number }): Promise<void>;
}

export interface GatewayDeps {
  /** Wall clock, ms epoch: what readings are stamped with (default Date.now). */
  now?: () => number;
  /** Monotonic clock, ms (default performance.now): read times while the wall clock is implausible. */
  monoNow?: () => number;
  log?: Logger;
  /** Retry backoff after a retryable refusal (default 10 s doubling to 30 min); tests shorten it. */
  retryFirstMs?: number;
  retryMaxMs?: number;
}

/** The [mqtt] TLS files' contents (read at start: a certificate renewed on disk needs a restart). */
export function tlsFiles(cfg: GatewayConfig): { ca?: Buffer; cert?: Buffer; key?: Buffer } {
  return {
    ...(cfg.mqtt.caFile ? { ca: readFileSync(cfg.mqtt.caFile) } : {}),
    ...(cfg.mqtt.certFile ? { cert: readFileSync(cfg.mqtt.certFile) } : {}),
    ...(cfg.mqtt.keyFile ? { key: readFileSync(cfg.mqtt.keyFile) } : {}),
  };
}

/** Above this share of its cap the outbox warns (log, status, metric). */
export const OUTBOX_NEAR = 0.9;
/** How often the meters' last values and errors are written for `gtx gateway status`. */
const METERS_STATE_EVERY_MS = 10_000;

export interface OutboxFill {
  bytes: number;
  capBytes: number;
  state: 'ok' | 'near' | 'full';
  /** Readings read while the outbox was full, and so not stored. */
  notStored: number;
}

/** While the clock is implausible its state is written to the outbox at most this often (for `gtx gateway status`). */
const CLOCK_STATE_EVERY_MS = 10_000;

export async function startGateway(cfg: GatewayConfig, deps: GatewayDeps = {}): Promise<Gateway> {
  const now = deps.now ?? Date.now;
  const mono = deps.monoNow ?? (() => performance.now());
  const log = (deps.log ?? pino({ name: 'gateway', level: process.env.GTX_LOG_LEVEL ?? 'info' }, pino.destination(2))).child({
    gateway: cfg.id,
  });
  const key = loadOrCreateKey(cfg.keyFile);
  if (key.created) log.info({ keyFile: cfg.keyFile }, 'generated a new gateway key');
  const outbox = new Outbox(cfg.outboxFile);
  // The broker settlement named at enrollment, unless the config names one on purpose.
  const broker = brokerSettings(cfg);
  const publisher = new Publisher(
    {
      tls: tlsFiles(cfg),
      url: broker.url,
      username: broker.username,
      password: broker.password,
      ackTimeoutMs: cfg.mqtt.ackTimeoutMs,
      maxInFlight: cfg.mqtt.maxInFlight,
      gateway: cfg.id,
      retryFirstMs: deps.retryFirstMs,
      retryMaxMs: deps.retryMaxMs,
    },
    outbox,
    log,
  );
  const clock = new ClockGuard({
    log,
    wallNow: now,
    monoNow: mono,
    lastReadingMs: outbox.meterHeads().flatMap((h) => (h.tsMs === null ? [] : [[h.meter, h.tsMs] as const])),
  });
  const batchSize = Math.min(cfg.batchMaxReadings, MAX_READINGS_PER_ENVELOPE);
  // Best effort on the prosumer's own broker: it sees readings and the price, and holds up nothing.
  const haMarket = homeAssistantMarket(cfg);
  const ha = cfg.homeAssistant
    ? new HomeAssistantLink({ config: cfg.homeAssistant, gateway: cfg.id, meters: cfg.meters, defaultIntervalMs: cfg.pollIntervalMs, market: haMarket, log: log.child({ component: 'home-assistant' }) })
    : null;
  if (ha && haMarket) publisher.listen(topics.price(haMarket), (payload) => ha.price(payload));
  else if (ha) log.info('home assistant: no market price shown (not enrolled, or enrolled before the market was saved: set [home_assistant] market)');

  let pending: Sample[] = [];
  let oldestPendingAt = 0;
  let sealed = 0;
  // The outbox's size against its cap, checked every housekeeping tick (a cheap page count).
  const fill: OutboxFill = { bytes: outbox.sizeBytes(), capBytes: cfg.outboxMaxBytes, state: 'ok', notStored: 0 };
  const checkFill = () => {
    fill.bytes = outbox.sizeBytes();
    const state: OutboxFill['state'] = fill.bytes >= fill.capBytes ? 'full' : fill.bytes >= fill.capBytes * OUTBOX_NEAR ? 'near' : 'ok';
    if (state === fill.state) return;
    const f = { outboxBytes: fill.bytes, capBytes: fill.capBytes, depth: outbox.depth() };
    if (state === 'full') log.error(f, 'outbox full: new readings are NOT stored until settlement acknowledges what is waiting (energy is not lost: the meters keep counting)');
    else if (state === 'near') log.warn(f, `outbox above ${OUTBOX_NEAR * 100} % of its cap ([gateway] outbox_max_mib): is settlement reachable?`);
    else log.info(f, 'outbox below its cap again');
    fill.state = state;
    outbox.setState('outbox_fill', fill);
  };

  const add = (samples: Sample[]) => {
    for (const s of samples) {
      // Batch age on the monotonic clock: a wall clock being set must not seal or stall a batch.
      if (pending.length === 0) oldestPendingAt = mono();
      pending.push(s);
    }
  };

  let clockWrittenAt = -Infinity;
  let clockOk: boolean | undefined;
  const persistClock = (force = false) => {
    const st = clock.state();
    const changed = st.ok !== clockOk;
    if (!force && !changed && (st.ok || mono() - clockWrittenAt < CLOCK_STATE_EVERY_MS)) return;
    outbox.setState('clock', st);
    clockWrittenAt = mono();
    clockOk = st.ok;
    publisher.setClock(st.problem);
  };

  const seal = () => {
    if (fill.state === 'full' && pending.length > 0) {
      // Nothing waiting is ever deleted to make room: the newest readings are the ones not kept.
      fill.notStored += pending.length;
      pending = [];
      outbox.setState('outbox_fill', fill);
      return;
    }
    while (pending.length > 0) {
      const chunk = pending.slice(0, batchSize);
      pending = pending.slice(chunk.length);
      const entry = outbox.seal(cfg.id, key.privateKey, chunk);
      if (entry) {
        sealed += entry.readings;
        log.debug({ envelope: entry.id, readings: entry.readings }, 'sealed envelope');
      }
    }
    publisher.notify();
  };

  // One poller per bus; buses run independently, a meter's failure is logged once per outage.
  const pollers = cfg.buses
    .map((bus) => ({ bus, meters: cfg.meters.filter((m) => m.bus === bus.name) }))
    .filter((b) => b.meters.length > 0)
    .map(
      ({ bus, meters }) =>
        new BusPoller(bus, meters, {
          defaultIntervalMs: cfg.pollIntervalMs,
          mono,
          now,
          onReading: (m, values) => {
            add(clock.stamp(m.id, values));
            if (pending.length >= batchSize) seal();
            ha?.reading(m, values, now());
          },
          onFailure: (m, err, first) => {
            if (first) log.warn({ meter: m.id, bus: bus.name, err: err.message }, 'meter read failed');
          },
          onRecovery: (m) => log.info({ meter: m.id, bus: bus.name }, 'meter answers again'),
        }),
    );

  // Clock checks and partly filled batches by time, whatever the meters do.
  let metersWrittenAt = -Infinity;
  const housekeeping = () => {
    // Held readings go out once the clock is sane, even while every meter is silent.
    add(clock.tick());
    persistClock();
    checkFill();
    if (mono() - metersWrittenAt >= METERS_STATE_EVERY_MS) {
      // For `gtx gateway status`, which reads the outbox from another process.
      outbox.setState('meters', { atMs: now(), meters: pollers.flatMap((p) => p.meters()) });
      metersWrittenAt = mono();
    }
    if (pending.length >= batchSize || (pending.length > 0 && mono() - oldestPendingAt >= cfg.batchMaxAgeMs)) seal();
  };

  add(clock.tick());
  persistClock(true);
  await publisher.start();
  ha?.start();
  const timer = setInterval(housekeeping, Math.min(cfg.pollIntervalMs, 1_000));
  for (const p of pollers) p.start();
  const statusPage = cfg.statusListen
    ? await startStatusServer(cfg.statusListen.host, cfg.statusListen.port, () => ({
        gateway: cfg.id,
        broker: { url: broker.url, connected: publisher.connected },
        lastAckMs: outbox.getState<number>('last_ack_ms') ?? null,
        outbox: { envelopes: outbox.depth(), ...fill },
        polls: pollers.reduce((a, p) => a + p.polls, 0),
        pollErrors: pollers.reduce((a, p) => a + p.pollErrors, 0),
        acked: publisher.acked,
        buses: pollers.map((p) => ({ name: p.bus.name, url: p.where })),
        meters: pollers.flatMap((p) => p.meters()),
      }))
    : null;
  if (statusPage) log.info({ url: statusPage.url }, 'status page (read-only)');
  log.info(
    { buses: pollers.map((p) => `${p.bus.name}=${p.where}`), meters: cfg.meters.map((m) => `${m.id}@${m.bus}#${m.unitId}`), broker: broker.url, brokerFrom: broker.source, outbox: outbox.depth(), homeAssistant: ha?.url },
    'gateway running',
  );

  return {
    id: cfg.id,
    publicKeyPem: key.publicKeyPem,
    brokerUrl: broker.url,
    statusUrl: statusPage?.url ?? null,
    outboxDepth: () => outbox.depth(),
    stats: () => ({
      polls: pollers.reduce((a, p) => a + p.polls, 0),
      pollErrors: pollers.reduce((a, p) => a + p.pollErrors, 0),
      sealed,
      acked: publisher.acked,
      rejected: publisher.rejected,
      deferred: publisher.deferred,
      inFlight: publisher.inFlightCount(),
      ackTimeouts: publisher.ackTimeouts,
      heldReadings: clock.state().held,
      droppedReadings: clock.dropped,
    }),
    clock: () => clock.state(),
    meters: () => pollers.flatMap((p) => p.meters()),
    outboxFill: () => ({ ...fill }),
    connected: () => publisher.connected,
    sealNow: seal,
    async stop({ drainMs = 0 } = {}) {
      clearInterval(timer);
      await statusPage?.close();
      await Promise.all(pollers.map((p) => p.stop()));
      await ha?.stop();
      add(clock.tick());
      seal(); // what was read is kept, not dropped
      const held = clock.state().held;
      if (held > 0) log.warn({ held, clockMs: now() }, 'stopping with the clock still implausible: held readings are lost');
      persistClock(true);
      const until = Date.now() + drainMs;
      while (outbox.depth() > 0 && Date.now() < until) await new Promise((r) => setTimeout(r, 50));
      await publisher.stop();
      outbox.close();
      log.info('gateway stopped');
    },
  };
}
