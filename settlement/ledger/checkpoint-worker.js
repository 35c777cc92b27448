// WAL checkpoints of a SQLite ledger on a thread of their own (see commit-worker-main.ts):
// copying WAL pages into the database file and syncing it no longer happens inside a commit.
// Plain JavaScript: it needs nothing but better-sqlite3, and runs as it is from the sources
// (tests) and from dist/ (bin/build.js copies it there).
import Database from 'better-sqlite3';
import { parentPort, workerData } from 'node:worker_threads';

const { path, everyMs } = workerData;
const db = new Database(path);
db.pragma('busy_timeout = 5000');
const timer = setInterval(() => {
  try {
    // PASSIVE never waits for, or blocks, the committing connection.
    db.pragma('wal_checkpoint(PASSIVE)');
  } catch {
    // Busy or failed: the next tick tries again, and the committing connection's own
    // checkpoint past its safety limit keeps the WAL bounded meanwhile.
  }
}, everyMs);
parentPort.on('message', (m) => {
  if (m !== 'close') return;
  clearInterval(timer);
  db.close();
  parentPort.close();
});
