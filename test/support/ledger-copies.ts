import Database from 'better-sqlite3';
import { copyFileSync, existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { envelopeIdOf, readingHash, signedBytes, type Reading } from '../../protocol/index.ts';
import { gtxSync } from './cli.ts';
import type { EnvelopeFactory } from './envelopes.ts';

/** Audit tests: tamper with copies of a real SQLite ledger behind the interface's back, then run the CLI on them. */

/** `node bin/gtx.js …` on SQLite ledgers only (the audit reads the ledger the config names; a DATABASE_URL would win). */
export const gtx = (args: string[]) => gtxSync(args, { withoutDatabaseUrl: true });

/**
 * A copy of the SQLite ledger at `baseLedger` (with its WAL) under `dir/name/data`, changed by
 * `tamper` through SQLite directly (foreign keys off); returns a settlement.toml that names it.
 */
export function ledgerCopy(dir: string, baseLedger: string, name: string, tamper?: (db: Database.Database) => void): string {
  const d = join(dir, name);
  mkdirSync(join(d, 'data'), { recursive: true });
  copyFileSync(baseLedger, join(d, 'data', 'ledger.sqlite'));
  for (const ext of ['-wal', '-shm']) if (existsSync(baseLedger + ext)) copyFileSync(baseLedger + ext, join(d, 'data', `ledger.sqlite${ext}`));
  if (tamper) {
    const db = new Database(join(d, 'data', 'ledger.sqlite'));
    db.pragma('foreign_keys = OFF');
    tamper(db);
    db.close();
  }
  const config = join(d, 'settlement.toml');
  writeFileSync(config, `[settlement]\ndata_dir = "data"\n[mqtt]\nlisten = "127.0.0.1:0"\n`);
  return config;
}

/**
 * Stores `r` in a one-reading envelope signed by `gw`, as a signature that checks out would be:
 * in place of envelope `ref` and the reading's row when `ref` is given, otherwise as a new
 * envelope whose row replaces any stored at that seq. Returns the envelope id.
 */
export function storeSigned(db: Database.Database, gw: EnvelopeFactory, r: Reading, ref?: number): string {
  const env = gw.sign([r]);
  const bytes = signedBytes(env);
  const id = envelopeIdOf(bytes);
  const sig = Buffer.from(env.sig, 'base64');
  const row = { meter: r.meter, seq: r.seq, gateway: env.gateway, ts: Date.parse(r.ts), imp: r.importWh, exp: r.exportWh, power: r.powerW, prev: r.prev, hash: readingHash(r) };
  if (ref !== undefined) {
    db.prepare('UPDATE envelopes SET id = ?, signed = ?, sig = ? WHERE ref = ?').run(id, bytes.toString('utf8'), sig, ref);
    db.prepare(
      'UPDATE readings SET ts_ms = @ts, import_wh = @imp, export_wh = @exp, power_w = @power, prev = @prev, hash = @hash WHERE meter = @meter AND seq = @seq',
    ).run(row);
    return id;
  }
  const ins = db.prepare('INSERT INTO envelopes (id, gateway, received_at_ms, reading_count, signed, sig) VALUES (?, ?, ?, 1, ?, ?)');
  const envelopeRef = Number(ins.run(id, env.gateway, Date.now(), bytes.toString('utf8'), sig).lastInsertRowid);
  db.prepare('DELETE FROM readings WHERE meter = ? AND seq = ?').run(r.meter, r.seq);
  db.prepare(
    `INSERT INTO readings (meter, seq, envelope_ref, gateway, ts_ms, import_wh, export_wh, power_w, prev, hash, received_at_ms)
     VALUES (@meter, @seq, @ref, @gateway, @ts, @imp, @exp, @power, @prev, @hash, @now)`,
  ).run({ ...row, ref: envelopeRef, now: Date.now() });
  return id;
}
