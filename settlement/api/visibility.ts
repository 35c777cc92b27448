import type { Ledger } from '../ledger/ledger.ts';
import type { ApiPrincipal } from '../registry/api-keys.ts';
import type { MeterRecord } from '../registry/registry.ts';
import { maySee, visibleAccounts } from './auth.ts';
import { describedError } from './routes/errors.ts';

/**
 * What a key holder may see, applied by the routes whatever the request asks for: a prosumer
 * its own account, an installer its customers, utilities and admins everything (auth.ts,
 * visibleAccounts). A meter the caller may not see is answered exactly like one that does not
 * exist (404 unknown_meter), so ids cannot be probed.
 */

/** The 404 a meter route documents. */
export const UNKNOWN_METER = describedError("unknown_meter: no meter of this id is enrolled, or not one this key may see (a prosumer its own account's, an installer its customers').");

export const unknownMeter = (meter: string) => ({
  code: 'unknown_meter',
  message: `no meter ${JSON.stringify(meter)} is enrolled for this key; GET /api/v1/meters lists the meters it may see`,
});

/** The meter if it is enrolled and the caller may see it. */
export async function visibleMeter(ledger: Ledger, p: ApiPrincipal, meter: string): Promise<MeterRecord | undefined> {
  const m = await ledger.getMeter(meter);
  return m && maySee(p, m.owner) ? m : undefined;
}

/**
 * The accounts a list answers with: those the caller may see, narrowed to `asked` when given.
 * Naming an account the caller may not see is refused (403), never silently widened.
 */
export function scopedAccounts(p: ApiPrincipal, asked: string | undefined): { accounts: readonly string[] | null } | { refuse: { code: string; message: string } } {
  const visible = visibleAccounts(p);
  if (asked === undefined) return { accounts: visible };
  if (visible === null || visible.includes(asked)) return { accounts: [asked] };
  return {
    refuse: {
      code: 'forbidden',
      message:
        p.role === 'prosumer'
          ? 'a prosumer key sees only its own account; leave out ?account='
          : `account ${JSON.stringify(asked)} is not a customer of this installer key`,
    },
  };
}
