import { connect, type Socket } from 'node:net';
import type { FastifyInstance } from 'fastify';
import mqtt, { type MqttClient } from 'mqtt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { GENESIS_PREV, encodeEnvelope, meterId, readingHash, topics, type Reading } from '../../protocol/index.ts';
import { listenApi } from '../../settlement/api/server.ts';
import { STREAM_LIMITS } from '../../settlement/api/routes/events.ts';
import { defaultSettlementConfig } from '../../settlement/config.ts';
import { EventHub, type Delivered } from '../../settlement/events/hub.ts';
import { certificateEvent, readingEvent, type LiveEvent, type ReadingEventData } from '../../settlement/events/live-events.ts';
import { MarketService } from '../../settlement/market/market.ts';
import { marketEventPublisher } from '../../settlement/market-events.ts';
import type { Settlement } from '../../settlement/main.ts';
import { RecMinter } from '../../settlement/recs/minting.ts';
import { ApiKeyStore } from '../../settlement/registry/api-keys.ts';
import { testApi } from '../support/api.ts';
import { EnvelopeFactory, verifiedEnvelope } from '../support/envelopes.ts';
import { engines, type OpenedLedger } from '../support/ledgers.ts';
import { TEST_MARKET, enrollTestGateway } from '../support/registry.ts';
import { startTestSettlement, testLog } from '../support/stack.ts';
import { tempDir } from '../support/tmp.ts';
import { waitFor } from '../support/wait.ts';

/**
 * GET /api/v1/events (Server-Sent Events): each role sees what it may — a prosumer its own
 * account's readings, trades, settlements and certificates, an installer its customers', utility
 * and admin everything, everyone prices and auctions — on a running settlement (readings through
 * the broker, the price and auction jobs) and on the API over a real ledger with the market and
 * the minter wired to the hub as main.ts wires them. Plus the bounds: 401 without a key, 429
 * past the per-key cap, a client that does not read is cut off, revoked keys' streams end, and
 * server close ends open streams.
 */

type Data = Record<string, unknown>;
interface SseEvent {
  id: number | null;
  event: string;
  data: Data;
}

/** A client of the event stream as a page reads it: fetch() with the Authorization header and a stream reader. */
class SseClient {
  readonly events: SseEvent[] = [];
  comments = 0;
  retry: number | null = null;
  /** The server ended the stream (or the connection broke). */
  ended = false;
  private readonly abort = new AbortController();

  private constructor(readonly res: Response) {}

  static async open(base: string, key?: string, path = '/api/v1/events'): Promise<SseClient> {
    const ctl = new AbortController();
    const res = await fetch(`${base}${path}`, { headers: key ? { authorization: `Bearer ${key}` } : {}, signal: ctl.signal });
    const c = new SseClient(res);
    c.abort.signal.addEventListener('abort', () => ctl.abort());
    if (res.ok) void c.pump();
    return c;
  }

  /** Opens a stream and waits for its hello (the subscription exists from then on). */
  static async ready(base: string, key: string): Promise<SseClient> {
    const c = await SseClient.open(base, key);
    expect(c.res.status, await c.bodyIfFailed()).toBe(200);
    await c.next('hello');
    return c;
  }

  private async bodyIfFailed(): Promise<string> {
    return this.res.ok ? '' : this.res.text();
  }

  private async pump(): Promise<void> {
    const reader = this.res.body!.getReader();
    const text = new TextDecoder();
    let buf = '';
    try {
      for (;;) {
        const { done, value } = await reader.read();
        if (done) break;
        buf += text.decode(value, { stream: true });
        for (let i = buf.indexOf('\n\n'); i >= 0; i = buf.indexOf('\n\n')) {
          this.frame(buf.slice(0, i));
          buf = buf.slice(i + 2);
        }
      }
    } catch {
      // Aborted by close(), or the connection was cut.
    }
    this.ended = true;
  }

  private frame(block: string): void {
    let id: number | null = null;
    let event = 'message';
    let data: string | null = null;
    for (const line of block.split('\n')) {
      if (line.startsWith(':')) {
        this.comments++;
        continue;
      }
      const colon = line.indexOf(':');
      const field = line.slice(0, colon);
      const value = line.slice(colon + 1).replace(/^ /, '');
      if (field === 'id') id = Number(value);
      else if (field === 'event') event = value;
      else if (field === 'retry') this.retry = Number(value);
      else if (field === 'data') {
        // One JSON line per event: a second data line would be a framing error.
        expect(data).toBeNull();
        data = value;
      }
    }
    if (data !== null) this.events.push({ id, event, data: JSON.parse(data) as Data });
  }

  of(event: string): Data[] {
    return this.events.filter((e) => e.event === event).map((e) => e.data);
  }

  next(event: string, match: (d: Data) => boolean = () => true, what = `a ${event} event`): Promise<Data> {
    return waitFor(() => this.events.find((e) => e.event === event && match(e.data))?.data, what);
  }

  close(): void {
    this.abort.abort();
  }
}

/** Opens an ordinary connection and sends the request by hand, so the test decides when (and whether) to read. */
function rawStream(base: string, key: string): Promise<Socket> {
  const url = new URL(base);
  return new Promise((resolve, reject) => {
    const socket = connect(Number(url.port), url.hostname, () => {
      socket.write(`GET /api/v1/events HTTP/1.1\r\nHost: ${url.host}\r\nAuthorization: Bearer ${key}\r\n\r\n`);
    });
    socket.once('error', reject);
    // The first bytes (status line, hello) show the subscription exists; from then on it reads nothing.
    socket.once('data', (chunk) => {
      expect(chunk.toString('latin1')).toMatch(/^HTTP\/1\.1 200/);
      socket.pause();
      resolve(socket);
    });
  });
}

const M = TEST_MARKET;

/** The next `n` readings of `meter`, stamped over the last seconds (live, not a replayed backlog). */
function live(f: EnvelopeFactory, meter: string, n = 1) {
  const rs: Reading[] = [];
  for (let i = 0; i < n; i++) {
    const r = f.nextReading(meter, {}, Date.now() - (n - i) * 1000);
    f.advance(r);
    rs.push(r);
  }
  return f.sign(rs);
}

describe('live events on a running settlement', () => {
  const dir = tempDir('gtx-events-');
  let s: Settlement;
  let gw: MqttClient;
  const a = new EnvelopeFactory('gw-ev-a');
  const b = new EnvelopeFactory('gw-ev-b');
  const keys = {} as Record<'admin' | 'utility' | 'installer' | 'prosumerA' | 'prosumerB', string>;
  const open: SseClient[] = [];
  const stream = async (key: string) => {
    const c = await SseClient.ready(s.httpUrl!, key);
    open.push(c);
    return c;
  };

  beforeAll(async () => {
    s = await startTestSettlement(dir.path);
    await enrollTestGateway(s.ledger, 'gw-ev-a', a.publicKeyPem, ['ev-a-1']);
    await enrollTestGateway(s.ledger, 'gw-ev-b', b.publicKeyPem, ['ev-b-1']);
    const store = new ApiKeyStore(s.ledger.db);
    keys.admin = (await store.create('admin')).key;
    keys.utility = (await store.create('utility')).key;
    keys.installer = (await store.create('installer', 'installs A', null, ['owner-gw-ev-a'])).key;
    keys.prosumerA = (await store.create('prosumer', '', 'owner-gw-ev-a')).key;
    keys.prosumerB = (await store.create('prosumer', '', 'owner-gw-ev-b')).key;
    gw = await mqtt.connectAsync(s.brokerUrl, { clientId: 'events-test-gateways' });
  });
  afterAll(async () => {
    for (const c of open) c.close();
    await gw?.endAsync();
    await s?.stop();
    dir.remove();
  });

  it('greets each stream with its role and account, and a retry hint', async () => {
    const pa = await stream(keys.prosumerA);
    expect(pa.events[0]).toEqual({ id: null, event: 'hello', data: { role: 'prosumer', account: 'owner-gw-ev-a', customers: null } });
    expect(pa.retry).toBe(STREAM_LIMITS.retryMs);
    expect(pa.res.headers.get('content-type')).toMatch(/^text\/event-stream/);
    expect(pa.res.headers.get('cache-control')).toBe('no-store');
    const inst = await stream(keys.installer);
    expect(inst.events[0]!.data).toEqual({ role: 'installer', account: null, customers: ['owner-gw-ev-a'] });
    const util = await stream(keys.utility);
    expect(util.events[0]!.data).toEqual({ role: 'utility', account: null, customers: null });
    for (const c of [pa, inst, util]) c.close();
  });

  it("a prosumer's stream carries its own meters' readings and never another account's; installer its customers', utility all", async () => {
    const [pa, pb, inst, util] = [await stream(keys.prosumerA), await stream(keys.prosumerB), await stream(keys.installer), await stream(keys.utility)];
    // B's reading first: once the utility has it, every stream has had its chance at it.
    await gw.publishAsync(topics.readings('gw-ev-b'), encodeEnvelope(live(b, 'ev-b-1')), { qos: 1 });
    await util.next('reading', (d) => d.meter === 'ev-b-1');
    await pb.next('reading', (d) => d.meter === 'ev-b-1');
    // A day-old reading (a replayed outbox) is committed but is not live power: not sent.
    const old = a.next('ev-a-1');
    const env = live(a, 'ev-a-1', 2);
    await gw.publishAsync(topics.readings('gw-ev-a'), encodeEnvelope(old), { qos: 1 });
    await gw.publishAsync(topics.readings('gw-ev-a'), encodeEnvelope(env), { qos: 1 });
    const mine = await pa.next('reading', (d) => d.meter === 'ev-a-1' && d.seq === 3);
    const r = env.readings[1]!;
    expect(mine).toEqual({ meter: 'ev-a-1', account: 'owner-gw-ev-a', seq: 3, ts: r.ts, powerW: r.powerW, importWh: r.importWh, exportWh: r.exportWh });
    expect(pa.of('reading').map((d) => d.seq)).toEqual([2, 3]);
    expect((await s.ledger.readings('ev-a-1')).map((x) => x.seq)).toEqual([1, 2, 3]);
    await inst.next('reading', (d) => d.meter === 'ev-a-1' && d.seq === 3);
    await util.next('reading', (d) => d.meter === 'ev-a-1' && d.seq === 3);

    // A market-wide event after everything: when it arrives, nothing else is on its way.
    await s.pricing[0]!.runOnce();
    for (const c of [pa, pb, inst, util]) await c.next('price');
    expect(pa.of('reading').map((d) => d.meter)).toEqual(['ev-a-1', 'ev-a-1']);
    expect(inst.of('reading').map((d) => d.meter)).toEqual(['ev-a-1', 'ev-a-1']);
    expect(pb.of('reading').map((d) => d.meter)).toEqual(['ev-b-1']);
    expect(util.of('reading').map((d) => d.meter).sort()).toEqual(['ev-a-1', 'ev-a-1', 'ev-b-1']);
    // Ids increase along a stream.
    const ids = util.events.filter((e) => e.id !== null).map((e) => e.id!);
    expect(ids).toEqual([...ids].sort((x, y) => x - y));
    expect(new Set(ids).size).toBe(ids.length);
    for (const c of [pa, pb, inst, util]) c.close();
  });

  it('price and auction events reach every role', async () => {
    const all = await Promise.all([keys.admin, keys.utility, keys.installer, keys.prosumerA].map((k) => stream(k)));
    const priced = await s.pricing[0]!.runOnce();
    expect(priced).toBeDefined();
    // A boundary two days ahead: no scheduled run takes it first.
    const boundary = Math.floor((Date.now() + 2 * 86_400_000) / 3_600_000) * 3_600_000;
    const run = await s.market.runAuction(M, boundary);
    expect(run).toBeDefined();
    for (const c of all) {
      const price = await c.next('price');
      expect(price).toMatchObject({ market: M, currency: 'THB', price: expect.stringMatching(/^\d+\.\d{2}$/) });
      const auction = await c.next('auction', (d) => d.id === run!.auction.id);
      expect(auction).toMatchObject({ market: M, clearingPrice: null, volumeWh: 0, trades: 0, orders: 0, currency: 'THB' });
    }
    for (const c of all) c.close();
  });

  it('refuses a stream without a key (also with one in the URL) and past the per-key cap, in the error shape', async () => {
    const none = await SseClient.open(s.httpUrl!);
    expect(none.res.status).toBe(401);
    expect(await none.res.json()).toMatchObject({ code: 'unauthorized', message: expect.any(String) });
    for (const q of [`?key=${keys.utility}`, `?access_token=${keys.utility}`, `?authorization=Bearer%20${keys.utility}`]) {
      const inUrl = await SseClient.open(s.httpUrl!, undefined, `/api/v1/events${q}`);
      expect(inUrl.res.status).toBe(401);
      await inUrl.res.body?.cancel();
    }

    // Earlier tests' closed streams are gone once the server saw them close.
    await waitFor(() => s.events.subscriberCount === 0, 'the earlier streams to be closed on the server');
    // HEAD answers the headers and ends: no stream is held open for it.
    const head = await fetch(`${s.httpUrl}/api/v1/events`, { method: 'HEAD', headers: { authorization: `Bearer ${keys.utility}` } });
    expect([head.status, head.headers.get('content-type')]).toEqual([200, 'text/event-stream; charset=utf-8']);
    expect(s.events.subscriberCount).toBe(0);
    const held = [];
    for (let i = 0; i < STREAM_LIMITS.perKey; i++) held.push(await stream(keys.utility));
    const over = await SseClient.open(s.httpUrl!, keys.utility);
    expect(over.res.status).toBe(429);
    expect(over.res.headers.get('retry-after')).toBe(String(STREAM_LIMITS.retryMs / 1000));
    const body = (await over.res.json()) as Data;
    expect(Object.keys(body).sort()).toEqual(['code', 'message']);
    expect(body.code).toBe('too_many_streams');
    // Another key is not affected.
    const other = await stream(keys.admin);
    expect(other.ended).toBe(false);
    // Closing one makes room again.
    held[0]!.close();
    const again = await waitFor(async () => {
      const c = await SseClient.open(s.httpUrl!, keys.utility);
      if (c.res.status === 200) return c;
      await c.res.body?.cancel();
      return undefined;
    }, 'a free stream slot after closing one');
    open.push(again);
    await again.next('hello');
    for (const c of [...held, other, again]) c.close();
  });
});

describe('trade, settlement and certificate events over the API and a real ledger', () => {
  const engine = engines.find((e) => e.name === 'sqlite')!;
  const cfg = defaultSettlementConfig();
  const rules = cfg.markets[0]!.rules;
  const SELLER = 'owner-gw-sun';
  const BUYER = 'owner-gw-home';
  const OTHER = 'owner-gw-other';
  // 10:05 in Bangkok: the market is open; the earliest delivery open to orders starts 11:00 local.
  const T0 = Date.parse('2026-11-30T03:05:00Z');
  const DELIVERY = Date.parse('2026-11-30T04:00:00Z');
  let now = T0;
  let opened: OpenedLedger;
  let hub: EventHub;
  let market: MarketService;
  let minter: RecMinter;
  let store: ApiKeyStore;
  let app: FastifyInstance;
  let base: string;
  const sun = new EnvelopeFactory('gw-sun');
  const home = new EnvelopeFactory('gw-home');
  const other = new EnvelopeFactory('gw-other');
  const keys = {} as Record<'utility' | 'seller' | 'buyer' | 'other' | 'installer', string>;
  const ctx = { ratedPowerW: 100_000, market: M, timeZone: 'Asia/Bangkok', intervalMs: 900_000 };

  /** Readings of `meter` at the given instants with these counters, committed as the ingest path commits them. */
  async function commit(f: EnvelopeFactory, meter: string, points: Array<[number, number, number]>) {
    const rs: Reading[] = [];
    points.forEach(([at, importWh, exportWh], i) => {
      rs.push({ meter: meterId(meter), seq: i + 1, ts: new Date(at).toISOString(), importWh, exportWh, powerW: 0, prev: i === 0 ? GENESIS_PREV : readingHash(rs[i - 1]!) });
    });
    const last = points.at(-1)![0];
    const [out] = await opened.ledger.commitEnvelopes([verifiedEnvelope(f.sign(rs), ctx, last + 1000)], { nowMs: last + 1000 });
    expect(out!.status).toBe('accepted');
  }

  beforeAll(async () => {
    opened = await engine.open();
    const { ledger } = opened;
    await enrollTestGateway(ledger, 'gw-sun', sun.publicKeyPem, ['sun-1']);
    await enrollTestGateway(ledger, 'gw-home', home.publicKeyPem, [{ id: 'home-1', model: 'eastron-sdm120', role: 'consumption', ratedPowerW: 20_000, energySource: null }]);
    await enrollTestGateway(ledger, 'gw-other', other.publicKeyPem, ['other-pv-1']);
    // Wired as settlement/main.ts wires them: the market's events and each minted certificate go to the hub.
    hub = new EventHub();
    const events = marketEventPublisher({ log: testLog('market'), publish: async () => undefined, currency: () => 'THB', hub });
    market = new MarketService(ledger, { rules: (id) => (id === M ? rules : undefined), credits: cfg.credits, now: () => now, events });
    minter = new RecMinter(ledger, market.money, { now: () => now, settleMs: 0, lookbackMs: 35 * 86_400_000, onMinted: (r) => hub.publish(certificateEvent(r)) });
    store = new ApiKeyStore(ledger.db);
    keys.utility = (await store.create('utility')).key;
    keys.seller = (await store.create('prosumer', '', SELLER)).key;
    keys.buyer = (await store.create('prosumer', '', BUYER)).key;
    keys.other = (await store.create('prosumer', '', OTHER)).key;
    // Both parties are this installer's customers: it gets each event once.
    keys.installer = (await store.create('installer', '', null, [SELLER, BUYER])).key;
    app = testApi(ledger, store, { events: { hub, limits: { heartbeatMs: 100 } } });
    base = await listenApi(app, '127.0.0.1', 0);
  });
  afterAll(async () => {
    await app?.close();
    await opened?.cleanup();
  });

  it('a trade and its settlement go to buyer and seller (and who sees them), never to another prosumer', async () => {
    const seller = await SseClient.ready(base, keys.seller);
    const buyer = await SseClient.ready(base, keys.buyer);
    const stranger = await SseClient.ready(base, keys.other);
    const inst = await SseClient.ready(base, keys.installer);
    const util = await SseClient.ready(base, keys.utility);
    await market.deposit(BUYER, 'THB', 10_000n);
    const sell = await market.placeOrder(SELLER, M, { side: 'sell', energyWh: 2000, limit: 350n });
    const buy = await market.placeOrder(BUYER, M, { side: 'buy', energyWh: 3000, limit: 450n });
    expect([sell.ok, buy.ok]).toEqual([true, true]);
    now = Date.parse('2026-11-30T03:30:00Z');
    const run = await market.runAuction(M);
    expect(run?.trades).toBe(1);

    const trade = {
      auctionId: run!.auction.id,
      market: M,
      buyer: BUYER,
      seller: SELLER,
      energyWh: 2000,
      price: '4.00',
      value: '8.00',
      currency: 'THB',
      deliveryStart: new Date(DELIVERY).toISOString(),
      deliveryEnd: new Date(DELIVERY + 1_800_000).toISOString(),
    };
    for (const c of [seller, buyer, inst, util]) expect(await c.next('trade')).toMatchObject(trade);
    for (const c of [seller, buyer, inst, util, stranger]) expect(await c.next('auction')).toMatchObject({ id: run!.auction.id, clearingPrice: '4.00', volumeWh: 2000, trades: 1 });

    // Delivery: the seller exports 1.5 kWh of the 2 sold, the buyer imports 2.5.
    await commit(sun, 'sun-1', [[DELIVERY, 0, 10_000], [DELIVERY + 1_800_000, 0, 11_500]]);
    await commit(home, 'home-1', [[DELIVERY, 5_000, 0], [DELIVERY + 1_800_000, 7_500, 0]]);
    now = DELIVERY + 1_800_000 + 1;
    expect(await market.settleNextDelivery(M, 0)).toBe(1);
    const settled = {
      tradeId: expect.stringContaining(run!.auction.id),
      buyer: BUYER,
      seller: SELLER,
      energyWh: 2000,
      deliveredWh: 1500,
      buyerMeteredWh: 1500,
      sellerShortWh: 500,
      sellerPaid: '6.00',
      buyerRefund: '2.00',
      sellerPenalty: '0.30',
      imbalancePrice: '4.60',
      currency: 'THB',
    };
    for (const c of [seller, buyer, inst, util]) expect(await c.next('settlement')).toMatchObject(settled);

    // A market-wide event last: once the stranger has it, the others' events have passed it by.
    await market.updatePrice(M);
    for (const c of [seller, buyer, stranger, inst, util]) await c.next('price');
    expect(stranger.of('trade')).toEqual([]);
    expect(stranger.of('settlement')).toEqual([]);
    expect(inst.of('trade')).toHaveLength(1);
    expect(inst.of('settlement')).toHaveLength(1);
    for (const c of [seller, buyer, stranger, inst, util]) c.close();
  });

  it('a minted certificate goes to its owner, not to other prosumers', async () => {
    const owner = await SseClient.ready(base, keys.other);
    const seller = await SseClient.ready(base, keys.seller);
    const util = await SseClient.ready(base, keys.utility);
    const T = Date.parse('2026-11-30T06:00:00Z');
    await commit(other, 'other-pv-1', [[T, 0, 500], [T + 1_800_000, 0, 1100], [T + 3_600_000, 0, 1700]]);
    now = T + 2 * 3_600_000;
    const { minted } = await minter.mintDue();
    const mine = minted.filter((r) => r.owner === OTHER);
    expect(mine).toHaveLength(1);
    const cert = await owner.next('certificate');
    expect(cert).toEqual({
      id: mine[0]!.id,
      owner: OTHER,
      meter: 'other-pv-1',
      market: M,
      energySource: 'Solar',
      volumeWh: 1200,
      periodStart: new Date(T).toISOString(),
      periodEnd: new Date(T + 3_600_000).toISOString(),
      issuedAt: new Date(now).toISOString(),
    });
    await util.next('certificate', (d) => d.id === mine[0]!.id);
    await market.updatePrice(M);
    await seller.next('price');
    // The seller's own hours (sun-1) may be certified in this run too; another owner's never reach it.
    expect(seller.of('certificate').every((d) => d.owner === SELLER)).toBe(true);
    for (const c of [owner, seller, util]) c.close();
  });

  it('heartbeats keep the stream open, and a revoked key loses its stream within one', async () => {
    const { key, record } = await store.create('prosumer', 'to revoke', OTHER);
    const c = await SseClient.ready(base, key);
    await waitFor(() => c.comments >= 2, 'two heartbeat comments');
    expect(c.ended).toBe(false);
    expect(await store.revoke(record.id)).toBe('revoked');
    await waitFor(() => c.ended, 'the revoked key’s stream to end');
    // And it cannot open another.
    expect((await SseClient.open(base, key)).res.status).toBe(401);
  });

  it('cuts off a client that does not read once its unsent bytes pass the bound; a reading client keeps its stream', async () => {
    await waitFor(() => hub.subscriberCount === 0, 'the earlier streams to be closed on the server');
    const reading = await SseClient.ready(base, keys.utility);
    const slow = await rawStream(base, keys.utility);
    await waitFor(() => hub.subscriberCount === 2, 'both streams subscribed');
    // 4 KiB events, a few at a time: the reading client drains between batches; the other's
    // kernel buffers fill, then the server's, until the bound cuts it off.
    const big: LiveEvent = readingEvent({ meter: 'x'.repeat(4096), seq: 1, ts: new Date(0).toISOString(), powerW: 0, importWh: 0, exportWh: 0 }, SELLER);
    let sent = 0;
    const limit = 64 * 1024 * 1024;
    // The server drops the slow stream's subscription when it cuts it off (its socket, paused, cannot tell).
    while (hub.subscriberCount === 2 && sent < limit) {
      for (let i = 0; i < 8; i++) hub.publish(big);
      sent += 8 * 4200;
      await new Promise((r) => setImmediate(r));
    }
    expect(hub.subscriberCount, `the slow client was not cut off after ${sent} bytes`).toBe(1);
    // Well past the bound, because the kernel's socket buffers take their share first, but not unbounded.
    expect(sent).toBeLessThan(limit);
    // The reader still gets events, and its stream is open.
    await market.updatePrice(M);
    await reading.next('price');
    expect(reading.ended).toBe(false);
    expect(reading.of('reading').length).toBeGreaterThan(0);
    reading.close();
    slow.destroy();
  });

  it('app.close() with open streams finishes and ends them', async () => {
    const own = new EventHub();
    const api = testApi(opened.ledger, store, { events: { hub: own } });
    const url = await listenApi(api, '127.0.0.1', 0);
    const streams = [await SseClient.ready(url, keys.utility), await SseClient.ready(url, keys.buyer)];
    expect(own.subscriberCount).toBe(2);
    await api.close();
    await waitFor(() => streams.every((c) => c.ended), 'the streams to end');
    expect(own.subscriberCount).toBe(0);
  });
});

describe('the event hub', () => {
  const price = (n: number): LiveEvent => ({
    type: 'price',
    accounts: null,
    data: { market: M, price: `${n}.00`, oldPrice: null, currency: 'THB', ratio: 1, supplyWh: 0, demandWh: 0, intervalStart: null, computedAt: '', validUntil: '' },
  });
  const reading = (owner: string) => readingEvent({ meter: `m-${owner}`, seq: 1, ts: '', powerW: 0, importWh: 0, exportWh: 0 }, owner);

  it('delivers market-wide events to all, an account’s to its subscribers and the all-seeing only', () => {
    const hub = new EventHub();
    const got = { all: [] as Delivered[], a: [] as Delivered[], ab: [] as Delivered[], none: [] as Delivered[] };
    hub.subscribe({ accounts: 'all' }, (d) => got.all.push(d));
    hub.subscribe({ accounts: new Set(['a']) }, (d) => got.a.push(d));
    hub.subscribe({ accounts: new Set(['a', 'b']) }, (d) => got.ab.push(d));
    const off = hub.subscribe({ accounts: new Set() }, (d) => got.none.push(d));
    hub.publish(price(1));
    hub.publish(reading('a'));
    hub.publish(reading('b'));
    hub.publish(reading('c'));
    const both = reading('a');
    hub.publish({ type: 'reading', data: both.data as ReadingEventData, accounts: ['a', 'b'] });
    const types = (ds: Delivered[]) => ds.map((d) => `${d.event.type}:${d.event.accounts?.join('+') ?? '*'}`);
    expect(types(got.all)).toEqual(['price:*', 'reading:a', 'reading:b', 'reading:c', 'reading:a+b']);
    expect(types(got.a)).toEqual(['price:*', 'reading:a', 'reading:a+b']);
    // Both of its accounts: once.
    expect(types(got.ab)).toEqual(['price:*', 'reading:a', 'reading:b', 'reading:a+b']);
    expect(types(got.none)).toEqual(['price:*']);
    // One object per event for every subscriber, ids increasing.
    expect(got.a[0]).toBe(got.all[0]);
    expect(got.all.map((d) => d.id)).toEqual([1, 2, 3, 4, 5]);
    off();
    hub.publish(price(2));
    expect(got.none).toHaveLength(1);
  });

  it('costs nothing without subscribers, says who wants what, and drops a subscriber that throws', () => {
    const hub = new EventHub();
    expect(hub.active).toBe(false);
    hub.publish(price(1));
    const errors: unknown[] = [];
    const quiet = new EventHub((e) => errors.push(e));
    const got: number[] = [];
    quiet.subscribe({ accounts: new Set(['a']) }, () => {
      throw new Error('socket gone');
    });
    quiet.subscribe({ accounts: new Set(['a']) }, (d) => got.push(d.id));
    expect([quiet.wants('a'), quiet.wants('b')]).toEqual([true, false]);
    // Nobody wants b's event: no id is spent on it.
    quiet.publish(reading('b'));
    quiet.publish(reading('a'));
    quiet.publish(reading('a'));
    expect(got).toEqual([1, 2]);
    expect(errors).toHaveLength(1);
    expect(quiet.subscriberCount).toBe(1);
  });
});
