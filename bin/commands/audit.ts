import { exportMeterEnvelopes } from '../../settlement/audit/export.ts';
import { parseFlags, required, UsageError } from '../args.ts';
import { progressBar } from '../progress.ts';
import { openLedger, settlementConfigFrom } from './settlement.ts';

const USAGE = `gtx audit meters [--config FILE]
      every meter id in the ledger, one per line, with its reading count and last seq
gtx audit export --meter ID --out DIR [--config FILE]
      writes NAME.bin (signed canonical bytes), NAME.sig (raw signature) and GATEWAY.pem
      for every stored envelope of the meter, for checking with openssl alone`;

export async function run(argv: string[]): Promise<void> {
  const [sub, ...rest] = argv;
  switch (sub) {
    case 'meters': {
      const f = parseFlags(rest, { config: { type: 'string' } }, USAGE);
      const ledger = await openLedger(settlementConfigFrom(f.config));
      for (const m of await ledger.meters()) console.log(`${m.meter}\t${m.readings} readings\tlast seq ${m.lastSeq}`);
      await ledger.close();
      return;
    }
    case 'export': {
      const f = parseFlags(rest, { config: { type: 'string' }, meter: { type: 'string' }, out: { type: 'string' } }, USAGE);
      const meter = required(f.meter, '--meter', USAGE);
      const out = required(f.out, '--out', USAGE);
      const ledger = await openLedger(settlementConfigFrom(f.config));
      try {
        const bar = progressBar(`exporting ${meter}`);
        const files = await exportMeterEnvelopes(ledger, meter, out, bar.update);
        bar.done();
        if (files.length === 0) {
          throw new UsageError(`no envelopes for meter ${meter} in the ledger (gtx audit meters lists the known ids)`, USAGE);
        }
        const bad = files.filter((x) => !x.verified);
        console.log(`wrote ${files.length} envelopes of meter ${meter} to ${out} (${files.length - bad.length} verified, ${bad.length} failed)`);
        const first = files[0]!;
        console.log(`check one with:\n  openssl pkeyutl -verify -pubin -inkey ${first.key} -rawin -in ${first.bin} -sigfile ${first.sig}`);
        if (bad.length > 0) {
          console.log(`signatures that do not verify: ${bad.map((x) => x.name).join(', ')}`);
          process.exitCode = 1;
        }
      } finally {
        await ledger.close();
      }
      return;
    }
    default:
      throw new UsageError(sub ? `unknown audit command "${sub}"` : 'audit needs a command', USAGE);
  }
}
