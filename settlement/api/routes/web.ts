import { createHash } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { extname, join, relative, sep } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { FastifyPluginAsync, FastifyReply } from 'fastify';
import { Type } from '@sinclair/typebox';
import { ErrorSchema } from './errors.ts';

/**
 * The web pages (settlement/web, docs/web.md): static files and uPlot, served at `/` and
 * `/assets/…`. They hold no data: every figure on a page comes from the API with the key the
 * person signed in with, so these routes are public.
 *
 * Only files known at start are served: the pages' directory is listed once (no dotfiles, only
 * the content types below) into a map, and a request is a lookup in it, never a path on disk,
 * so `..` or an encoded slash finds nothing.
 */

/** settlement/web beside the sources, or dist/settlement/web in the build (bin/build.js copies it). */
export const WEB_ROOT = fileURLToPath(new URL('../../web/', import.meta.url));

const TYPES: Readonly<Record<string, string>> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
  '.ico': 'image/x-icon',
};

/**
 * Scripts only from this server and never inline, so data that slipped into the DOM as markup
 * still could not run; no framing; the pages talk only to this origin (the API and its events).
 */
export const CONTENT_SECURITY_POLICY = [
  "default-src 'none'",
  "script-src 'self'",
  "style-src 'self'",
  "img-src 'self'",
  "connect-src 'self'",
  "base-uri 'none'",
  "form-action 'none'",
  "frame-ancestors 'none'",
].join('; ');

const SECURITY_HEADERS: Readonly<Record<string, string>> = {
  'content-security-policy': CONTENT_SECURITY_POLICY,
  'x-content-type-options': 'nosniff',
  'x-frame-options': 'DENY',
  'referrer-policy': 'no-referrer',
  'cross-origin-opener-policy': 'same-origin',
};

interface Asset {
  body: Buffer;
  type: string;
  etag: string;
}

function asset(file: string): Asset {
  const body = readFileSync(file);
  return { body, type: TYPES[extname(file)] ?? 'application/octet-stream', etag: `"${createHash('sha256').update(body).digest('base64url').slice(0, 22)}"` };
}

/** Files under `dir` by their path relative to it (with `/`), skipping dotfiles and unknown types. */
function listFiles(dir: string, into = new Map<string, Asset>(), root = dir): Map<string, Asset> {
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    if (entry.name.startsWith('.')) continue;
    const path = join(dir, entry.name);
    if (entry.isDirectory()) listFiles(path, into, root);
    else if (entry.isFile() && TYPES[extname(entry.name)]) into.set(relative(root, path).split(sep).join('/'), asset(path));
  }
  return into;
}

/** The pages' files and uPlot's two, by URL path under /assets/ (index.html is served at /). */
export function webAssets(root = WEB_ROOT): Map<string, Asset> {
  const files = listFiles(root);
  // uPlot from its package (a dependency), so an update of it needs no copy here.
  const require = createRequire(import.meta.url);
  files.set('vendor/uPlot.iife.min.js', asset(require.resolve('uplot/dist/uPlot.iife.min.js')));
  files.set('vendor/uPlot.min.css', asset(require.resolve('uplot/dist/uPlot.min.css')));
  return files;
}

const FileParams = Type.Object({ '*': Type.String({ maxLength: 200, description: 'a file of the pages, e.g. app.js, views/prosumer.js, vendor/uPlot.min.css' }) });
const FileAnswer = Type.String({ description: 'the file (HTML, JavaScript, CSS or an image)' });
const PUBLIC = 'static page assets; no data';

export const webRoutes: FastifyPluginAsync = async (app) => {
  const files = webAssets();
  const index = files.get('index.html');
  if (!index) throw new Error(`the web pages are missing: no index.html in ${WEB_ROOT} (a build copies settlement/web to dist/)`);
  files.delete('index.html');

  // Encapsulated: these headers go on the pages' answers only, not on the API's.
  app.addHook('onSend', async (_req, reply, payload) => {
    for (const [name, value] of Object.entries(SECURITY_HEADERS)) reply.header(name, value);
    return payload;
  });

  const send = (reply: FastifyReply, ifNoneMatch: string | undefined, a: Asset) => {
    // Revalidated on every load (a new release changes the files), answered 304 when unchanged.
    reply.header('cache-control', 'no-cache').header('etag', a.etag);
    if (ifNoneMatch === a.etag) return reply.code(304).send();
    return reply.type(a.type).send(a.body);
  };

  app.get(
    '/',
    { config: { public: PUBLIC }, schema: { summary: 'The web pages: sign in with an API key (docs/web.md)', response: { 200: FileAnswer } } },
    async (req, reply) => send(reply, req.headers['if-none-match'], index),
  );

  app.get<{ Params: { '*': string } }>(
    '/assets/*',
    { config: { public: PUBLIC }, schema: { summary: 'A script, style sheet or image of the web pages', params: FileParams, response: { 200: FileAnswer, 404: ErrorSchema } } },
    async (req, reply) => {
      const a = files.get(req.params['*']);
      if (!a) return reply.code(404).send({ code: 'not_found', message: `no asset ${JSON.stringify(req.params['*'].slice(0, 80))}: the pages start at /` });
      return send(reply, req.headers['if-none-match'], a);
    },
  );
};
