// The ledger writer thread's side (commit-thread.ts): its own ledger connection(s), running the
// tasks the main thread sends. TaskRunner keeps SQLite's tasks one after another.
import { Worker, parentPort, workerData } from 'node:worker_threads';
import { fromWire, type CommitThreadOptions, type WriterReply, type WriterRequest } from './commit-thread.ts';
import type { Ledger } from './ledger.ts';
import { SqliteLedger } from './sqlite.ts';
import { TaskRunner, type WriterTask } from './writer.ts';

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
const runner = new TaskRunner(ledger);
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

port.on('message', (req: WriterRequest | 'close') => {
  if (req === 'close') {
    void close();
    return;
  }
  const task: WriterTask = req.task.kind === 'commit' ? { ...req.task, batch: req.task.batch.map(fromWire) } : req.task;
  if (task.kind === 'rejections') {
    // Structured clone turns Buffers into plain Uint8Arrays.
    for (const s of task.batch.samples) s.payload = Buffer.from(s.payload.buffer, s.payload.byteOffset, s.payload.byteLength);
  }
  runner.run(task).then(
    (result) => port.postMessage({ n: req.n, result } satisfies WriterReply),
    (e: unknown) => {
      const err = e as Error & { code?: string };
      port.postMessage({ n: req.n, error: { message: err.message, code: err.code, stack: err.stack } } satisfies WriterReply);
    },
  );
});
// Loaded and connected: from now on the main thread's watchdog times each task.
port.postMessage('ready');
