import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import mqtt, { type IClientOptions, type MqttClient } from 'mqtt';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { gatewayClientId, topics } from '../../protocol/index.ts';
import { SETTLEMENT_USERNAME } from '../../settlement/broker/acl.ts';
import { MemoryCredentialStore, newSecret } from '../../settlement/broker/credentials.ts';
import { startEmbeddedBroker, type EmbeddedBroker } from '../../settlement/broker/embedded.ts';
import { tempDir } from '../support/tmp.ts';
import { waitFor } from '../support/wait.ts';

const MARKET = 'thailand_central';

describe('embedded broker with authentication and ACL (aedes, real mqtt.js clients)', () => {
  const dir = tempDir();
  const store = new MemoryCredentialStore();
  const secrets = { settlement: newSecret(), a: newSecret(), b: newSecret(), revoked: newSecret(), pending: newSecret() };
  const logLines: Array<Record<string, unknown>> = [];
  const logText: string[] = [];
  const log = pino({ level: 'warn' }, { write: (s: string) => (logText.push(s), logLines.push(JSON.parse(s) as Record<string, unknown>)) });
  const clients: MqttClient[] = [];
  let broker: EmbeddedBroker;
  let cert: Buffer;
  let n = 0;

  beforeAll(async () => {
    store.putSettlement(secrets.settlement);
    store.putGateway('gw-a', secrets.a);
    store.putGateway('gw-b', secrets.b);
    store.putGateway('gw-revoked', secrets.revoked, 'revoked');
    store.putGateway('gw-pending', secrets.pending, 'pending');
    // A throwaway self-signed certificate, as an operator would make one with openssl.
    const key = join(dir.path, 'key.pem');
    const crt = join(dir.path, 'cert.pem');
    execFileSync('openssl', ['req', '-x509', '-newkey', 'ed25519', '-keyout', key, '-out', crt, '-days', '2', '-nodes', '-subj', '/CN=localhost',
      '-addext', 'subjectAltName=DNS:localhost,IP:127.0.0.1'], { stdio: 'pipe' });
    cert = readFileSync(crt);
    broker = await startEmbeddedBroker('127.0.0.1', 0, { auth: store, tls: { key: readFileSync(key), cert, port: 0 }, log });
  });

  afterAll(async () => {
    await Promise.all(clients.map((c) => c.endAsync(true).catch(() => undefined)));
    await broker?.close();
    dir.remove();
  });

  /** A gateway's client id is bound to its login (gtx-gw-<id>), the settlement's starts with gtx-settlement. */
  function clientIdFor(username: string | undefined): string {
    if (username === SETTLEMENT_USERNAME) return `gtx-settlement-${++n}`;
    return username ? gatewayClientId(username) : `sec-test-${++n}`;
  }

  function options(username: string | undefined, password: string | undefined, extra: IClientOptions = {}): IClientOptions {
    return { clientId: clientIdFor(username), reconnectPeriod: 0, connectTimeout: 5_000, ...(username ? { username } : {}), ...(password ? { password } : {}), ...extra };
  }

  async function connect(username: string, password: string, extra: IClientOptions = {}, url = broker.url): Promise<MqttClient> {
    const c = await mqtt.connectAsync(url, options(username, password, extra));
    clients.push(c);
    return c;
  }

  async function refusedWith(username: string | undefined, password: string | undefined, extra: IClientOptions = {}): Promise<number> {
    const err = await mqtt.connectAsync(broker.url, options(username, password, extra)).then(
      (c) => {
        clients.push(c);
        throw new Error(`${username} was let in`);
      },
      (e: unknown) => e as { code?: number },
    );
    return err.code ?? -1;
  }

  const settlement = () => connect(SETTLEMENT_USERNAME, secrets.settlement);

  /** A listener collecting messages into an array. */
  function collect(c: MqttClient): Array<{ topic: string; payload: string }> {
    const got: Array<{ topic: string; payload: string }> = [];
    c.on('message', (topic, payload) => got.push({ topic, payload: payload.toString() }));
    return got;
  }

  /**
   * SUBSCRIBE and return the granted QoS per filter. mqtt.js 5 rejects the whole call when any
   * filter is refused (0x80), even though the broker did subscribe the others; the SUBACK is on
   * the error.
   */
  async function subscribeGrants(c: MqttClient, filters: string[]): Promise<Record<string, number>> {
    const granted = await c.subscribeAsync(filters, { qos: 1 }).then(
      (g) => g.map((x) => x.qos),
      (e: unknown) => {
        const codes = (e as { packet?: { granted?: number[] } }).packet?.granted;
        if (!codes) throw e;
        return codes;
      },
    );
    return Object.fromEntries(filters.map((f, i) => [f, granted[i]!]));
  }

  const closed = (c: MqttClient) => new Promise<void>((resolve) => (c.connected ? c.once('close', () => resolve()) : resolve()));

  describe('login', () => {
    it('refuses a wrong password with "bad username or password" (4), and logs why without the password', async () => {
      const wrong = 'definitely-not-the-secret';
      expect(await refusedWith('gw-a', wrong)).toBe(4);
      const line = await waitFor(() => logLines.find((l) => l.username === 'gw-a' && l.reason === 'wrong password'), 'a warning for the wrong password');
      expect(line).toMatchObject({ level: 40, returnCode: 4 });
      expect(line.clientId).toBe('gtx-gw-gw-a');
      expect(logText.join('')).not.toContain(wrong);
    });

    it('refuses an unknown user (4) and a client without credentials (4)', async () => {
      expect(await refusedWith('gw-nobody', newSecret())).toBe(4);
      expect(await refusedWith(undefined, undefined)).toBe(4);
      expect(logLines.some((l) => l.username === 'gw-nobody' && l.reason === 'unknown user')).toBe(true);
    });

    it('refuses a revoked or pending gateway even with its right secret (5 "not authorized")', async () => {
      expect(await refusedWith('gw-revoked', secrets.revoked)).toBe(5);
      expect(await refusedWith('gw-pending', secrets.pending)).toBe(5);
      expect(logLines.some((l) => l.username === 'gw-revoked' && l.reason === 'gateway revoked')).toBe(true);
      // A wrong secret for a revoked gateway is just a wrong password: its state is not told.
      expect(await refusedWith('gw-revoked', 'guess')).toBe(4);
    });

    it("refuses a gateway whose last will is on another gateway's status topic (5)", async () => {
      const will = { topic: topics.status('gw-b'), payload: Buffer.from('{"v":1,"state":"offline"}'), qos: 1 as const, retain: true };
      expect(await refusedWith('gw-a', secrets.a, { will })).toBe(5);
    });

    it('lets the settlement and an active gateway in', async () => {
      const s = await settlement();
      const a = await connect('gw-a', secrets.a);
      expect(s.connected && a.connected).toBe(true);
      store.setGatewayStatus('gw-a', 'revoked');
      expect(await refusedWith('gw-a', secrets.a)).toBe(5);
      store.setGatewayStatus('gw-a', 'active');
    });
  });

  describe('client ids bound to logins', () => {
    const offlineWill = (gw: string) => ({ topic: topics.status(gw), payload: Buffer.from('{"v":1,"state":"offline"}'), qos: 1 as const, retain: true });

    /** A subscriber that sees gw's retained status now, and every status message from then on. */
    async function statusWatcher(gw: string): Promise<Array<{ topic: string; payload: string }>> {
      const s = await settlement();
      const seen = collect(s);
      await s.subscribeAsync(topics.status(gw), { qos: 1 });
      return seen;
    }

    it("refuses gateway B under A's client id (2 'identifier rejected'); A stays connected, online, and its will does not fire", async () => {
      const a = await connect('gw-a', secrets.a, { will: offlineWill('gw-a') });
      let aClosed = false;
      a.on('close', () => (aClosed = true));
      await a.publishAsync(topics.status('gw-a'), '{"v":1,"state":"online"}', { qos: 1, retain: true });
      const seen = await statusWatcher('gw-a');
      await waitFor(() => seen.find((m) => m.payload.includes('online')), "gw-a's retained online status");

      expect(await refusedWith('gw-b', secrets.b, { clientId: gatewayClientId('gw-a') })).toBe(2);
      const line = await waitFor(() => logLines.find((l) => l.username === 'gw-b' && l.returnCode === 2), 'a warning for the borrowed client id');
      expect(line).toMatchObject({ level: 40, clientId: 'gtx-gw-gw-a', msg: 'mqtt login refused' });
      expect(String(line.reason)).toContain('expected gtx-gw-gw-b');

      // A barrier: A's next reading reaches a fresh subscriber, so a will fired by the refusal would have too.
      const s = await settlement();
      const readings = collect(s);
      await s.subscribeAsync(topics.readings('gw-a'), { qos: 1 });
      await a.publishAsync(topics.readings('gw-a'), 'still here', { qos: 1 });
      await waitFor(() => readings.find((m) => m.payload === 'still here'), "gw-a's reading after the refusal");
      expect(aClosed).toBe(false);
      expect(a.connected).toBe(true);
      expect(seen.map((m) => m.payload).filter((p) => p.includes('offline'))).toEqual([]);
      // The retained status a newcomer reads is still online.
      const later = await statusWatcher('gw-a');
      await waitFor(() => later.length > 0, "gw-a's retained status");
      expect(later[0]!.payload).toContain('online');
    });

    it('refuses a gateway with any other client id, or none (2)', async () => {
      for (const clientId of ['gw-a', 'gtx-gw-gw-a-2', 'GTX-GW-gw-a', 'sec-test-x', '']) {
        expect(await refusedWith('gw-a', secrets.a, { clientId }), clientId).toBe(2);
      }
    });

    it("refuses the settlement's login under a client id that does not start with gtx-settlement (2)", async () => {
      expect(await refusedWith(SETTLEMENT_USERNAME, secrets.settlement, { clientId: 'gtx-gw-gw-a' })).toBe(2);
      expect(await refusedWith(SETTLEMENT_USERNAME, secrets.settlement, { clientId: 'ingest-1' })).toBe(2);
    });

    it('still lets a gateway take over its own stale connection (a reconnect after a half-open socket)', async () => {
      const old = await connect('gw-b', secrets.b, { will: offlineWill('gw-b') });
      const seen = await statusWatcher('gw-b');
      const oldClosed = closed(old);
      const fresh = await connect('gw-b', secrets.b);
      await oldClosed;
      expect(fresh.connected).toBe(true);
      // The old connection's will fires, as MQTT says it should when a session is taken over.
      await waitFor(() => seen.find((m) => m.payload.includes('offline')), "the old gw-b connection's will");
    });
  });

  describe('publishing', () => {
    it("drops gateway A's publish on B's readings topic (and closes A's connection); the settlement never sees it", async () => {
      const s = await settlement();
      const seen = collect(s);
      await s.subscribeAsync(topics.allReadings, { qos: 1 });
      const a = await connect('gw-a', secrets.a);
      const b = await connect('gw-b', secrets.b);
      const aClosed = closed(a);
      a.publish(topics.readings('gw-b'), 'forged by gw-a', { qos: 0 });
      await aClosed;
      // A barrier: B's own reading arrives, so anything of A's before it would have too.
      await b.publishAsync(topics.readings('gw-b'), 'from gw-b', { qos: 1 });
      await waitFor(() => seen.find((m) => m.payload === 'from gw-b'), "gw-b's reading at the settlement");
      expect(seen.map((m) => m.payload)).not.toContain('forged by gw-a');
      expect(logLines.some((l) => l.username === 'gw-a' && l.topic === topics.readings('gw-b') && l.msg === 'mqtt publish refused; connection closed')).toBe(true);
    });

    it('refuses a gateway publishing a price (or an ack): only the settlement publishes those', async () => {
      const s = await settlement();
      const seen = collect(s);
      await s.subscribeAsync([topics.allPrices, topics.ack('gw-a')], { qos: 1 });
      for (const t of [topics.price(MARKET), topics.ack('gw-a')]) {
        const a = await connect('gw-a', secrets.a);
        const aClosed = closed(a);
        a.publish(t, 'fake', { qos: 1 });
        await aClosed;
      }
      await s.publishAsync(topics.price(MARKET), 'real price', { qos: 1 });
      await waitFor(() => seen.find((m) => m.payload === 'real price'), 'the real price');
      expect(seen.map((m) => m.payload)).not.toContain('fake');
    });

    it("delivers a gateway's own readings and its last will (status) to the settlement", async () => {
      const s = await settlement();
      const seen = collect(s);
      await s.subscribeAsync([topics.allReadings, topics.allStatus], { qos: 1 });
      const will = { topic: topics.status('gw-a'), payload: Buffer.from('{"v":1,"state":"offline"}'), qos: 1 as const, retain: true };
      const a = await connect('gw-a', secrets.a, { will });
      await a.publishAsync(topics.readings('gw-a'), 'reading of gw-a', { qos: 1 });
      await a.publishAsync(topics.status('gw-a'), '{"v":1,"state":"online"}', { qos: 1, retain: true });
      a.stream.destroy(); // an unclean drop fires the will
      await waitFor(() => seen.find((m) => m.topic === topics.status('gw-a') && m.payload.includes('offline')), 'the will of gw-a');
      expect(seen.find((m) => m.payload === 'reading of gw-a')?.topic).toBe(topics.readings('gw-a'));
    });
  });

  describe('subscribing', () => {
    it("grants 128 for gtx/v1/#, # and B's ack topic; A receives only its own ack and the market topics", async () => {
      const a = await connect('gw-a', secrets.a);
      const got = collect(a);
      const granted = await subscribeGrants(a, [
        'gtx/v1/#',
        '#',
        topics.ack('gw-b'),
        'gtx/v1/gw/+/ack',
        topics.ack('gw-a'),
        topics.reject('gw-a'),
        topics.allPrices,
        topics.auction(MARKET),
      ]);
      expect(granted).toEqual({
        'gtx/v1/#': 128,
        '#': 128,
        [topics.ack('gw-b')]: 128,
        'gtx/v1/gw/+/ack': 128,
        [topics.ack('gw-a')]: 1,
        [topics.reject('gw-a')]: 1,
        [topics.allPrices]: 1,
        [topics.auction(MARKET)]: 1,
      });
      expect(a.connected).toBe(true); // a refused subscription does not cost the connection
      expect(logLines.some((l) => l.username === 'gw-a' && l.filter === 'gtx/v1/#')).toBe(true);

      const s = await settlement();
      await s.publishAsync(topics.ack('gw-b'), 'ack for gw-b', { qos: 1 });
      await s.publishAsync(topics.readings('gw-b'), 'reading of gw-b', { qos: 1 });
      await s.publishAsync(topics.reject('gw-a'), 'reject for gw-a', { qos: 1 });
      await s.publishAsync(topics.auction(MARKET), 'auction result', { qos: 1 });
      await s.publishAsync(topics.ack('gw-a'), 'ack for gw-a', { qos: 1 });
      await waitFor(() => got.find((m) => m.payload === 'ack for gw-a'), "gw-a's ack");
      expect(got.map((m) => m.payload).sort()).toEqual(['ack for gw-a', 'auction result', 'reject for gw-a']);
    });
  });

  describe('the settlement', () => {
    it('may subscribe to everything under gtx/v1 (also shared) and publish prices, acks and rejections for any gateway', async () => {
      const s = await settlement();
      const granted = await subscribeGrants(s, [topics.everything, '$share/ingest/gtx/v1/gw/+/readings', '#']);
      expect(Object.values(granted)).toEqual([1, 1, 128]);
      const seen = collect(s);
      const b = await connect('gw-b', secrets.b);
      const bGot = collect(b);
      await b.subscribeAsync([topics.ack('gw-b'), topics.reject('gw-b')], { qos: 1 });
      await s.publishAsync(topics.price(MARKET), 'retained price', { qos: 1, retain: true });
      await s.publishAsync(topics.ack('gw-b'), 'ack for gw-b', { qos: 1 });
      await s.publishAsync(topics.reject('gw-b'), 'reject for gw-b', { qos: 1 });
      await s.publishAsync(topics.readings('gw-b'), 'the settlement may even write here', { qos: 1 });
      await waitFor(() => bGot.length >= 2, "gw-b's ack and rejection");
      await waitFor(() => seen.find((m) => m.payload === 'the settlement may even write here'), 'its own message through gtx/v1/#');
      // The retained price reaches a gateway that subscribes later.
      await b.subscribeAsync(topics.allPrices, { qos: 1 });
      await waitFor(() => bGot.find((m) => m.payload === 'retained price'), 'the retained price at gw-b');
      expect(s.connected).toBe(true);
    });
  });

  describe('TLS listener', () => {
    it('serves the same broker over TLS to a client that trusts the certificate', async () => {
      expect(broker.tlsUrl).toMatch(/^mqtts:\/\/127\.0\.0\.1:\d+$/);
      const s = await settlement();
      const seen = collect(s);
      await s.subscribeAsync(topics.allReadings, { qos: 1 });
      const a = await connect('gw-a', secrets.a, { ca: cert }, broker.tlsUrl);
      await a.publishAsync(topics.readings('gw-a'), 'over tls', { qos: 1 });
      await waitFor(() => seen.find((m) => m.payload === 'over tls'), 'the TLS reading on the plain listener');
    });

    it('refuses a client that does not trust the certificate, and still checks passwords over TLS', async () => {
      const err = await mqtt.connectAsync(broker.tlsUrl!, options('gw-a', secrets.a)).then(
        (c) => (clients.push(c), undefined),
        (e: unknown) => e as Error & { code?: string | number },
      );
      expect(String(err?.code ?? err?.message)).toMatch(/SELF_SIGNED|self.signed/i);
      const refused = await mqtt.connectAsync(broker.tlsUrl!, options('gw-a', 'wrong', { ca: cert })).then(
        () => -1,
        (e: { code?: number }) => e.code,
      );
      expect(refused).toBe(4);
    });
  });
});

describe('embedded broker without auth', () => {
  it('stays open, as before: anonymous clients publish and subscribe anywhere', async () => {
    const broker = await startEmbeddedBroker('127.0.0.1', 0);
    try {
      expect(broker.tlsUrl).toBeUndefined();
      const c = await mqtt.connectAsync(broker.url, { reconnectPeriod: 0 });
      const got: string[] = [];
      c.on('message', (t) => got.push(t));
      const granted = await c.subscribeAsync('#', { qos: 1 });
      expect(granted[0]?.qos).toBe(1);
      await c.publishAsync(topics.price(MARKET), 'x', { qos: 1 });
      await waitFor(() => got.includes(topics.price(MARKET)), 'the message');
      await c.endAsync();
    } finally {
      await broker.close();
    }
  });
});
