/**
 * Instruments and what-ifs the benchmark applies to its own processes, without touching the
 * settlement's code: a per-statement timer for better-sqlite3, and a "what if" switch
 * (`--what-if sqlite-normal`) that shows what a change would buy before anyone makes it.
 * (`nodelay` was one; TCP_NODELAY is now set by the broker and the MQTT clients themselves.) Reports made with a what-if say so, and are not written to the default
 * docs/benchmarks.md.
 */
import Database from 'better-sqlite3';
import { performance } from 'node:perf_hooks';

export const WHAT_IFS = ['sqlite-normal'] as const;
export type WhatIf = (typeof WHAT_IFS)[number];

export const WHAT_IF_TEXT: Record<WhatIf, string> = {
  'sqlite-normal': 'SQLite synchronous=NORMAL instead of FULL',
};

/** `PRAGMA synchronous = …` from any ledger opened from now on becomes NORMAL. */
export function sqliteSynchronousNormal(): void {
  const proto = Database.prototype as unknown as { pragma: (s: string, ...rest: unknown[]) => unknown };
  const pragma = proto.pragma;
  proto.pragma = function (this: unknown, s: string, ...rest: unknown[]) {
    return pragma.call(this, /^\s*synchronous\s*=/i.test(s) ? 'synchronous = NORMAL' : s, ...rest);
  };
}

export interface StatementRow {
  sql: string;
  calls: number;
  ms: number;
}

/**
 * Time spent inside better-sqlite3 per SQL text (run/get/all), from a wrapper on the
 * Statement prototype; COMMIT includes its WAL write, fsync and any checkpoint it triggers.
 */
export class SqliteStatementTimer {
  private readonly totals = new Map<string, { calls: number; ms: number }>();
  private restore: (() => void) | undefined;

  install(): void {
    if (this.restore) return;
    const probe = new Database(':memory:');
    const proto = Object.getPrototypeOf(probe.prepare('SELECT 1')) as Record<string, (...a: unknown[]) => unknown>;
    probe.close();
    const totals = this.totals;
    const originals = { run: proto.run!, get: proto.get!, all: proto.all! };
    this.restore = () => Object.assign(proto, originals);
    for (const m of ['run', 'get', 'all'] as const) {
      const orig = originals[m];
      proto[m] = function (this: { source: string }, ...a: unknown[]) {
        const t = performance.now();
        try {
          return orig.apply(this, a);
        } finally {
          const ms = performance.now() - t;
          const e = totals.get(this.source);
          if (e) {
            e.calls++;
            e.ms += ms;
          } else totals.set(this.source, { calls: 1, ms });
        }
      };
    }
  }

  /** Puts better-sqlite3 back as it was (profiled phases run without the wrapper). */
  uninstall(): void {
    this.restore?.();
    this.restore = undefined;
  }

  reset(): void {
    this.totals.clear();
  }

  top(n: number): StatementRow[] {
    return [...this.totals]
      .map(([sql, t]) => ({ sql: sql.replace(/\s+/g, ' ').trim(), ...t }))
      .sort((a, b) => b.ms - a.ms)
      .slice(0, n);
  }
}
