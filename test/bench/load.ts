/**
 * The load generator: a child process of run.ts, so that it runs on the other core and the
 * settlement's core does nothing but ingest. It plays K gateways, each with its own MQTT
 * connection, pre-signs every envelope of a phase before the clock starts, then publishes
 * them (QoS 1, like gateway/publisher.ts) and counts an envelope done only at the
 * settlement's ack for its id — the end-to-end acknowledgement, after the ledger commit.
 */
import mqtt, { type MqttClient } from 'mqtt';
import { performance } from 'node:perf_hooks';
import { encodeEnvelope, envelopeIdOf, signedBytes, topics, type Reading } from '../../protocol/index.ts';
import { EnvelopeFactory } from '../support/envelopes.ts';
import { summarise } from './stats.ts';
import type { FromLoad, LoadInit, PhaseResult, PhaseSpec, ToLoad } from './messages.ts';

interface Prepared {
  id: string;
  payload: Buffer;
  readings: number;
}

interface Meter {
  id: string;
  tsMs: number;
  importWh: number;
  exportWh: number;
}

interface Gw {
  id: string;
  factory: EnvelopeFactory;
  meters: Meter[];
  /** Which meter the next reading belongs to: a gateway polls its meters in turn. */
  cursor: number;
  client: MqttClient;
  pool: Prepared[];
  next: number;
  inflight: number;
}

/** A poll every 5 s at ~7 kW: far inside the 100 kW rated power the bench enrolls. */
const READING_STEP_MS = 5_000;
const IMPORT_STEP_WH = 10;
const MAX_FAILURES_LISTED = 10;
const DRAIN_TIMEOUT_MS = 120_000;

function send(msg: FromLoad): void {
  process.send!(msg);
}

let gws: Gw[] = [];
let phase: PhaseSpec | undefined;
/** Envelope id → its gateway, start time (ms, performance clock) and reading count. */
const pending = new Map<string, { gw: Gw; startMs: number; publishMs: number; readings: number }>();
let onAck: ((id: string, status: string, readings: number | null, detail: string | null) => void) | undefined;

async function init(msg: LoadInit): Promise<void> {
  // Readings start 20 days back: 5 s apart, a meter has room for ~345,000 before "now".
  const base = Date.now() - 20 * 24 * 3600_000;
  gws = await Promise.all(
    Array.from({ length: msg.gateways }, async (_, k) => {
      const id = `bench-${msg.tag}-gw${k}`;
      const meters = Array.from({ length: msg.metersPerGateway }, (_, j) => ({
        id: `bench-${msg.tag}-gw${k}-m${j}`,
        tsMs: base - READING_STEP_MS,
        importWh: 1_000_000 + 1000 * j,
        exportWh: 500,
      }));
      const client = await mqtt.connectAsync(msg.brokerUrl, { clientId: id, clean: true, reconnectPeriod: 0 });
      // As gateway/publisher.ts does on connect.
      (client.stream as { setNoDelay?: (on: boolean) => void }).setNoDelay?.(true);
      const gw: Gw = { id, factory: new EnvelopeFactory(id), meters, cursor: 0, client, pool: [], next: 0, inflight: 0 };
      client.on('message', (topic, payload) => {
        let m: { id?: string; status?: string; readings?: number; reason?: string; detail?: string };
        try {
          m = JSON.parse(payload.toString('utf8'));
        } catch {
          m = {};
        }
        const isReject = topic === topics.reject(id);
        onAck?.(m.id ?? '(no id)', isReject ? `rejected:${m.reason}` : (m.status ?? '(no status)'), m.readings ?? null, m.detail ?? null);
      });
      const granted = await client.subscribeAsync([topics.ack(id), topics.reject(id)], { qos: 1 });
      if (granted.some((g) => g.qos === 128)) throw new Error(`broker refused the ack subscription of ${id}`);
      return gw;
    }),
  );
  send({ t: 'keys', gateways: gws.map((g) => ({ id: g.id, publicKeyPem: g.factory.publicKeyPem, meters: g.meters.map((m) => m.id) })) });
}

/** The next reading of the gateway's next meter: chained, 5 s later, counters grow. */
function nextReading(g: Gw): Reading {
  const m = g.meters[g.cursor]!;
  g.cursor = (g.cursor + 1) % g.meters.length;
  m.tsMs += READING_STEP_MS;
  m.importWh += IMPORT_STEP_WH;
  const r = g.factory.nextReading(
    m.id,
    {
      importWh: m.importWh,
      exportWh: m.exportWh,
      powerW: 7_200,
      voltageMilliV: 230_100 + (m.importWh % 997),
      currentMilliA: 31_300,
      frequencyMilliHz: 50_010,
    },
    m.tsMs,
  );
  g.factory.advance(r);
  return r;
}

function presign(g: Gw, envelopes: number, readingsPerEnvelope: number): void {
  g.pool = [];
  g.next = 0;
  for (let i = 0; i < envelopes; i++) {
    const readings = Array.from({ length: readingsPerEnvelope }, () => nextReading(g));
    const env = g.factory.sign(readings);
    g.pool.push({ id: envelopeIdOf(signedBytes(env)), payload: Buffer.from(encodeEnvelope(env)), readings: readingsPerEnvelope });
  }
}

function prepare(spec: PhaseSpec): void {
  const t0 = performance.now();
  const perGateway =
    spec.mode === 'max' ? spec.envelopesPerGateway : Math.ceil((spec.envelopesPerSecond * spec.seconds) / gws.length);
  for (const g of gws) presign(g, perGateway, spec.readingsPerEnvelope);
  phase = spec;
  // The pre-signed pool is garbage-heavy to build: collect now, not inside the timed phase.
  (globalThis as { gc?: () => void }).gc?.();
  const envelopes = perGateway * gws.length;
  send({ t: 'prepared', envelopes, readings: envelopes * spec.readingsPerEnvelope, ms: performance.now() - t0 });
}

async function run(): Promise<PhaseResult> {
  const spec = phase;
  if (!spec) throw new Error('run before prepare');
  phase = undefined;
  const failures: string[] = [];
  let failureCount = 0;
  const fail = (s: string) => {
    failureCount++;
    if (failures.length < MAX_FAILURES_LISTED) failures.push(s);
  };
  const ackAt: number[] = [];
  const ackReadings: number[] = [];
  const latency: number[] = [];
  const latencyFromPublish: number[] = [];
  let accepted = 0;
  let sentEnvelopes = 0;
  let sentReadings = 0;
  let publishing = true;
  let exhaustedAt: number | undefined;
  let maxLag = 0;
  let allSent: (() => void) | undefined;

  const publish = (g: Gw, startMs: number) => {
    const e = g.pool[g.next++]!;
    const now = performance.now();
    pending.set(e.id, { gw: g, startMs, publishMs: now, readings: e.readings });
    g.inflight++;
    sentEnvelopes++;
    sentReadings += e.readings;
    g.client.publish(topics.readings(g.id), e.payload, { qos: 1 });
  };

  const pumpMax = (g: Gw, window: number) => {
    while (publishing && g.inflight < window && g.next < g.pool.length) publish(g, performance.now());
    if (g.next >= g.pool.length && exhaustedAt === undefined) exhaustedAt = performance.now();
  };

  onAck = (id, status, readings, detail) => {
    const now = performance.now();
    const p = pending.get(id);
    if (!p) {
      fail(`${status} for an id that is not pending (${id.slice(0, 12)}…)${detail ? `: ${detail}` : ''}`);
      return;
    }
    pending.delete(id);
    p.gw.inflight--;
    if (status === 'accepted' && readings === p.readings) {
      accepted++;
      ackAt.push(now);
      ackReadings.push(p.readings);
      latency.push(now - p.startMs);
      if (process.env.GTX_BENCH_TRACE) trace.push([p.startMs - t0, now - p.startMs]);
      latencyFromPublish.push(now - p.publishMs);
    } else {
      fail(`${p.gw.id} envelope ${id.slice(0, 12)}…: ${status}, readings ${readings} of ${p.readings}${detail ? `: ${detail}` : ''}`);
    }
    if (spec.mode === 'max') pumpMax(p.gw, spec.window);
    if (pending.size === 0 && !publishing) allSent?.();
  };

  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  const trace: Array<[number, number]> = [];
  let deadline: number;
  if (spec.mode === 'max') {
    deadline = t0 + spec.seconds * 1000;
    const timer = Number.isFinite(spec.seconds) ? setTimeout(() => (publishing = false), spec.seconds * 1000) : undefined;
    for (const g of gws) pumpMax(g, spec.window);
    // Until the clock runs out, or every pool is empty.
    await new Promise<void>((resolve) => {
      const check = setInterval(() => {
        if (!publishing || gws.every((g) => g.next >= g.pool.length)) {
          publishing = false;
          clearInterval(check);
          resolve();
        }
      }, 5);
    });
    clearTimeout(timer);
  } else {
    const total = gws.reduce((n, g) => n + g.pool.length, 0);
    const interval = 1000 / spec.envelopesPerSecond;
    deadline = t0 + total * interval;
    let i = 0;
    await new Promise<void>((resolve) => {
      const tick = () => {
        const now = performance.now();
        while (i < total && t0 + i * interval <= now) {
          const scheduled = t0 + i * interval;
          maxLag = Math.max(maxLag, now - scheduled);
          const g = gws[i % gws.length]!;
          // Pools are equal per gateway, so the round robin never asks an empty one.
          if (g.next < g.pool.length) publish(g, scheduled);
          i++;
        }
        if (i < total) setTimeout(tick, Math.max(0, t0 + i * interval - performance.now()));
        else resolve();
      };
      tick();
    });
    publishing = false;
  }
  const sendEnd = performance.now();
  const cpuBusy = process.cpuUsage(cpu0);
  const wall = sendEnd - t0;
  // Everything published must be answered: a silently dropped envelope is a failure.
  const drainStart = performance.now();
  if (pending.size > 0) {
    await new Promise<void>((resolve) => {
      allSent = resolve;
      setTimeout(resolve, DRAIN_TIMEOUT_MS);
    });
  }
  allSent = undefined;
  const drainMs = performance.now() - drainStart;
  for (const [id, p] of pending) fail(`${p.gw.id} envelope ${id.slice(0, 12)}…: no answer within ${DRAIN_TIMEOUT_MS / 1000} s`);
  for (const [, p] of pending) p.gw.inflight--;
  pending.clear();
  onAck = undefined;
  if (process.env.GTX_BENCH_TRACE) {
    const { writeFileSync } = await import('node:fs');
    writeFileSync(`${process.env.GTX_BENCH_TRACE}-${spec.name.replace(/\W+/g, '_')}.json`, JSON.stringify(trace));
  }

  // Max: the window is the timed phase, cut short at the moment the first pool ran dry.
  let lastAck = sendEnd;
  for (const t of ackAt) if (t > lastAck) lastAck = t;
  const windowEnd = spec.mode === 'max' ? Math.min(deadline, exhaustedAt ?? Infinity, sendEnd) : lastAck;
  let windowEnvelopes = 0;
  let windowReadings = 0;
  const inWindow: number[] = [];
  ackAt.forEach((t, n) => {
    if (t <= windowEnd) {
      windowEnvelopes++;
      windowReadings += ackReadings[n]!;
      inWindow.push(latency[n]!);
    }
  });
  return {
    name: spec.name,
    mode: spec.mode,
    readingsPerEnvelope: spec.readingsPerEnvelope,
    sentEnvelopes,
    sentReadings,
    acceptedEnvelopes: accepted,
    failures,
    failureCount,
    windowMs: windowEnd - t0,
    totalMs: lastAck - t0,
    poolExhausted: spec.mode === 'max' && exhaustedAt !== undefined && exhaustedAt < deadline,
    windowEnvelopes,
    windowReadings,
    latency: summarise(spec.mode === 'max' ? inWindow : latency),
    ...(spec.mode === 'paced' ? { latencyFromPublish: summarise(latencyFromPublish), maxScheduleLagMs: maxLag } : {}),
    cpu: (cpuBusy.user + cpuBusy.system) / 1000 / wall,
    drainMs,
  };
}

async function stop(): Promise<void> {
  await Promise.all(gws.map((g) => g.client.endAsync().catch(() => undefined)));
  process.disconnect?.();
}

process.on('message', (raw) => {
  const msg = raw as ToLoad;
  const reply = async (): Promise<void> => {
    switch (msg.t) {
      case 'init':
        return init(msg);
      case 'prepare':
        return prepare(msg.spec);
      case 'run':
        return send({ t: 'result', result: await run() });
      case 'stop':
        return stop();
    }
  };
  reply().catch((e: unknown) => send({ t: 'error', message: e instanceof Error ? (e.stack ?? e.message) : String(e) }));
});
