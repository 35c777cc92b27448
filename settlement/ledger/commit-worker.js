// Entry of the ledger commit thread (commit-thread.ts) when the settlement runs as TypeScript
// (tests, benchmarks): a worker starts without a TypeScript loader, so this plain-JavaScript
// shim registers tsx (a dev dependency), then loads the real code. Compiled code (dist/) starts
// dist/settlement/ledger/commit-worker-main.js instead (worker-entry.ts); this file is not built.
import { register } from 'tsx/esm/api';

register();
await import('./commit-worker-main.ts');
