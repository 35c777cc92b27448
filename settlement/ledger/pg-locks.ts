import { sql, type RawBuilder } from 'kysely';

/**
 * PostgreSQL advisory lock keys (int4), scoped to the current schema so that ledgers in
 * different schemas of one database (tests, side-by-side deployments) never block each other.
 * The commit takes a meter's lock for every meter of its batch; anything else that changes a
 * meter's readings, gaps or interval energy (the gap estimator) takes the same lock.
 */
const SCOPE = `coalesce(current_schema(), '') || '/gtx/' || `;

/** The key of the lock named by the SQL text expression `expr`. */
export const lockKey = (expr: string) => `hashtext(${SCOPE}${expr})`;

/** Takes the transaction-scoped lock of one meter (the same key as lockKey("'meter/' || m")). */
export const lockMeter = (meter: string): RawBuilder<unknown> => sql`SELECT pg_advisory_xact_lock(hashtext(${sql.raw(SCOPE)}${`meter/${meter}`}))`;

/** Takes the transaction-scoped lock of a market's order book: new orders get their time priority under it. */
export const lockOrderBook = (market: string): RawBuilder<unknown> => sql`SELECT pg_advisory_xact_lock(hashtext(${sql.raw(SCOPE)}${`orders/${market}`}))`;
