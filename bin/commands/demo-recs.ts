import type { DemoHomes } from './demo-homes.ts';

/**
 * The certificate marketplace in the demo, through the REST API with the homes' own keys: homes
 * with PV put their newest certificates up for sale; households buy one at a time and retire it
 * for their own green-power claim. Each step prints the first few times, with the command that
 * audits the certificate down to its signed readings.
 */
interface RecJson {
  id: string;
  generator: { meter: string; owner: string };
  owner: string;
  energySource: string;
  periodStart: string;
  volumeWh: number;
  status: string;
}

const PRICE_PER_KWH = '0.50'; // THB
const FOR_SALE_PER_HOME = 2;

export class DemoCertificates {
  listed = 0;
  bought = 0;
  retired = 0;
  private said = 0;

  constructor(
    private readonly homes: DemoHomes,
    private readonly log: (line: string) => void,
    private readonly auditHint: (id: string) => string,
  ) {}

  async tick(): Promise<void> {
    for (const h of this.homes.homes.filter((x) => x.sells)) {
      const forSale = (await this.homes.api<RecJson[]>(h.account, 'GET', '/api/v1/recs?status=for_sale&limit=10')).json;
      if (forSale.length >= FOR_SALE_PER_HOME) continue;
      const active = (await this.homes.api<RecJson[]>(h.account, 'GET', `/api/v1/recs?status=active&limit=${FOR_SALE_PER_HOME - forSale.length}`)).json;
      for (const rec of active) {
        const r = await this.homes.api(h.account, 'POST', `/api/v1/recs/${rec.id}/list`, { pricePerKwh: PRICE_PER_KWH, currency: 'THB' });
        if (r.status === 200) this.listed++;
      }
    }
    for (const h of this.homes.homes.filter((x) => !x.sells)) {
      const [offer] = (await this.homes.api<RecJson[]>(h.account, 'GET', '/api/v1/recs/marketplace')).json;
      if (!offer) return;
      const bought = await this.homes.api<RecJson>(h.account, 'POST', `/api/v1/recs/${offer.id}/purchase`);
      if (bought.status !== 200) continue; // another home bought it first, or credits ran short
      this.bought++;
      const retired = await this.homes.api<RecJson>(h.account, 'POST', `/api/v1/recs/${offer.id}/retire`, { reason: 'household green-power claim (gtx demo)', beneficiary: h.account });
      if (retired.status !== 200) continue;
      this.retired++;
      if (this.said++ < 3) {
        this.log(
          `certificate ${offer.id}: ${offer.volumeWh} Wh ${offer.energySource} from ${offer.generator.meter} (${offer.periodStart.slice(0, 13)}h UTC) bought by ${h.account} and retired; audit: ${this.auditHint(offer.id)}`,
        );
      }
    }
  }
}
