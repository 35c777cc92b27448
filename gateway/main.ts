import { pino, type Logger } from 'pino';
import type { GatewayConfig } from './config.ts';
import { savedCredentials } from './enroll.ts';
import { loadOrCreateKey } from './keys.ts';
import { Outbox, type Sample } from './outbox.ts';
import { MeterReadError, TcpMeterPoller } from './poller.ts';
import { Publisher } from './publisher.ts';

/** A running gateway: poll → decode → seal (sign) into the outbox → publish until acknowledged. */
export interface Gateway {
  id: string;
  publicKeyPem: string;
  outboxDepth(): number;
  stats(): { polls: number; pollErrors: number; sealed: number; acked: number; rejected: number; inFlight: number };
  /** Seals whatever samples are waiting, without waiting for the batch to fill. */
  sealNow(): void;
  /**
   * Stops polling, seals what was read, and gives settlement up to `drainMs` to acknowledge
   * the outbox before disconnecting; what is left is sent on the next start.
   */
  stop(opts?: { drainMs?: number }): Promise<void>;
}

export interface GatewayDeps {
  now?: () => number;
  log?: Logger;
}

export async function startGateway(cfg: GatewayConfig, deps: GatewayDeps = {}): Promise<Gateway> {
  const now = deps.now ?? Date.now;
  const log = (deps.log ?? pino({ name: 'gateway', level: process.env.GTX_LOG_LEVEL ?? 'info' }, pino.destination(2))).child({
    gateway: cfg.id,
  });
  const key = loadOrCreateKey(cfg.keyFile);
  if (key.created) log.info({ keyFile: cfg.keyFile }, 'generated a new gateway key');
  const outbox = new Outbox(cfg.outboxFile);
  // Credentials from `gtx gateway enroll`, unless the config names its own.
  const saved = cfg.mqtt.username ? undefined : savedCredentials(cfg.dataDir);
  const mqttOpts = saved ? { ...cfg.mqtt, username: saved.username, password: saved.password } : cfg.mqtt;
  const publisher = new Publisher({ ...mqttOpts, gateway: cfg.id }, outbox, log);
  const pollers = cfg.meters.map((m) => new TcpMeterPoller(m));

  let pending: Sample[] = [];
  let oldestPendingAt = 0;
  let polls = 0;
  let pollErrors = 0;
  let sealed = 0;
  // Log a meter's failure once per outage, not on every poll.
  const failing = new Set<string>();

  const seal = () => {
    if (pending.length === 0) return;
    const entry = outbox.seal(cfg.id, key.privateKey, pending);
    pending = [];
    if (entry) {
      sealed += entry.readings;
      log.debug({ envelope: entry.id, readings: entry.readings }, 'sealed envelope');
      publisher.notify();
    }
  };

  let polling = false;
  const pollOnce = async () => {
    if (polling) return; // a slow meter must not stack polls
    polling = true;
    try {
      await Promise.all(
        pollers.map(async (p) => {
          try {
            const values = await p.read();
            polls++;
            if (failing.delete(p.cfg.id)) log.info({ meter: p.cfg.id }, 'meter answers again');
            if (pending.length === 0) oldestPendingAt = now();
            pending.push({ meter: p.cfg.id, tsMs: now(), values });
          } catch (e) {
            pollErrors++;
            if (!failing.has(p.cfg.id)) {
              failing.add(p.cfg.id);
              log.warn({ meter: p.cfg.id, err: e instanceof MeterReadError ? e.message : String(e) }, 'meter read failed');
            }
          }
        }),
      );
      if (pending.length >= cfg.batchMaxReadings || (pending.length > 0 && now() - oldestPendingAt >= cfg.batchMaxAgeMs)) seal();
    } finally {
      polling = false;
    }
  };

  await publisher.start();
  const timer = setInterval(() => void pollOnce(), cfg.pollIntervalMs);
  void pollOnce();
  log.info({ meters: pollers.map((p) => `${p.cfg.id}@${p.where}`), broker: cfg.mqtt.url, outbox: outbox.depth() }, 'gateway running');

  return {
    id: cfg.id,
    publicKeyPem: key.publicKeyPem,
    outboxDepth: () => outbox.depth(),
    stats: () => ({ polls, pollErrors, sealed, acked: publisher.acked, rejected: publisher.rejected, inFlight: publisher.inFlightCount() }),
    sealNow: seal,
    async stop({ drainMs = 0 } = {}) {
      clearInterval(timer);
      while (polling) await new Promise((r) => setTimeout(r, 20));
      seal(); // what was read is kept, not dropped
      const until = Date.now() + drainMs;
      while (outbox.depth() > 0 && Date.now() < until) await new Promise((r) => setTimeout(r, 50));
      await publisher.stop();
      await Promise.all(pollers.map((p) => p.close()));
      outbox.close();
      log.info('gateway stopped');
    },
  };
}
