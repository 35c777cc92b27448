import type { SinkReading, SinkRejection } from './influx-sink.ts';

/** The registry's view of a meter that becomes tags on its readings. */
export interface MeterTags {
  market: string;
  model: string;
  role: string;
}

/** What the tagger writes to: the InfluxDB sink's record methods. */
export interface ReadingSink {
  readingsVerified(readings: readonly SinkReading[]): void;
  rejection(r: SinkRejection): void;
}

/**
 * Adds each meter's market, model and role (from the registry) to its readings on their way to
 * the sink. Lookups are cached per meter: a known meter's readings are passed on at once, with
 * no query; an entry older than `ttlMs` is still used and refreshed in the background
 * (stale-while-revalidate), so a meter moved to another market or role is retagged within about
 * `ttlMs`. Only readings that passed verification reach here, so the cache holds enrolled
 * meters only and cannot be grown by whoever publishes.
 */
export class ReadingTagger implements ReadingSink {
  private readonly known = new Map<string, { atMs: number; tags: MeterTags | null }>();
  private readonly loading = new Map<string, Promise<void>>();
  /** Batches waiting for a first lookup; `idle()` waits for them. */
  private readonly pending = new Set<Promise<void>>();

  constructor(
    private readonly sink: ReadingSink,
    private readonly opts: {
      /** The registry lookup; undefined = the meter is unknown (its readings go untagged). */
      lookup: (meter: string) => Promise<MeterTags | undefined>;
      ttlMs?: number;
      now?: () => number;
      onError?: (e: unknown) => void;
    },
  ) {}

  readingsVerified(readings: readonly SinkReading[]): void {
    const missing: string[] = [];
    const now = (this.opts.now ?? Date.now)();
    const ttl = this.opts.ttlMs ?? 60_000;
    for (const r of readings) {
      const k = this.known.get(r.meter);
      if (!k) {
        if (!missing.includes(r.meter)) missing.push(r.meter);
      } else if (now - k.atMs >= ttl) {
        void this.load(r.meter);
      }
    }
    if (missing.length === 0) {
      this.sink.readingsVerified(this.tagged(readings));
      return;
    }
    // A meter's first readings wait for its lookup; the sink timestamps points, so order is moot.
    const p = Promise.all(missing.map((m) => this.load(m))).then(() => this.sink.readingsVerified(this.tagged(readings)));
    this.pending.add(p);
    void p.finally(() => this.pending.delete(p));
  }

  rejection(r: SinkRejection): void {
    this.sink.rejection(r);
  }

  /** Forgets every meter (after an enrollment or a handover), so the next readings look them up again. */
  clear(): void {
    this.known.clear();
  }

  /** Resolves when every batch waiting for a lookup has reached the sink. */
  async idle(): Promise<void> {
    while (this.pending.size > 0) await Promise.all([...this.pending]);
  }

  private tagged(readings: readonly SinkReading[]): SinkReading[] {
    return readings.map((r) => {
      const t = this.known.get(r.meter)?.tags;
      return t ? { ...r, market: t.market, model: t.model, role: t.role } : r;
    });
  }

  /** Never rejects: a failed lookup leaves the meter untagged (and is tried again by its next readings). */
  private load(meter: string): Promise<void> {
    const running = this.loading.get(meter);
    if (running) return running;
    const p = this.opts
      .lookup(meter)
      .then(
        (tags) => {
          this.known.set(meter, { atMs: (this.opts.now ?? Date.now)(), tags: tags ?? null });
        },
        (e: unknown) => this.opts.onError?.(e),
      )
      .finally(() => this.loading.delete(meter));
    this.loading.set(meter, p);
    return p;
  }
}
