// The commit thread's side: its own ledger connection(s), committing the batches the main
// thread sends. Batches run concurrently as the main thread allows (its BatchCommitter caps
// them); SQLite's are synchronous, so they run one after another.
import { Worker, parentPort, workerData } from 'node:worker_threads';
import { fromWire, type CommitReply, type CommitRequest, type CommitThreadOptions } from './commit-thread.ts';
import type { Ledger } from './ledger.ts';
import { SqliteLedger } from './sqlite.ts';

const port = parentPort!;
const opts = workerData as CommitThreadOptions;
/**
 * SQLite: a checkpoint inside a commit (SQLite runs one after the commit that grows the WAL
 * past 1000 pages) held the commit thread for tens of milliseconds, which set the latency
 * tail. A checkpoint thread copies the WAL into the database every CHECKPOINT_EVERY_MS
 * instead; this connection checkpoints only past WAL_SAFETY_PAGES, by then a short one (the
 * pages are already copied), and that is also what lets SQLite restart the WAL from the top.
 */
const CHECKPOINT_EVERY_MS = 250;
const WAL_SAFETY_PAGES = 4000;

// The main thread has migrated the schema already.
const ledger: Ledger = opts.databaseUrl
  ? new (await import('./postgres.ts')).PostgresLedger(opts.databaseUrl)
  : new SqliteLedger(opts.sqlitePath, { walAutocheckpointPages: WAL_SAFETY_PAGES });
const checkpointer = opts.databaseUrl
  ? undefined
  : new Worker(new URL('./checkpoint-worker.js', import.meta.url), { workerData: { path: opts.sqlitePath, everyMs: CHECKPOINT_EVERY_MS } });
// A failing checkpoint thread costs speed, not data: the safety net above still checkpoints.
checkpointer?.on('error', () => undefined);
let checkpointerRunning = !!checkpointer;
checkpointer?.on('exit', () => (checkpointerRunning = false));

async function close(): Promise<void> {
  if (checkpointer && checkpointerRunning) {
    const gone = new Promise((resolve) => checkpointer.once('exit', resolve));
    checkpointer.postMessage('close');
    await gone;
  }
  await ledger.close();
  port.close();
}

port.on('message', (req: CommitRequest | 'close') => {
  if (req === 'close') {
    void close();
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
