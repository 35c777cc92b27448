import type { ServerResponse } from 'node:http';
import type { FastifyPluginAsync } from 'fastify';
import { Type } from '@sinclair/typebox';
import type { Delivered, EventHub, SubscriberFilter } from '../../events/hub.ts';
import { API_ROLES, type ApiPrincipal } from '../../registry/api-keys.ts';
import type { LedgerDb } from '../../store/database.ts';
import { describedError } from './errors.ts';

/**
 * GET /api/v1/events: live events as Server-Sent Events (text/event-stream), filtered by the
 * caller's role. The key comes only in `Authorization: Bearer` (never in the URL, which lands
 * in logs), so browsers read it with fetch() and a stream reader rather than EventSource.
 * Each stream is bounded: per key and in total, and in what it may have buffered for a client
 * that does not read (it is dropped). Server close ends every stream.
 */

export interface StreamLimits {
  /** Streams one API key may have open at once (a tab or two and a script). */
  perKey: number;
  /** Streams this process serves at once. */
  total: number;
  /** Bytes a stream may have waiting for its client; past it the client is too slow and is disconnected. */
  maxBufferedBytes: number;
  /** A comment line this often keeps proxies from closing an idle stream, and checks for revoked keys. */
  heartbeatMs: number;
  /** The SSE `retry:` hint: how long a client waits before it reconnects. */
  retryMs: number;
}

export const STREAM_LIMITS: StreamLimits = { perKey: 4, total: 500, maxBufferedBytes: 256 * 1024, heartbeatMs: 15_000, retryMs: 5_000 };

/** What the API needs for live events (ApiDeps.events). */
export interface LiveEventsDeps {
  hub: EventHub;
  limits?: Partial<StreamLimits>;
}

interface HelloData {
  role: string;
  /** The account a prosumer key acts for; null for other roles. */
  account: string | null;
  /** The customer accounts of an installer key; null for other roles. */
  customers: string[] | null;
}

/**
 * What a key holder may see, read from the principal's shape rather than an exhaustive switch
 * over today's roles: a role this code does not name gets market-wide events only.
 */
export function audienceOf(principal: ApiPrincipal): { filter: SubscriberFilter; hello: HelloData } {
  const p: { readonly role: string; readonly account?: unknown; readonly customers?: unknown } = principal;
  switch (p.role) {
    case 'admin':
    case 'utility':
      return { filter: { accounts: 'all' }, hello: { role: p.role, account: null, customers: null } };
    case 'prosumer': {
      const account = typeof p.account === 'string' ? p.account : null;
      return { filter: { accounts: new Set(account === null ? [] : [account]) }, hello: { role: p.role, account, customers: null } };
    }
    case 'installer': {
      const customers = Array.isArray(p.customers) ? p.customers.filter((c): c is string => typeof c === 'string') : [];
      return { filter: { accounts: new Set(customers) }, hello: { role: p.role, account: null, customers } };
    }
    default:
      return { filter: { accounts: new Set() }, hello: { role: p.role, account: null, customers: null } };
  }
}

const DESCRIPTION = `Live events as Server-Sent Events (text/event-stream). Send the key as \`Authorization: Bearer <key>\`
(never in the URL); in a browser, read it with fetch() and a stream reader (EventSource cannot send the header).
Each event is \`id:\` (a number that increases per settlement process), \`event:\` (its name) and one \`data:\` line of JSON.
The stream starts with \`retry:\` and a \`hello\` event (\`{"role","account","customers"}\`), and a comment line every 15 s keeps it open.
Events: \`price\` (a market's price signal changed) and \`auction\` (an auction ran) to every role;
\`trade\` (buyer, seller, Wh, price, value) and \`settlement\` (a trade settled against metered energy: delivered Wh and the amounts moved)
to its buyer and seller, \`certificate\` (a REC minted) to its owner, \`reading\` (a verified reading committed: meter, account, seq, ts, powerW, importWh, exportWh)
to the meter's owner (not readings over 15 minutes old when committed: a replayed outbox) — a prosumer sees its own account's,
an installer its customers', utility and admin everything.
No replay: after a reconnect, read the current state from the other routes. Limits: ${STREAM_LIMITS.perKey} open streams per key (429 too_many_streams),
${STREAM_LIMITS.total} in total (503 too_many_streams); a client that leaves more than ${STREAM_LIMITS.maxBufferedBytes / 1024} KiB unread is disconnected;
a revoked key's streams end within one heartbeat. Details: docs/api.md, "Live events".`;

interface OpenStream {
  readonly res: ServerResponse;
  readonly keyId: string;
  unsubscribe: () => void;
  closed: boolean;
}

/** How long server close waits for requests under way before it cuts the connections left. */
const CLOSE_GRACE_MS = 2_000;

/** The configured admin key's principal: not in api_keys, so not revocable there. */
const CONFIGURED_ADMIN_KEY_ID = 'admin-key';

export const eventRoutes: FastifyPluginAsync<LiveEventsDeps & { db: LedgerDb }> = async (app, { hub, limits: overrides, db }) => {
  const limits: StreamLimits = { ...STREAM_LIMITS, ...overrides };
  const streams = new Set<OpenStream>();
  const perKey = new Map<string, number>();
  // One encoding per event, shared by every stream it goes to (the hub hands all the same object).
  const frames = new WeakMap<Delivered, string>();

  const close = (s: OpenStream, how: 'end' | 'destroy' | 'gone') => {
    if (s.closed) return;
    s.closed = true;
    s.unsubscribe();
    streams.delete(s);
    const n = (perKey.get(s.keyId) ?? 1) - 1;
    if (n > 0) perKey.set(s.keyId, n);
    else perKey.delete(s.keyId);
    if (how === 'end') s.res.end();
    else if (how === 'destroy') s.res.destroy();
  };

  /** Writes unless the client has left too much unread: then it is cut off, never buffered without bound. */
  const write = (s: OpenStream, chunk: string) => {
    if (s.closed) return;
    // Bytes in the response and its socket not yet handed to the kernel.
    if (s.res.writableLength > limits.maxBufferedBytes) {
      app.log.warn({ key: s.keyId, buffered: s.res.writableLength }, 'event stream dropped: the client does not read fast enough');
      close(s, 'destroy');
      return;
    }
    s.res.write(chunk);
  };

  const frame = (d: Delivered) => {
    let f = frames.get(d);
    if (f === undefined) {
      f = `id: ${d.id}\nevent: ${d.event.type}\ndata: ${JSON.stringify(d.event.data)}\n\n`;
      frames.set(d, f);
    }
    return f;
  };

  /** Ends the streams of keys revoked since they opened; the ledger being unreachable keeps them. */
  const dropRevoked = async () => {
    const ids = [...perKey.keys()].filter((id) => id !== CONFIGURED_ADMIN_KEY_ID);
    if (ids.length === 0) return;
    const live = new Set(
      (await db.selectFrom('api_keys').select('id').where('id', 'in', ids).where('revoked_at_ms', 'is', null).execute()).map((r) => r.id),
    );
    for (const s of streams) if (s.keyId !== CONFIGURED_ADMIN_KEY_ID && !live.has(s.keyId)) close(s, 'end');
  };

  const heartbeat = setInterval(() => {
    for (const s of streams) write(s, ': keepalive\n\n');
    dropRevoked().catch((e: unknown) => app.log.warn({ err: e }, 'could not check event streams for revoked keys'));
  }, limits.heartbeatMs);
  heartbeat.unref();

  // Before the server stops accepting: open streams would otherwise keep close() waiting forever.
  // A stream with bytes its client has not taken could not finish either: it is cut.
  app.addHook('preClose', async () => {
    clearInterval(heartbeat);
    for (const s of [...streams]) close(s, s.res.writableLength > 0 ? 'destroy' : 'end');
    // A client whose stream dropped tends to open a spare connection at once (fetch does), and
    // one that never sends a request holds the server's close() until the client drops it: what
    // is still open after the grace is cut. Unref'd: it never keeps a stopped process alive.
    setTimeout(() => app.server.closeAllConnections(), CLOSE_GRACE_MS).unref();
  });

  app.get(
    '/events',
    {
      config: { roles: API_ROLES },
      schema: {
        summary: 'Live events (Server-Sent Events)',
        description: DESCRIPTION,
        response: {
          200: {
            description: 'an endless text/event-stream; see the route description and docs/api.md for the events',
            content: { 'text/event-stream': { schema: Type.String({ description: 'retry:, a hello event, then id:/event:/data: frames and keepalive comments' }) } },
          },
          429: describedError('too_many_streams: this key has the most streams open that one key may'),
          503: describedError('too_many_streams: the server serves the most streams it will'),
        },
      },
    },
    async (req, reply) => {
      const principal = req.principal!;
      const retryAfter = String(Math.ceil(limits.retryMs / 1000));
      const mine = perKey.get(principal.keyId) ?? 0;
      if (mine >= limits.perKey) {
        return reply
          .code(429)
          .header('retry-after', retryAfter)
          .send({ code: 'too_many_streams', message: `this API key has ${mine} event streams open, the most one key may: close one first` });
      }
      if (streams.size >= limits.total) {
        return reply
          .code(503)
          .header('retry-after', retryAfter)
          .send({ code: 'too_many_streams', message: `the server has ${streams.size} event streams open, the most it serves: try again later` });
      }
      // A HEAD (fastify adds one to every GET) gets the headers only, not a stream that never ends.
      if (req.method === 'HEAD') return reply.code(200).header('content-type', 'text/event-stream; charset=utf-8').header('cache-control', 'no-store').send();
      const { filter, hello } = audienceOf(principal);
      // The stream is written by hand from here; fastify neither serializes nor ends it.
      reply.hijack();
      const res = reply.raw;
      res.writeHead(200, {
        'content-type': 'text/event-stream; charset=utf-8',
        'cache-control': 'no-store',
        // Proxies (nginx) would otherwise hold events back to fill their buffers.
        'x-accel-buffering': 'no',
      });
      const s: OpenStream = { res, keyId: principal.keyId, unsubscribe: () => undefined, closed: false };
      streams.add(s);
      perKey.set(principal.keyId, mine + 1);
      res.on('close', () => close(s, 'gone'));
      res.write(`retry: ${limits.retryMs}\nevent: hello\ndata: ${JSON.stringify(hello)}\n\n`);
      // After hello, so a client sees who it is before its first event.
      if (!s.closed) s.unsubscribe = hub.subscribe(filter, (d) => write(s, frame(d)));
      req.log.debug({ key: principal.keyId, role: principal.role, streams: streams.size }, 'event stream opened');
    },
  );
};
