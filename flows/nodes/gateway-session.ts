import { existsSync } from 'node:fs';
import { join, resolve } from 'node:path';
import type { KeyObject } from 'node:crypto';
import { gatewayDefaults } from '../../gateway/config.ts';
import { brokerSettings, savedCredentials } from '../../gateway/enroll.ts';
import { idFromKey, loadOrCreateKey } from '../../gateway/keys.ts';
import { tlsFiles } from '../../gateway/main.ts';
import { Outbox, type Sample } from '../../gateway/outbox.ts';
import { Publisher } from '../../gateway/publisher.ts';
import { MAX_READINGS_PER_ENVELOPE, type GatewayId } from '../../protocol/index.ts';
import { NodeSettingsError } from './node-settings.ts';
import { nodeLogger, type LogSink } from './node-log.ts';
import type { GtxSettings } from './gtx-settings.ts';

/**
 * One gateway's store-and-forward inside Node-RED: the outbox in the data dir `gtx gateway
 * init` made, sealed with its key, published by the gateway's Publisher (acks, retries, dead
 * letters: the same code as `gtx gateway run`). Shared by every gtx-publish node of one data
 * dir: two writers of one outbox, or two connections with the gateway's client id (the broker
 * drops the older), would fight.
 */
export interface GatewaySession {
  gateway: GatewayId;
  brokerUrl: string;
  /** Seals these samples into one or more envelopes and wakes the publisher. */
  seal(samples: Sample[]): void;
  /** The newest reading time sealed for `meter` (its chain head), ms epoch. */
  lastReadingMs(meter: string): number | undefined;
  depth(): number;
  acked(): number;
  connected(): boolean;
  /**
   * Hears `topic` on the gateway's own connection (a settlement broker admits a gateway's login
   * only with its client id, so a second connection would push this one off); until release.
   */
  listen(topic: string, onMessage: (payload: Buffer) => void): void;
  /** Lets go of this user's share; the last one out stops the publisher and closes the outbox. */
  release(): Promise<void>;
}

interface Shared {
  users: Set<LogSink>;
  gateway: GatewayId;
  brokerUrl: string;
  key: KeyObject;
  outbox: Outbox;
  publisher: Publisher;
  heads: Map<string, number>;
  /** Handlers per topic heard on the publisher's connection (it takes one handler per topic). */
  listeners: Map<string, Set<(payload: Buffer) => void>>;
}

const sessions = new Map<string, Promise<Shared>>();

/** The session for `settings.dataDir`, opened on first use. Throws NodeSettingsError when the gateway is not set up. */
export async function openGatewaySession(settings: GtxSettings, user: LogSink): Promise<GatewaySession> {
  if (!settings.dataDir) throw new NodeSettingsError('the GridTokenX settings name no gateway data dir (where gtx gateway init put the key and outbox)');
  const dir = resolve(settings.dataDir);
  let opening = sessions.get(dir);
  if (!opening) {
    opening = open(dir, settings);
    sessions.set(dir, opening);
    opening.catch(() => sessions.delete(dir));
  }
  const s = await opening;
  s.users.add(user);
  let released = false;
  const mine: Array<[string, (payload: Buffer) => void]> = [];
  return {
    gateway: s.gateway,
    brokerUrl: s.brokerUrl,
    seal(samples) {
      for (let i = 0; i < samples.length; i += MAX_READINGS_PER_ENVELOPE) {
        s.outbox.seal(s.gateway, s.key, samples.slice(i, i + MAX_READINGS_PER_ENVELOPE));
      }
      for (const x of samples) s.heads.set(x.meter, Math.max(s.heads.get(x.meter) ?? -Infinity, x.tsMs));
      s.publisher.notify();
    },
    lastReadingMs: (meter) => s.heads.get(meter),
    depth: () => s.outbox.depth(),
    acked: () => s.publisher.acked,
    connected: () => s.publisher.connected,
    listen(topic, onMessage) {
      let set = s.listeners.get(topic);
      if (!set) {
        const handlers = new Set<(payload: Buffer) => void>();
        set = handlers;
        s.listeners.set(topic, handlers);
        s.publisher.listen(topic, (payload) => {
          for (const h of handlers) h(payload);
        });
      }
      set.add(onMessage);
      mine.push([topic, onMessage]);
    },
    async release() {
      if (released) return;
      released = true;
      for (const [topic, h] of mine) s.listeners.get(topic)?.delete(h);
      s.users.delete(user);
      if (s.users.size > 0) return;
      sessions.delete(dir);
      await s.publisher.stop();
      s.outbox.close();
    },
  };
}

async function open(dir: string, settings: GtxSettings): Promise<Shared> {
  const keyFile = settings.keyFile ?? join(dir, 'gateway.key');
  // Never create a key here: a new key is a new, unenrolled gateway whose readings settlement refuses.
  if (!existsSync(keyFile)) throw new NodeSettingsError(`no gateway key at ${keyFile}: set the gateway up first (gtx gateway init --data-dir ${dir}, then gtx gateway enroll)`);
  const key = loadOrCreateKey(keyFile);
  const gateway = settings.gatewayId ?? idFromKey(key.publicKeyPem);
  const cfg = gatewayDefaults(gateway, dir);
  cfg.keyFile = keyFile;
  if (settings.brokerUrl) cfg.mqtt.url = settings.brokerUrl;
  if (settings.username) {
    cfg.mqtt.username = settings.username;
    cfg.mqtt.password = settings.password;
  }
  let saved;
  try {
    saved = savedCredentials(dir);
  } catch (e) {
    throw new NodeSettingsError(`${join(dir, 'mqtt-credentials.json')} is unreadable (${(e as Error).message}): enroll again with gtx gateway enroll`);
  }
  if (!saved && !settings.brokerUrl) throw new NodeSettingsError(`gateway ${gateway} is not enrolled (no MQTT login in ${dir}) and the settings name no broker: run gtx gateway enroll, or set the broker URL`);
  const broker = brokerSettings(cfg);
  const outbox = new Outbox(cfg.outboxFile);
  const users = new Set<LogSink>();
  const log = nodeLogger(() => users.values().next().value);
  const publisher = new Publisher(
    { url: broker.url, username: broker.username, password: broker.password, tls: tlsFiles(cfg), gateway, ackTimeoutMs: cfg.mqtt.ackTimeoutMs, maxInFlight: cfg.mqtt.maxInFlight },
    outbox,
    log,
  );
  const heads = new Map(outbox.meterHeads().flatMap((h) => (h.tsMs === null ? [] : [[h.meter, h.tsMs] as const])));
  await publisher.start();
  return { users, gateway, brokerUrl: broker.url, key: key.privateKey, outbox, publisher, heads, listeners: new Map() };
}
