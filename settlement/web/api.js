// The REST API as the pages use it: every call carries the signed-in key in the Authorization
// header (never in a URL, where it would land in logs and history), and every failure becomes
// an ApiError with the API's {"code","message"}.

export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

const BASE = '/api/v1';

/** Path segments from data are encoded, so an id can never change which route is called. */
export const seg = (s) => encodeURIComponent(String(s));

/** A query string from an object, skipping empty values. */
export function query(params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== undefined && v !== null && v !== '') q.set(k, String(v));
  const s = q.toString();
  return s ? `?${s}` : '';
}

export function createApi(key, onUnauthorized) {
  async function call(method, path, body) {
    let res;
    try {
      res = await fetch(`${BASE}${path}`, {
        method,
        headers: { authorization: `Bearer ${key}`, accept: 'application/json', ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
        ...(body === undefined ? {} : { body: JSON.stringify(body) }),
        cache: 'no-store',
      });
    } catch {
      throw new ApiError(0, 'network', 'the settlement did not answer; check the connection and try again');
    }
    const text = await res.text();
    let json;
    try {
      json = text ? JSON.parse(text) : undefined;
    } catch {
      json = undefined;
    }
    if (!res.ok) {
      if (res.status === 401 && onUnauthorized) onUnauthorized();
      const code = typeof json?.code === 'string' ? json.code : `http_${res.status}`;
      const msg = typeof json?.message === 'string' ? json.message : `the settlement answered ${res.status}`;
      throw new ApiError(res.status, code, msg);
    }
    return json;
  }
  return {
    get: (path) => call('GET', path),
    post: (path, body = {}) => call('POST', path, body),
    del: (path) => call('DELETE', path),
    /** GET that answers `fallback` when the route is not there (404 not_found: a settlement without that part). */
    async optional(path, fallback) {
      try {
        return await call('GET', path);
      } catch (e) {
        if (e instanceof ApiError && e.status === 404 && e.code === 'not_found') return fallback;
        throw e;
      }
    },
  };
}

/**
 * Live events: GET /api/v1/events (Server-Sent Events) read with fetch and a stream reader,
 * because EventSource cannot send the Authorization header. Reconnects with a growing pause
 * (1 s to 30 s) until `signal` aborts; `onState` hears 'connecting', 'live' (at the stream's
 * `hello`), 'retrying', 'off'.
 */
export function streamEvents(key, { onEvent, onState, onUnauthorized, signal }) {
  let pause = 1000;
  const run = async () => {
    while (!signal.aborted) {
      onState('connecting');
      try {
        const res = await fetch(`${BASE}/events`, { headers: { authorization: `Bearer ${key}`, accept: 'text/event-stream' }, cache: 'no-store', signal });
        if (res.status === 401) {
          onState('off');
          onUnauthorized();
          return;
        }
        if (res.status === 404) {
          // This settlement has no event stream: the pages still work, without live updates.
          onState('off');
          return;
        }
        if (!res.ok || !res.body) throw new Error(`events answered ${res.status}`);
        pause = 1000;
        // Live from the `hello` event on: the server subscribes this stream before it sends it.
        await readStream(res.body, (name, data) => (name === 'hello' ? onState('live') : onEvent(name, data)));
      } catch {
        if (signal.aborted) return;
      }
      onState('retrying');
      await new Promise((resolve) => {
        const t = setTimeout(resolve, pause);
        signal.addEventListener('abort', () => (clearTimeout(t), resolve()), { once: true });
      });
      pause = Math.min(30_000, pause * 2);
    }
  };
  void run();
}

/** Parses an event stream (the WHATWG format: `event:`/`data:` lines, a blank line ends an event). */
async function readStream(body, onEvent) {
  const reader = body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = '';
  let event = 'message';
  let data = [];
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += value;
    let nl;
    while ((nl = buffer.search(/\r\n|\r|\n/)) >= 0) {
      const line = buffer.slice(0, nl);
      buffer = buffer.slice(nl + (buffer.startsWith('\r\n', nl) ? 2 : 1));
      if (line === '') {
        if (data.length) {
          let parsed;
          try {
            parsed = JSON.parse(data.join('\n'));
          } catch {
            parsed = undefined;
          }
          if (parsed !== undefined) onEvent(event, parsed);
        }
        event = 'message';
        data = [];
      } else if (line.startsWith(':')) {
        // a heartbeat comment
      } else {
        const colon = line.indexOf(':');
        const name = colon < 0 ? line : line.slice(0, colon);
        const val = colon < 0 ? '' : line.slice(colon + 1).replace(/^ /, '');
        if (name === 'event') event = val;
        else if (name === 'data') data.push(val);
      }
    }
  }
}
