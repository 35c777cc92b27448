import type { EnrolledMeter, EnrollmentResponse } from '../../protocol/index.ts';
import type { Ledger } from '../../settlement/ledger/ledger.ts';
import { Enrollment } from '../../settlement/registry/enrollment.ts';
import type { MarketId } from '../../settlement/registry/registry.ts';

export const TEST_MARKET = 'thailand_central';

/**
 * Enrolls a gateway and its meters the way an installer does (a one-time code, then the
 * enrollment), straight against the ledger. Meters given by id are bidirectional 100 kW solar.
 */
export async function enrollTestGateway(
  ledger: Ledger,
  gateway: string,
  publicKeyPem: string,
  meters: Array<string | EnrolledMeter>,
  market = TEST_MARKET,
): Promise<EnrollmentResponse> {
  if (!(await ledger.getMarket(market))) {
    await ledger.putMarket({ id: market as MarketId, name: market, timeZone: 'Asia/Bangkok', intervalMinutes: 15 });
  }
  const enrollment = new Enrollment(ledger, { now: Date.now, mqttUrl: () => 'mqtt://unused' });
  const { code } = await enrollment.issueCode({ market, owner: `owner-${gateway}`, ttlMs: 3600_000 });
  return enrollment.enroll({
    code,
    gateway,
    publicKeyPem,
    meters: meters.map((m) =>
      typeof m === 'string' ? { id: m, model: 'eastron-sdm120', role: 'bidirectional', ratedPowerW: 100_000, energySource: 'Solar' } : m,
    ),
  });
}
