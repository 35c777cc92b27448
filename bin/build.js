#!/usr/bin/env node
// `npm run build` (npm install and npm ci run it through `prepare`): compiles the runtime
// TypeScript to dist/ with tsc (tsconfig.build.json: emit only, `.ts` imports rewritten to `.js`;
// `npm run typecheck` is the type check), then copies beside the compiled modules the files they
// read at run time. Plain JavaScript: it must run before anything is compiled.
import { execFileSync } from 'node:child_process';
import { cpSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';

/** Non-TypeScript runtime files, copied to the same place under dist/. */
const ASSETS = [
  'settlement/ledger/migrations', // versioned *.sql, read by migrations.ts
  'settlement/ledger/checkpoint-worker.js', // worker thread entry, plain JavaScript
  'devices/catalog', // meter definitions (*.json), read by catalog.ts
  'devices/examples', // the generic TOML definition users copy (gtx simulate --model FILE reads it)
  'settlement/web', // the web pages (HTML, JavaScript modules, CSS), served by api/routes/web.ts
  // Node-RED nodes (package.json "node-red"): the CommonJS entry Node-RED require()s and the
  // editor .html beside each compiled node, and the palette icons.
  ...['gtx-config', 'gtx-meter', 'gtx-publish', 'gtx-price', 'gtx-order'].flatMap((n) => [`flows/nodes/${n}.cjs`, `flows/nodes/${n}.html`]),
  'flows/nodes/icons',
];

const root = fileURLToPath(new URL('..', import.meta.url));
const started = Date.now();
let tsc;
try {
  tsc = createRequire(import.meta.url).resolve('typescript/bin/tsc');
} catch {
  console.error('gtx build: TypeScript is not installed (a dev dependency; --omit=dev leaves it out): `npm ci` with dev dependencies builds dist/, then `npm prune --omit=dev`');
  process.exit(1);
}
rmSync(`${root}dist`, { recursive: true, force: true });
try {
  execFileSync(process.execPath, [tsc, '-p', 'tsconfig.build.json'], { cwd: root, stdio: 'inherit' });
} catch {
  console.error('gtx build: tsc failed (see above)');
  process.exit(1);
}
for (const asset of ASSETS) cpSync(`${root}${asset}`, `${root}dist/${asset}`, { recursive: true });
console.log(`gtx build: dist/ in ${((Date.now() - started) / 1000).toFixed(1)} s`);
