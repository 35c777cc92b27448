#!/usr/bin/env node
// Entry point of the `gtx` CLI: runs the compiled dispatcher, dist/bin/cli.js, with no loader.
// `npm run build` writes dist/ (npm install and npm ci run it through `prepare`).
import { existsSync } from 'node:fs';

const cli = new URL('../dist/bin/cli.js', import.meta.url);
if (!existsSync(cli)) {
  console.error('gtx: the compiled code (dist/) is missing: run `npm run build` (npm install does it, unless --ignore-scripts)');
  process.exit(2);
}
await import(cli.href);
