// The SQLite commit thread's side: its own connection to the ledger file, committing the
// batches the main thread sends, one at a time, in order.
import { parentPort, workerData } from 'node:worker_threads';
import type { CommitRequest, CommitReply } from './sqlite-commit-thread.ts';
import { SqliteLedger } from './sqlite.ts';

const port = parentPort!;
const ledger = new SqliteLedger((workerData as { path: string }).path, { commitThread: false });

port.on('message', (req: CommitRequest | 'close') => {
  if (req === 'close') {
    void ledger.close().then(() => port.close());
    return;
  }
  let reply: CommitReply;
  try {
    reply = { n: req.n, outcomes: ledger.commitEnvelopesNow(req.batch) };
  } catch (e) {
    const err = e as Error & { code?: string };
    reply = { n: req.n, error: { message: err.message, code: err.code, stack: err.stack } };
  }
  port.postMessage(reply);
});
