import { exportMeterEnvelopes } from '../../settlement/audit/export.ts';
import { verifyMeter, type MeterAuditReport } from '../../settlement/audit/verify.ts';
import type { SettlementConfig } from '../../settlement/config.ts';
import { command, parseFlags, required, runSubcommand, UsageError } from '../args.ts';
import { progressBar } from '../progress.ts';
import { auditRec } from '../../settlement/audit/rec.ts';
import { openExistingLedger, settlementConfigFrom } from './settlement.ts';

const USAGE = `gtx audit meters [--config FILE]
      every meter id in the ledger, one per line, with its reading count and last seq
gtx audit export --meter ID --out DIR [--config FILE]
      writes NAME.bin (signed canonical bytes), NAME.sig (raw signature) and GATEWAY.pem
      for every stored envelope of the meter, for checking with openssl alone
gtx audit verify --meter ID [--from ISO] [--to ISO] [--config FILE] [--json]
      re-verifies from the ledger alone every signed envelope of the meter, every stored
      reading against its signed original, the meter's hash chain, the commit's rules
      between each reading and its nearest stored neighbours across gaps (time forward,
      counters never down, energy within rated power) and who signed around each gateway
      hand-over; prints a report (JSON with --json). --from/--to bound reading timestamps:
      from <= ts < to, as 2026-11-01 (UTC midnight) or 2026-11-01T06:00:00Z / +07:00.
      Exit 0 pass, 1 fail

gtx audit rec ID [--config FILE] [--json]
      a certificate down to its signed readings: re-verifies the readings it names (signatures,
      signed originals, chain), checks its envelope list, and that the export energy those
      readings prove for its hour equals what is certified for that meter and hour.
      Exit 0 pass, 1 fail

  All of them read an existing ledger and never create one: with none at the configured
  path they exit 2.`;

// One usage text for the three: --help on any of them shows it (bin/args.ts).
const METERS = command('audit meters', USAGE, { config: { type: 'string' } });
const EXPORT = command('audit export', USAGE, { config: { type: 'string' }, meter: { type: 'string' }, out: { type: 'string' } });
const VERIFY = command('audit verify', USAGE, {
  config: { type: 'string' },
  meter: { type: 'string' },
  from: { type: 'string' },
  to: { type: 'string' },
  json: { type: 'boolean' },
});

const REC = command('audit rec', USAGE, { config: { type: 'string' }, json: { type: 'boolean' } });

export async function run(argv: string[]): Promise<void> {
  // --help, and a missing or unknown command, are handled as for every gtx command.
  return runSubcommand({ name: 'audit', usage: USAGE }, argv, { meters: (rest) => read('meters', rest), export: (rest) => read('export', rest), verify, rec });
}

/** `gtx audit rec ID`: settlement/audit/rec.ts. The id is the one positional argument. */
async function rec(argv: string[]): Promise<void> {
  const id = argv[0] && !argv[0].startsWith('-') ? argv[0] : undefined;
  const f = parseFlags(id ? argv.slice(1) : argv, REC);
  if (!id) throw new UsageError('give the certificate id: gtx audit rec rec_… (GET /api/v1/recs lists them)', REC.name);
  const ledger = await openExistingLedger(settlementConfigFrom(f.config), 'audit');
  let report;
  try {
    const bar = progressBar(`verifying the readings of ${id}`);
    report = await auditRec(ledger, id, bar.update);
    bar.done();
  } finally {
    await ledger.close();
  }
  if (!report) throw new UsageError(`no certificate ${id} in the ledger (GET /api/v1/recs lists them)`, REC.name);
  const r = report.rec;
  if (f.json) {
    console.log(JSON.stringify({ ...report, rec: { ...r, listing: r.listing && { ...r.listing, price: r.listing.price.toString() } }, result: report.ok ? 'PASS' : 'FAIL' }, null, 2));
  } else {
    const iso = (ms: number) => new Date(ms).toISOString();
    const lines = [
      `certificate ${r.id}: ${r.volumeWh} Wh ${r.energySource} from meter ${r.meter} (${r.generatorOwner}), ${iso(r.periodStartMs)} – ${iso(r.periodEndMs)}, ${r.status}, held by ${r.owner}${r.parent ? `, split from ${r.parent}` : ''}`,
      `readings seq ${r.firstSeq}..${r.lastSeq} in ${r.envelopes.length} envelopes: ${report.readings.ok ? 'signatures, signed originals and chain verify' : `${report.readings.failures.length} failures`}`,
      ...report.readings.failures.slice(0, 10).map((x) => `  ${x.kind}${x.seq !== undefined ? ` seq ${x.seq}` : ''}: ${x.detail}`),
      `envelope list: ${report.envelopesMatch ? 'matches the readings' : 'does NOT match the envelopes carrying those readings'}`,
      `energy ${iso(report.window.fromMs)} – ${iso(report.window.toMs)}: the readings prove ${report.provenWh} Wh exported; ${report.certificates.length} certificate(s) certify ${report.certifiedWh} Wh, the ledger records ${report.recordedWh} Wh certified${report.pendingWh ? `; ${report.pendingWh} Wh proven and not yet certified (below [recs] min_volume_wh, or for the next minting run)` : ''}`,
      ...report.overCertified.slice(0, 10).map((h) => `  hour ${iso(h.hourStartMs)}: ${h.recordedWh} Wh certified, the readings prove only ${h.provenWh} Wh`),
      `export the signed originals: gtx audit export --meter ${r.meter} --out DIR`,
      report.ok ? 'PASS' : 'FAIL',
    ];
    for (const l of lines) console.log(l);
  }
  if (!report.ok) process.exitCode = 1;
}

async function read(sub: 'meters' | 'export', rest: string[]): Promise<void> {
  switch (sub) {
    case 'meters': {
      const f = parseFlags(rest, METERS);
      const ledger = await openExistingLedger(settlementConfigFrom(f.config), 'audit');
      for (const m of await ledger.meters()) console.log(`${m.meter}\t${m.readings} readings\tlast seq ${m.lastSeq}`);
      await ledger.close();
      return;
    }
    case 'export': {
      const f = parseFlags(rest, EXPORT);
      const meter = required(f.meter, '--meter', EXPORT);
      const out = required(f.out, '--out', EXPORT);
      const ledger = await openExistingLedger(settlementConfigFrom(f.config), 'audit');
      try {
        const bar = progressBar(`exporting ${meter}`);
        const files = await exportMeterEnvelopes(ledger, meter, out, bar.update);
        bar.done();
        if (files.length === 0) {
          throw new UsageError(`no envelopes for meter ${meter} in the ledger (gtx audit meters lists the known ids)`, EXPORT.name);
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
  }
}

async function verify(argv: string[]): Promise<void> {
  const f = parseFlags(argv, VERIFY);
  const meter = required(f.meter, '--meter', VERIFY);
  const fromMs = f.from === undefined ? undefined : parseInstant(f.from, '--from');
  const toMs = f.to === undefined ? undefined : parseInstant(f.to, '--to');
  if (fromMs !== undefined && toMs !== undefined && fromMs >= toMs) {
    throw new UsageError(`--from (${f.from}) must be before --to (${f.to})`, VERIFY.name);
  }
  const cfg = settlementConfigFrom(f.config);
  const location = ledgerLocation(cfg);
  const ledger = await openExistingLedger(cfg, 'audit');
  let report: MeterAuditReport;
  try {
    const bar = progressBar(`verifying ${meter}`);
    report = await verifyMeter(ledger, meter, {
      ...(fromMs !== undefined ? { fromMs } : {}),
      ...(toMs !== undefined ? { toMs } : {}),
      onProgress: bar.update,
    });
    bar.done();
  } finally {
    await ledger.close();
  }
  if (report.readingsInLedger === 0) {
    throw new UsageError(`meter ${meter} has no readings in the ledger at ${location} (gtx audit meters lists the known ids)`, VERIFY.name);
  }
  const generatedAt = new Date().toISOString();
  if (f.json) {
    const result = report.ok ? 'PASS' : 'FAIL';
    console.log(JSON.stringify({ ...report, result, ledger: { engine: ledger.engine, location }, generatedAt }, null, 2));
  } else {
    console.log(formatReport(report, `${ledger.engine} ${location}`, generatedAt));
  }
  if (!report.ok) process.exitCode = 1;
}

/**
 * An ISO-8601 instant from the command line: a date (UTC midnight) or a date-time with Z or
 * an offset. A date-time without a zone is refused: it would silently mean the machine's zone.
 */
function parseInstant(s: string, flag: string): number {
  const m = /^(\d{4})-(\d{2})-(\d{2})(?:T(\d{2}):(\d{2})(?::(\d{2})(?:\.\d{1,3})?)?(Z|[+-]\d{2}:\d{2}))?$/.exec(s);
  const bad = (why: string): UsageError =>
    new UsageError(`${flag} "${s}" is not ${why}: use a date like 2026-11-01 (UTC) or a date-time with a zone like 2026-11-01T06:00:00Z`, VERIFY.name);
  if (!m) throw bad('an ISO-8601 date or date-time with a zone');
  const [y = 0, mo = 0, d = 0, h = 0, mi = 0, sec = 0] = m.slice(1, 7).map((x) => Number(x ?? 0));
  const day = new Date(Date.UTC(y, mo - 1, d));
  if (day.getUTCMonth() !== mo - 1 || day.getUTCDate() !== d || h > 23 || mi > 59 || sec > 59) throw bad('a real date and time');
  const ms = Date.parse(m[4] === undefined ? `${s}T00:00:00Z` : s);
  if (!Number.isFinite(ms)) throw bad('a valid instant');
  return ms;
}

function ledgerLocation(cfg: SettlementConfig): string {
  const url = cfg.ledger.databaseUrl;
  if (!url) return cfg.ledger.sqlitePath;
  try {
    const u = new URL(url);
    if (u.password) u.password = '***';
    return u.toString();
  } catch {
    return '(unparseable DATABASE_URL)';
  }
}

const MAX_LISTED = 50;

/** The plain-text report an auditor can file. */
export function formatReport(r: MeterAuditReport, ledger: string, generatedAt: string): string {
  const lines: string[] = [];
  const row = (label: string, value: string): void => {
    lines.push(`${`${label}:`.padEnd(20)}${value}`);
  };
  const plural = (n: number, one: string, many = `${one}s`): string => `${n} ${n === 1 ? one : many}`;
  lines.push('GridTokenX meter audit (gtx audit verify)', '');
  row('meter', r.meter);
  row('ledger', ledger);
  row(
    'time range',
    r.range.from === null && r.range.to === null
      ? 'all readings'
      : `${r.range.from ?? '(start)'} <= reading ts < ${r.range.to ?? '(end)'}`,
  );
  row('envelopes checked', `${r.envelopesChecked} (one Ed25519 signature each)`);
  const ranged = r.range.from !== null || r.range.to !== null;
  row(
    'readings checked',
    r.readingsChecked === 0
      ? `0 (no readings of this meter in the range; ${r.readingsInLedger} stored in all)`
      : `${r.readingsChecked}${ranged ? ` (of ${r.readingsInLedger} stored for this meter)` : ''}`,
  );
  if (r.firstSeq !== null && r.lastSeq !== null) {
    row('first reading', `seq ${r.firstSeq} at ${r.firstTs}`);
    row('last reading', `seq ${r.lastSeq} at ${r.lastTs}`);
  }
  if (r.energy) {
    const e = r.energy;
    row('energy', `import ${e.importWh} Wh (${e.firstImportWh} -> ${e.lastImportWh}), export ${e.exportWh} Wh (${e.firstExportWh} -> ${e.lastExportWh})`);
  }
  if (r.gaps.length === 0) {
    row('gaps', 'none');
  } else {
    const missing = r.gaps.reduce((n, g) => n + g.toSeq - g.fromSeq + 1, 0);
    row('gaps', `${plural(r.gaps.length, 'gap')}, ${plural(missing, 'seq')} missing (not failures: the ledger accepts late fills)`);
    for (const g of r.gaps.slice(0, MAX_LISTED)) {
      const seqs = g.fromSeq === g.toSeq ? `seq ${g.fromSeq}` : `seq ${g.fromSeq}-${g.toSeq}`;
      const signed = g.signedInLedger > 0 ? ` (${g.signedInLedger} still in a signed envelope: readings row removed)` : '';
      lines.push(`  ${seqs}${signed}`);
    }
    if (r.gaps.length > MAX_LISTED) lines.push(`  ... and ${r.gaps.length - MAX_LISTED} more (--json lists all)`);
  }
  const c = r.chainRules;
  const energyRule = c.ratedPowerW !== null ? `energy within ${c.ratedPowerW} W rated power` : 'energy check skipped';
  row(
    'chain rules',
    `${plural(c.pairsChecked, 'neighbouring pair')} (${c.acrossGaps} across gaps): time forward, counters never down, ${energyRule}`,
  );
  for (const why of c.skipped) lines.push(`  skipped ${why}`);
  if (r.handovers.length === 0) {
    row('hand-overs', 'none');
  } else {
    row('hand-overs', `${r.handovers.length} (each seq must be signed by the gateway holding the meter then)`);
    for (const h of r.handovers) lines.push(`  from seq ${h.fromSeq}: ${h.oldGateway} -> ${h.newGateway} (recorded ${h.at})`);
  }
  lines.push('gateway keys (SHA-256 of the SPKI DER; openssl pkey -pubin -in GW.pem -outform DER | openssl dgst -sha256):');
  for (const g of r.gateways) {
    lines.push(`  ${g.id}  ${g.status}  ${g.keyFingerprint ?? '(no key)'}  ${plural(g.envelopes, 'envelope')}`);
  }
  if (r.failures.length === 0) {
    row('failures', 'none');
  } else {
    row('failures', String(r.failures.length));
    for (const x of r.failures.slice(0, MAX_LISTED)) {
      const seq = x.seq === undefined ? null : x.neighbourSeq === undefined ? `seq ${x.seq}` : `seq ${x.seq} (after seq ${x.neighbourSeq})`;
      const where = [seq, x.envelopeId ? `envelope ${x.envelopeId.slice(0, 16)}` : null].filter(Boolean).join(', ');
      lines.push(`  [${x.kind}] ${where}: ${x.detail}`);
    }
    if (r.failures.length > MAX_LISTED) lines.push(`  ... and ${r.failures.length - MAX_LISTED} more (--json lists all)`);
  }
  lines.push('', r.ok ? 'RESULT: PASS' : `RESULT: FAIL (${plural(r.failures.length, 'problem')})`, `generated at ${generatedAt}`);
  return lines.join('\n');
}
