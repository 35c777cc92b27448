import { readFileSync, writeFileSync } from 'node:fs';
import { createInterface } from 'node:readline/promises';
import { getDefinition } from '../../devices/catalog.ts';
import { busUrl, loadGatewayConfig, type BusConfig, type GatewayConfig, type Parity } from '../../gateway/config.ts';
import { parseUnits, scanBus, type FoundUnit } from '../../gateway/scan.ts';
import { CliError, command, parseFlags, UsageError } from '../args.ts';
import { progressBar } from '../progress.ts';

export const SCAN = command(
  'gateway scan',
  `gtx gateway scan (--serial PATH [--baud 9600] [--parity none] [--data-bits 8] [--stop-bits 1] | --tcp HOST[:PORT])
                 [--units 1-247] [--timeout-ms 200] [--yes] [--config FILE]
      probe each unit id on an RS-485 line or a Modbus TCP endpoint, identify each responder's
      model from the catalog, list them, and add them to ./gateway.toml after you confirm

  --serial PATH    the RS-485 adapter, e.g. /dev/ttyUSB0 (Modbus RTU)
  --tcp HOST:PORT  a Modbus TCP meter or RS-485/TCP bridge (port 502 unless given)
  --units LIST     unit ids to probe, e.g. 1-247 (default) or 1,2,10-12
  --timeout-ms N   how long a unit id may stay silent before it counts as empty (default 200)
  --yes            add what was found without asking (for scripts)
  --config FILE    the gateway config to add the meters to (default ./gateway.toml)`,
  {
    serial: { type: 'string' },
    baud: { type: 'string' },
    parity: { type: 'string' },
    'data-bits': { type: 'string' },
    'stop-bits': { type: 'string' },
    tcp: { type: 'string' },
    units: { type: 'string' },
    'timeout-ms': { type: 'string' },
    yes: { type: 'boolean' },
    config: { type: 'string' },
  },
);

type ScanFlags = { serial?: string; baud?: string; parity?: string; 'data-bits'?: string; 'stop-bits'?: string; tcp?: string };

function busFromFlags(f: ScanFlags): BusConfig {
  if ((f.serial === undefined) === (f.tcp === undefined)) throw new UsageError('give either --serial PATH (Modbus RTU) or --tcp HOST[:PORT] (Modbus TCP)', SCAN.name);
  const int = (v: string | undefined, name: string, dflt: number, ok: (n: number) => boolean) => {
    if (v === undefined) return dflt;
    const n = Number(v);
    if (!Number.isInteger(n) || !ok(n)) throw new UsageError(`--${name} "${v}" is not valid`, SCAN.name);
    return n;
  };
  if (f.tcp !== undefined) {
    const m = /^(?:\[([^\]]+)\]|([^:]+))(?::(\d{1,5}))?$/.exec(f.tcp);
    const port = m?.[3] === undefined ? 502 : Number(m[3]);
    if (!m || port < 1 || port > 65535) throw new UsageError(`--tcp must look like 192.168.1.50 or 192.168.1.50:502, got "${f.tcp}"`, SCAN.name);
    return { kind: 'tcp', name: 'scan', host: (m[1] ?? m[2])!, port, connectTimeoutMs: 3_000 };
  }
  const parity = f.parity ?? 'none';
  if (!['none', 'even', 'odd'].includes(parity)) throw new UsageError(`--parity must be none, even or odd, got "${parity}"`, SCAN.name);
  return {
    kind: 'rtu',
    name: 'scan',
    path: f.serial!,
    baudRate: int(f.baud, 'baud', 9600, (n) => n >= 300 && n <= 921_600),
    parity: parity as Parity,
    dataBits: int(f['data-bits'], 'data-bits', 8, (n) => n === 7 || n === 8) as 7 | 8,
    stopBits: int(f['stop-bits'], 'stop-bits', 1, (n) => n === 1 || n === 2) as 1 | 2,
  };
}

/** The config's bus for the same port or endpoint, if it has one. */
function sameBus(cfg: GatewayConfig, bus: BusConfig): BusConfig | undefined {
  return cfg.buses.find((b) => (b.kind === 'rtu' && bus.kind === 'rtu' ? b.path === bus.path : b.kind === 'tcp' && bus.kind === 'tcp' && b.host === bus.host && b.port === bus.port));
}

function tomlFor(cfg: GatewayConfig, bus: BusConfig, existing: BusConfig | undefined, units: FoundUnit[]): string {
  const name = existing?.name ?? freeName(cfg, bus.kind === 'rtu' ? 'rs485' : 'tcp');
  const lines = [`\n# Added by gtx gateway scan on ${new Date().toISOString()} from ${busUrl(bus)}: check each role (and energy_source) before enrolling.`];
  if (!existing) {
    lines.push('[[buses]]', `name = "${name}"`);
    if (bus.kind === 'rtu') lines.push(`serial = ${JSON.stringify(bus.path)}`, `baud = ${bus.baudRate}`, `parity = "${bus.parity}"`, `data_bits = ${bus.dataBits}`, `stop_bits = ${bus.stopBits}`);
    else lines.push(`tcp = ${JSON.stringify(`${bus.host.includes(':') ? `[${bus.host}]` : bus.host}:${bus.port}`)}`);
    lines.push('');
  }
  for (const u of units) {
    const def = getDefinition(u.identity.best[0]!);
    const generator = def.notMeasured?.includes('importEnergy') === true;
    const why = u.identity.best.length > 1 ? `one of ${u.identity.best.join(', ')}: pick the one on the nameplate` : 'identified by scan';
    lines.push(
      '[[meters]]',
      `id = "${meterIdFor(cfg, name, u.unitId)}"`,
      `model = "${def.id}"   # ${why}`,
      `bus = "${name}"`,
      `unit_id = ${u.unitId}`,
      `role = "${generator ? 'generation' : 'consumption'}"   # consumption | generation | bidirectional`,
      ...(generator ? ['energy_source = "Solar"   # Solar | Wind | Hydro | Geothermal | Biomass | Other'] : []),
      '',
    );
  }
  return lines.join('\n');
}

function freeName(cfg: GatewayConfig, base: string): string {
  for (let n = 1; ; n++) {
    const name = n === 1 ? base : `${base}-${n}`;
    if (!cfg.buses.some((b) => b.name === name)) return name;
  }
}

function meterIdFor(cfg: GatewayConfig, busName: string, unitId: number): string {
  const safe = busName.replace(/[^A-Za-z0-9._-]/g, '-');
  return `${cfg.id}-${safe}-${unitId}`;
}

async function confirm(question: string): Promise<boolean> {
  const rl = createInterface({ input: process.stdin, output: process.stdout });
  try {
    return /^y(es)?$/i.test((await rl.question(question)).trim());
  } finally {
    rl.close();
  }
}

export async function scan(argv: string[], configPath: (flag: string | undefined) => string): Promise<void> {
  const f = parseFlags(argv, SCAN);
  const bus = busFromFlags(f);
  let units: number[];
  try {
    units = parseUnits(f.units ?? '1-247');
  } catch (e) {
    throw new UsageError(`--units: ${(e as Error).message}`, SCAN.name);
  }
  const timeoutMs = f['timeout-ms'] === undefined ? 200 : Number(f['timeout-ms']);
  if (!Number.isInteger(timeoutMs) || timeoutMs < 20 || timeoutMs > 10_000) throw new UsageError(`--timeout-ms must be a whole number from 20 to 10000, got "${f['timeout-ms']}"`, SCAN.name);
  const config = configPath(f.config);
  const cfg = loadGatewayConfig(config);

  console.log(`scanning ${busUrl(bus)}, unit ids ${f.units ?? '1-247'} (${units.length}), ${timeoutMs} ms each`);
  const bar = progressBar('probing');
  let found: FoundUnit[];
  try {
    found = await scanBus(bus, units, { timeoutMs, onProgress: (done, total) => bar.update(done, total) });
  } catch (e) {
    throw new CliError((e as Error).message);
  } finally {
    bar.done();
  }
  if (found.length === 0) {
    console.log(`no unit answered on ${busUrl(bus)}: check the wiring (A/B), baud rate and parity, and that the meters are powered`);
    return;
  }
  const existing = sameBus(cfg, bus);
  const fresh: FoundUnit[] = [];
  for (const u of found) {
    const known = existing && cfg.meters.find((m) => m.bus === existing.name && m.unitId === u.unitId);
    const what = u.identity.best.length === 0 ? 'not in the catalog (answers, but no model fits)' : u.identity.best.join(' or ');
    console.log(`unit ${String(u.unitId).padStart(3)}: ${what}${known ? ` — already in ${config} as ${known.id}` : ''}`);
    if (u.identity.ambiguity) console.log(`          ${u.identity.ambiguity}`);
    if (!known && u.identity.best.length > 0) fresh.push(u);
  }
  if (fresh.length === 0) {
    console.log('nothing new to add');
    return;
  }
  const text = tomlFor(cfg, bus, existing, fresh);
  if (!f.yes) {
    if (!process.stdin.isTTY) {
      console.log(`run again with --yes to add ${fresh.length} meter(s) to ${config}`);
      return;
    }
    if (!(await confirm(`add ${fresh.length} meter(s) to ${config}? [y/N] `))) {
      console.log('nothing written');
      return;
    }
  }
  const before = readFileSync(config, 'utf8');
  writeFileSync(config, before + text);
  try {
    loadGatewayConfig(config);
  } catch (e) {
    writeFileSync(config, before); // never leave a config the gateway cannot read
    throw new CliError(`the meters found could not be added to ${config}: ${(e as Error).message}`);
  }
  console.log(`added ${fresh.length} meter(s) to ${config}; check each role, then: gtx gateway test`);
}
