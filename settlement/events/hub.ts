import type { LiveEvent } from './live-events.ts';

/** An event as handed to subscribers: the same object for all of them, so a transport can encode it once. */
export interface Delivered {
  /** Increases with every event delivered by this hub (this process), from 1. */
  readonly id: number;
  readonly event: LiveEvent;
}

/**
 * Whose events a subscriber gets besides the market-wide ones (price, auction): 'all' for every
 * account's (utility, admin), or these accounts' only (a prosumer's one, an installer's
 * customers); an empty set gets market-wide events only.
 */
export interface SubscriberFilter {
  accounts: 'all' | ReadonlySet<string>;
}

interface Subscriber {
  readonly deliver: (d: Delivered) => void;
  readonly all: boolean;
  readonly accounts: ReadonlySet<string>;
}

/**
 * The in-process hub of live events: publishers (market events, REC minting, the ingest commit
 * path) call `publish`, transports (the SSE route) `subscribe`. Synchronous and in memory, no
 * queue of its own: a subscriber that cannot keep up is the transport's to bound.
 *
 * Cost: with no subscribers `publish` is one size check, and `active` / `wants` let a publisher
 * skip building events nobody receives (the ingest path commits thousands of readings a second).
 * Subscribers are indexed by account, so an account's event costs a map lookup plus the
 * subscribers that actually get it, however many others there are.
 */
export class EventHub {
  private nextId = 1;
  private readonly subscribers = new Set<Subscriber>();
  /** Subscribers that see every account's events. */
  private readonly seeAll = new Set<Subscriber>();
  private readonly byAccount = new Map<string, Set<Subscriber>>();

  /** `onError`: a subscriber threw while handed an event; it is dropped, the others still get theirs. */
  constructor(private readonly onError?: (err: unknown) => void) {}

  get subscriberCount(): number {
    return this.subscribers.size;
  }

  /** Whether anyone is subscribed at all. */
  get active(): boolean {
    return this.subscribers.size > 0;
  }

  /** Whether an event of `account` would reach anyone. */
  wants(account: string): boolean {
    return this.seeAll.size > 0 || this.byAccount.has(account);
  }

  subscribe(filter: SubscriberFilter, deliver: (d: Delivered) => void): () => void {
    const all = filter.accounts === 'all';
    const sub: Subscriber = { deliver, all, accounts: all ? new Set() : new Set(filter.accounts) };
    this.subscribers.add(sub);
    if (all) this.seeAll.add(sub);
    for (const a of sub.accounts) {
      let set = this.byAccount.get(a);
      if (!set) this.byAccount.set(a, (set = new Set()));
      set.add(sub);
    }
    return () => this.remove(sub);
  }

  publish(event: LiveEvent): void {
    if (this.subscribers.size === 0) return;
    const accounts = event.accounts;
    if (accounts === null) {
      const d: Delivered = { id: this.nextId++, event };
      for (const s of this.subscribers) this.call(s, d);
      return;
    }
    if (this.seeAll.size === 0 && !accounts.some((a) => this.byAccount.has(a))) return;
    const d: Delivered = { id: this.nextId++, event };
    for (const s of this.seeAll) this.call(s, d);
    if (accounts.length === 1) {
      const set = this.byAccount.get(accounts[0]!);
      if (set) for (const s of set) this.call(s, d);
      return;
    }
    // Both parties of a trade may be one installer's customers: that subscriber gets it once.
    const done = new Set<Subscriber>();
    for (const a of accounts) {
      const set = this.byAccount.get(a);
      if (!set) continue;
      for (const s of set) {
        if (done.has(s)) continue;
        done.add(s);
        this.call(s, d);
      }
    }
  }

  private call(s: Subscriber, d: Delivered): void {
    // Unsubscribed earlier in this same publish (a transport dropping a slow client).
    if (!this.subscribers.has(s)) return;
    try {
      s.deliver(d);
    } catch (e) {
      this.remove(s);
      this.onError?.(e);
    }
  }

  private remove(sub: Subscriber): void {
    if (!this.subscribers.delete(sub)) return;
    this.seeAll.delete(sub);
    for (const a of sub.accounts) {
      const set = this.byAccount.get(a);
      if (!set) continue;
      set.delete(sub);
      if (set.size === 0) this.byAccount.delete(a);
    }
  }
}
