// Entry of the SQLite commit thread (sqlite-commit-thread.ts). Plain JavaScript so that a
// worker can start without a TypeScript loader: it registers one, then loads the real code.
import { register } from 'tsx/esm/api';

register();
await import('./sqlite-commit-worker-main.ts');
