#!/usr/bin/env -S node --max-semi-space-size=32
// Entry point of the `gtx` CLI: runs the compiled dispatcher, dist/bin/cli.js, with no loader.
//
// The V8 flag on the first line (env -S passes it on, then replaces itself with node, so this
// stays one process): a settlement under load holds a thousand envelopes between receipt and
// ack; with V8's default 16 MiB semi-space they outlive two scavenges and are promoted. 32 MiB
// lets them die young (docs/settlement.md, "How intake keeps up"). It is a ceiling, not a
// reservation: a gateway's young generation stays as small as its allocation rate keeps it.
// `node bin/gtx.js` skips the first line: run `./bin/gtx.js`, `npx gtx`, or pass the flag.
// `npm run build` writes dist/ (npm install and npm ci run it through `prepare`).
import { existsSync } from 'node:fs';

const cli = new URL('../dist/bin/cli.js', import.meta.url);
if (!existsSync(cli)) {
  console.error('gtx: the compiled code (dist/) is missing: run `npm run build` (npm install does it, unless --ignore-scripts)');
  process.exit(2);
}
await import(cli.href);
