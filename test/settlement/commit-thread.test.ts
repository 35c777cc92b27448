import { statSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import type { Envelope } from '../../protocol/index.ts';
import { CommitThread } from '../../settlement/ledger/commit-thread.ts';
import { SqliteLedger } from '../../settlement/ledger/sqlite.ts';
import { WriterDied, WriterStalled } from '../../settlement/ledger/writer.ts';
import { BatchCommitter } from '../../settlement/ingest/committer.ts';
import Database from 'better-sqlite3';
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
      await expect(thread.commit([verified(stranger.next('m-stranger'))])).rejects.toThrow(/ledger writer: FOREIGN KEY constraint failed/);
      const outcomes = await thread.commit([verified(known.next('m-known'))]);
      expect(outcomes.map((o) => o.status)).toEqual(['accepted']);
    } finally {
      await thread.close();
    }
    expect(await ledger.counts()).toMatchObject({ envelopes: 1, readings: 1 });
    await ledger.close();
  });

  it('restarts a thread that died; what it held fails, what comes meanwhile waits for the new thread, resends are stored once', async () => {
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
      await expect(inFlight).rejects.toThrow(WriterDied);
      // Sent while the thread is being replaced: it waits for the new one.
      const third1 = await thread.commit([third!]);
      expect(restarts).toHaveLength(1);
      expect(thread.status()).toMatchObject({ alive: true, restarts: 1 });
      // The gateway resends the unacknowledged second envelope, which may have been committed
      // just before the thread died, in which case it is now a duplicate; the third was stored.
      const outcomes = await thread.commit([second!, third!]);
      expect(third1.map((o) => o.status)).toEqual(['accepted']);
      expect(['accepted', 'duplicate']).toContain(outcomes[0]!.status);
      expect(outcomes[1]!.status).toBe('duplicate');
    } finally {
      await thread.close();
    }
    expect((await ledger.readings('m-r')).map((r) => r.seq)).toEqual([1, 2, 3]);
    await ledger.close();
  });

  it('watchdog: a commit stalled past its time fails at once, the envelopes are tried alone, a stuck ledger leaves them unanswered', async () => {
    const path = join(dir.path, 'stall.sqlite');
    const ledger = new SqliteLedger(path);
    await ledger.migrate();
    const f = new EnvelopeFactory('gw-stall');
    await enrollTestGateway(ledger, 'gw-stall', f.publicKeyPem, ['m-s']);
    const events: string[] = [];
    const thread = new CommitThread({ sqlitePath: path }, { commitTimeoutMs: 400, stalled: () => events.push('stalled'), recovered: () => events.push('recovered') });
    const committer = new BatchCommitter((b) => thread.commit(b), 512);
    // Another connection holds the write lock: the writer would wait its 5 s busy timeout.
    const holder = new Database(path);
    holder.exec('BEGIN IMMEDIATE');
    try {
      const [a, b] = [verified(f.next('m-s')), verified(f.next('m-s'))];
      const t = Date.now();
      const results = await Promise.allSettled([committer.commit(a!), committer.commit(b!)]);
      // The batch, then each envelope alone, stalled: two stalls in a row are the ledger's, not an envelope's.
      expect(results.map((r) => r.status)).toEqual(['rejected', 'rejected']);
      expect(results.map((r) => (r.status === 'rejected' ? String(r.reason) : r.status))).toEqual([expect.stringMatching(/WriterStalled/), expect.stringMatching(/WriterStalled/)]);
      // Answered well before the writer's 5 s busy timeout.
      expect(Date.now() - t).toBeLessThan(4_000);
      expect(thread.status()).toMatchObject({ alive: false, lastError: expect.stringMatching(/did not finish a commit of 2 envelope\(s\) within 400 ms/) as string });
      holder.exec('ROLLBACK');
      await waitFor(() => events.includes('recovered'), 'the writer to answer again');
      expect(events).toEqual(['stalled', 'recovered']);
      // The gateway resends; the stuck commit finished meanwhile, so they are duplicates now.
      expect((await committer.commit(a!)).status).toBe('duplicate');
      expect((await committer.commit(b!)).status).toBe('duplicate');
      expect(thread.status().alive).toBe(true);
    } finally {
      if (holder.inTransaction) holder.exec('ROLLBACK');
      holder.close();
      await thread.close();
    }
    expect((await ledger.readings('m-s')).map((r) => r.seq)).toEqual([1, 2]);
    await ledger.close();
  });

  it('isolates an envelope whose commit throws: the rest of its batch commits, it is refused as commit_failed', async () => {
    const path = join(dir.path, 'isolate.sqlite');
    const ledger = new SqliteLedger(path);
    await ledger.migrate();
    const f = new EnvelopeFactory('gw-good');
    await enrollTestGateway(ledger, 'gw-good', f.publicKeyPem, ['m-1', 'm-2', 'm-3']);
    // Its gateway is not in the registry: the envelope row's foreign key makes its commit throw.
    const stranger = new EnvelopeFactory('gw-stranger');
    const thread = new CommitThread({ sqlitePath: path });
    const failures: string[] = [];
    const committer = new BatchCommitter((b) => thread.commit(b), 512, undefined, 1, (env) => failures.push(env.id));
    try {
      const good = ['m-1', 'm-2', 'm-3', 'm-1', 'm-2'].map((m) => verified(f.next(m)));
      const poison = verified(stranger.next('m-x'));
      const batch = [...good.slice(0, 3), poison, ...good.slice(3)];
      const outcomes = await Promise.all(batch.map((env) => committer.commit(env)));
      expect(outcomes.map((o) => o.status)).toEqual(['accepted', 'accepted', 'accepted', 'rejected', 'accepted', 'accepted']);
      expect(outcomes[3]).toMatchObject({ reason: 'commit_failed', detail: expect.stringMatching(/FOREIGN KEY constraint failed/) as string });
      expect(failures).toEqual([poison.id]);
    } finally {
      await thread.close();
    }
    expect(await ledger.counts()).toMatchObject({ envelopes: 5, readings: 5 });
    await ledger.close();
  });
});
