// Entry of the ledger commit thread (commit-thread.ts). Plain JavaScript so that a worker can
// start without a TypeScript loader: it registers one, then loads the real code.
import { register } from 'tsx/esm/api';

register();
await import('./commit-worker-main.ts');
