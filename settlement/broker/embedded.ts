import { Aedes, type AedesOptions, type AuthenticateError, type Client } from 'aedes';
import { createServer, type Server } from 'node:net';
import { createServer as createTlsServer, type Server as TlsServer } from 'node:tls';
import type { EventEmitter } from 'node:events';
import type { Logger } from 'pino';
import { gatewayClientId, isReservedId, RESERVED_ID_PREFIX, TOPIC_ROOT } from '../../protocol/index.ts';
import { createLogger } from '../logger.ts';
import { canPublish, canReceive, canSubscribe, clientIdAllowed, SETTLEMENT_USERNAME, type Principal } from './acl.ts';
import { verifySecretAsync, type CredentialStore } from './credentials.ts';

export interface EmbeddedBroker {
  /** mqtt://host:port that clients connect to. */
  url: string;
  port: number;
  /** mqtts://host:port of the TLS listener, when one was asked for. */
  tlsUrl?: string;
  tlsPort?: number;
  /** Lets every client in (see EmbeddedBrokerOptions.holdFor). */
  admitAll(): void;
  /** The broker itself, for the settlement's in-process subscriptions (broker/bus.ts). */
  aedes: Aedes;
  close(): Promise<void>;
}

export interface EmbeddedBrokerOptions {
  /**
   * Require every client to log in, and confine each to its topics (acl.ts). Without it the
   * broker is open: anyone who can reach the port may publish and subscribe to anything.
   */
  auth?: CredentialStore;
  /** An additional MQTT-over-TLS listener on the same broker (PEM key and certificate chain). */
  tls?: { key: string | Buffer; cert: string | Buffer; port: number; host?: string };
  /** Where refused logins, publishes and subscriptions are reported (warn). */
  log?: Logger;
  /**
   * Admit only this client id until `admitAll()`: the settlement subscribes before any
   * gateway can publish, so nothing is dropped for want of a subscriber after a restart.
   */
  holdFor?: string;
}

/** CONNACK return codes (MQTT 3.1.1, table 3.1). */
const IDENTIFIER_REJECTED = 2;
const BAD_USERNAME_OR_PASSWORD = 4;
const NOT_AUTHORIZED = 5;
const SERVER_UNAVAILABLE = 3;

function authError(returnCode: number, message: string): AuthenticateError {
  return Object.assign(new Error(message), { returnCode }) as AuthenticateError;
}

/** A scrypt hash of a random secret nobody has: verified against for unknown users, so they cost the same time. */
const DUMMY_HASH = 'scrypt$16384$8$1$AAAAAAAAAAAAAAAAAAAAAA$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA';

/**
 * The aedes hooks that enforce authentication (CredentialStore) and authorization (acl.ts).
 *
 * - authenticate: unknown user / wrong or missing password → CONNACK 4; revoked or pending
 *   gateway, a gateway under a reserved name, or a last will on a topic the client may not
 *   publish to → CONNACK 5; a client id not bound to the login (acl.ts clientIdAllowed) →
 *   CONNACK 2. aedes ends an older connection with the same client id only after this hook
 *   (registerClient), so refusing here keeps the rightful owner of the id connected.
 * - authorizePublish: a refused publish is dropped. aedes then closes the connection (MQTT
 *   3.1.1 has no way to refuse a PUBLISH; MQTT-3.3.5-2); the gateway reconnects.
 * - authorizeSubscribe: a refused filter is granted QoS 128 (failure); the others in the same
 *   SUBSCRIBE still succeed.
 * - authorizeForward: defence in depth, a message is only delivered where canReceive allows.
 */
function securityHooks(store: CredentialStore, log: Logger): Partial<AedesOptions> {
  const sessions = new WeakMap<Client, { principal: Principal; username: string }>();
  const willTopics = new WeakMap<Client, string>();

  const refuse = (client: Client, username: string | undefined, code: number, reason: string, done: (e: AuthenticateError | null, ok: boolean | null) => void) => {
    log.warn({ clientId: client.id, username: username ?? null, reason, returnCode: code }, 'mqtt login refused');
    const message = code === BAD_USERNAME_OR_PASSWORD ? 'bad username or password' : code === IDENTIFIER_REJECTED ? 'identifier rejected' : 'not authorized';
    done(authError(code, message), false);
  };

  async function login(client: Client, username: string | undefined, password: Buffer | undefined): Promise<{ code: number; reason: string } | { principal: Principal }> {
    if (!username || !password) return { code: BAD_USERNAME_OR_PASSWORD, reason: 'no username or password' };
    const rec = await store.lookup(username);
    const secret = password.toString('utf8');
    if (!rec) {
      await verifySecretAsync(secret, DUMMY_HASH);
      return { code: BAD_USERNAME_OR_PASSWORD, reason: 'unknown user' };
    }
    if (!(await verifySecretAsync(secret, rec.secretHash))) return { code: BAD_USERNAME_OR_PASSWORD, reason: 'wrong password' };
    let principal: Principal;
    if (rec.kind === 'settlement') {
      if (username !== SETTLEMENT_USERNAME) return { code: NOT_AUTHORIZED, reason: `settlement credentials under username other than ${SETTLEMENT_USERNAME}` };
      principal = { kind: 'settlement' };
    } else {
      // Checked after the password, so an outsider learns nothing about a gateway's state.
      // A reserved name can only come from a record an older release let in: never a gateway.
      if (isReservedId(username) || isReservedId(rec.gatewayId)) return { code: NOT_AUTHORIZED, reason: 'reserved name: not a gateway' };
      if (rec.status !== 'active') return { code: NOT_AUTHORIZED, reason: `gateway ${rec.status}` };
      if (rec.gatewayId !== username) return { code: NOT_AUTHORIZED, reason: `username is not the gateway id ${rec.gatewayId}` };
      principal = { kind: 'gateway', gatewayId: rec.gatewayId };
    }
    if (!clientIdAllowed(principal, client.id)) {
      const expected = principal.kind === 'gateway' ? gatewayClientId(principal.gatewayId) : `one starting with ${RESERVED_ID_PREFIX}`;
      return { code: IDENTIFIER_REJECTED, reason: `client id not bound to the login: expected ${expected}` };
    }
    const will = willTopics.get(client);
    if (will !== undefined && !canPublish(principal, will)) return { code: NOT_AUTHORIZED, reason: `last will on ${will} not allowed` };
    return { principal };
  }

  return {
    preConnect(client, packet, done) {
      // The will is checked at login, so a bad one is refused up front (Mosquitto 2.0 instead drops it when it fires).
      if (packet.will) willTopics.set(client, packet.will.topic);
      done(null, true);
    },

    authenticate(client, username, password, done) {
      login(client, username, password).then(
        (r) => {
          if ('code' in r) return refuse(client, username, r.code, r.reason, done);
          sessions.set(client, { principal: r.principal, username: username! });
          done(null, true);
        },
        (e: unknown) => {
          log.error({ clientId: client.id, username: username ?? null, err: e }, 'credential lookup failed');
          done(authError(SERVER_UNAVAILABLE, 'server unavailable'), false);
        },
      );
    },

    authorizePublish(client, packet, done) {
      if (!client) {
        // A stored will of a client that is gone (aedes clears wills of dead broker instances).
        // Its principal is unknown here, but every will was checked against it at login.
        const ok = packet.topic.startsWith(`${TOPIC_ROOT}/`);
        if (!ok) log.warn({ topic: packet.topic, reason: 'will outside the namespace' }, 'mqtt will refused');
        return done(ok ? null : new Error(`will on ${packet.topic} not allowed`));
      }
      const s = sessions.get(client);
      if (s && canPublish(s.principal, packet.topic)) return done(null);
      log.warn({ clientId: client.id, username: s?.username ?? null, topic: packet.topic, reason: 'topic not allowed' }, 'mqtt publish refused; connection closed');
      done(new Error(`publish to ${packet.topic} not allowed`));
    },

    authorizeSubscribe(client, sub, done) {
      const s = sessions.get(client);
      if (s && canSubscribe(s.principal, sub.topic)) return done(null, sub);
      log.warn({ clientId: client.id, username: s?.username ?? null, filter: sub.topic, reason: 'filter not allowed' }, 'mqtt subscription refused (granted 128)');
      done(null, null);
    },

    authorizeForward(client, packet) {
      const s = sessions.get(client);
      return s && canReceive(s.principal, packet.topic) ? packet : null;
    },
  };
}

async function listen(server: Server | TlsServer, port: number, host: string): Promise<number> {
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const addr = server.address();
  return typeof addr === 'object' && addr ? addr.port : port;
}

const hostInUrl = (host: string) => (host.includes(':') ? `[${host}]` : host);

/**
 * Starts aedes on host:port (port 0 picks a free one). With `opts.auth` every client must log in
 * and is confined by acl.ts; with `opts.tls` the same broker also listens for MQTT over TLS.
 */
export async function startEmbeddedBroker(host: string, port: number, opts: EmbeddedBrokerOptions = {}): Promise<EmbeddedBroker> {
  const log = opts.auth ? (opts.log ?? createLogger('mqtt-broker')) : undefined;
  const hooks: Partial<AedesOptions> = opts.auth && log ? securityHooks(opts.auth, log) : {};
  let admitting = opts.holdFor === undefined;
  const innerPreConnect = hooks.preConnect;
  hooks.preConnect = (client, packet, done) => {
    if (!admitting && packet.clientId !== opts.holdFor) return done(new Error('settlement is starting'), false);
    if (innerPreConnect) return innerPreConnect(client, packet, done);
    done(null, true);
  };
  const aedes = await Aedes.createBroker(hooks);
  if (log) {
    // A refused stale will makes aedes emit 'error'; unhandled, that would end the process.
    (aedes as unknown as EventEmitter).on('error', (e: unknown) => log.error({ err: e }, 'mqtt broker error'));
  }
  const servers: Array<Server | TlsServer> = [];
  try {
    // No Nagle: an ack is a small write that must leave now, not wait for the client's ACK.
    const server: Server = createServer({ noDelay: true }, aedes.handle);
    servers.push(server);
    const actualPort = await listen(server, port, host);
    let tls: { url: string; port: number } | undefined;
    if (opts.tls) {
      const tlsHost = opts.tls.host ?? host;
      const tlsServer = createTlsServer({ key: opts.tls.key, cert: opts.tls.cert, noDelay: true }, aedes.handle);
      servers.push(tlsServer);
      const p = await listen(tlsServer, opts.tls.port, tlsHost);
      tls = { url: `mqtts://${hostInUrl(tlsHost)}:${p}`, port: p };
    }
    return {
      url: `mqtt://${hostInUrl(host)}:${actualPort}`,
      port: actualPort,
      ...(tls ? { tlsUrl: tls.url, tlsPort: tls.port } : {}),
      admitAll() {
        admitting = true;
      },
      aedes,
      async close() {
        await new Promise<void>((resolve) => aedes.close(() => resolve()));
        // Connected clients hold sockets open; closing the broker ends them, then the listeners.
        await Promise.all(servers.map((s) => new Promise<void>((resolve) => s.close(() => resolve()))));
      },
    };
  } catch (e) {
    await new Promise<void>((resolve) => aedes.close(() => resolve()));
    for (const s of servers) s.close();
    throw e;
  }
}
