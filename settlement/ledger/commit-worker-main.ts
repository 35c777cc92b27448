// The commit thread's side: its own ledger connection(s), committing the batches the main
// thread sends. Batches run concurrently as the main thread allows (its BatchCommitter caps
// them); SQLite's are synchronous, so they run one after another.
import { parentPort, workerData } from 'node:worker_threads';
import { fromWire, type CommitReply, type CommitRequest, type CommitThreadOptions } from './commit-thread.ts';
import type { Ledger } from './ledger.ts';
import { SqliteLedger } from './sqlite.ts';

const port = parentPort!;
const opts = workerData as CommitThreadOptions;
// The main thread has migrated the schema already.
const ledger: Ledger = opts.databaseUrl
  ? new (await import('./postgres.ts')).PostgresLedger(opts.databaseUrl, { maxConnections: opts.maxConnections })
  : new SqliteLedger(opts.sqlitePath);

port.on('message', (req: CommitRequest | 'close') => {
  if (req === 'close') {
    void ledger.close().then(() => port.close());
    return;
  }
  ledger.commitEnvelopes(req.batch.map(fromWire)).then(
    (outcomes) => port.postMessage({ n: req.n, outcomes } satisfies CommitReply),
    (e: unknown) => {
      const err = e as Error & { code?: string };
      port.postMessage({ n: req.n, error: { message: err.message, code: err.code, stack: err.stack } } satisfies CommitReply);
    },
  );
});
port.postMessage('ready');
