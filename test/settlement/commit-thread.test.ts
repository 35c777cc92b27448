import { statSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import type { Envelope } from '../../protocol/index.ts';
import { CommitThread } from '../../settlement/ledger/commit-thread.ts';
import { SqliteLedger } from '../../settlement/ledger/sqlite.ts';
import { EnvelopeFactory, verifiedEnvelope } from '../support/envelopes.ts';
import { enrollTestGateway } from '../support/registry.ts';
import { tempDir } from '../support/tmp.ts';
import { waitFor } from '../support/wait.ts';

/** The SQLite commit thread: its own connection, its checkpoint thread, its error path. */

const context = { ratedPowerW: 100_000, market: 'thailand_central', timeZone: 'Asia/Bangkok', intervalMs: 900_000 };
const verified = (env: Envelope) => verifiedEnvelope(env, context);

describe('SQLite commit thread', () => {
  const dir = tempDir();
  afterAll(() => dir.remove());

  it('keeps the WAL bounded under continuous commits and leaves everything readable on the main connection', async () => {
    const path = join(dir.path, 'wal.sqlite');
    const ledger = new SqliteLedger(path);
    await ledger.migrate();
    const f = new EnvelopeFactory('gw-wal');
    await enrollTestGateway(ledger, 'gw-wal', f.publicKeyPem, ['m-0', 'm-1']);
    const thread = new CommitThread({ sqlitePath: path });
    let t = Date.now() - 30 * 86_400_000;
    let maxWal = 0;
    try {
      for (let b = 0; b < 200; b++) {
        const batch = Array.from({ length: 20 }, (_, i) => {
          const rs = Array.from({ length: 16 }, () => {
            t += 5_000;
            const r = f.nextReading(`m-${i % 2}`, {}, t);
            f.advance(r);
            return r;
          });
          return verified(f.sign(rs));
        });
        const outcomes = await thread.commit(batch);
        expect(outcomes.every((o) => o.status === 'accepted')).toBe(true);
        maxWal = Math.max(maxWal, statSync(`${path}-wal`).size);
      }
    } finally {
      await thread.close();
    }
    // ~60 MB of envelopes went through; the WAL restarts near its 4000-page safety net.
    expect(maxWal).toBeLessThan(32 * 1024 * 1024);
    expect(await ledger.counts()).toMatchObject({ envelopes: 4000, readings: 64_000 });
    expect(await ledger.gaps('m-0')).toEqual([]);
    await ledger.close();
  }, 120_000);

  it('reports a failed batch to its caller and keeps committing the next ones', async () => {
    const path = join(dir.path, 'errors.sqlite');
    const ledger = new SqliteLedger(path);
    await ledger.migrate();
    const known = new EnvelopeFactory('gw-known');
    await enrollTestGateway(ledger, 'gw-known', known.publicKeyPem, ['m-known']);
    // A gateway the registry never saw: the envelope row's foreign key refuses it.
    const stranger = new EnvelopeFactory('gw-stranger');
    const thread = new CommitThread({ sqlitePath: path });
    try {
      await expect(thread.commit([verified(stranger.next('m-stranger'))])).rejects.toThrow(/ledger commit: FOREIGN KEY constraint failed/);
      const outcomes = await thread.commit([verified(known.next('m-known'))]);
      expect(outcomes.map((o) => o.status)).toEqual(['accepted']);
    } finally {
      await thread.close();
    }
    expect(await ledger.counts()).toMatchObject({ envelopes: 1, readings: 1 });
    await ledger.close();
  });

  it('restarts a thread that died; what it held is rejected, and the resent envelopes are stored once', async () => {
    const path = join(dir.path, 'restart.sqlite');
    const ledger = new SqliteLedger(path);
    await ledger.migrate();
    const f = new EnvelopeFactory('gw-restart');
    await enrollTestGateway(ledger, 'gw-restart', f.publicKeyPem, ['m-r']);
    const restarts: Error[] = [];
    const thread = new CommitThread({ sqlitePath: path }, { restarted: (e) => restarts.push(e), restartDelayMs: 50 });
    const [first, second, third] = [verified(f.next('m-r')), verified(f.next('m-r')), verified(f.next('m-r'))];
    try {
      expect((await thread.commit([first!])).map((o) => o.status)).toEqual(['accepted']);
      // What a crash of the thread looks like from the main thread.
      const inFlight = thread.commit([second!]);
      await (thread as unknown as { worker: { terminate(): Promise<number> } }).worker.terminate();
      await expect(inFlight).rejects.toThrow();
      await expect(thread.commit([third!])).rejects.toThrow(/restarting/);
      await waitFor(() => restarts.length === 1 || undefined, 'the commit thread to restart');
      // The gateway resends both unacknowledged envelopes; the second may have been committed
      // just before the thread died, in which case it is now a duplicate.
      const outcomes = await thread.commit([second!, third!]);
      expect(['accepted', 'duplicate']).toContain(outcomes[0]!.status);
      expect(outcomes[1]!.status).toBe('accepted');
    } finally {
      await thread.close();
    }
    expect((await ledger.readings('m-r')).map((r) => r.seq)).toEqual([1, 2, 3]);
    await ledger.close();
  });
});
