// `gtx simulate`: runs one simulated meter on Modbus TCP (or RTU on a serial port) until SIGINT/SIGTERM.
import { pathToFileURL } from 'node:url';
// The one command-line mechanism of gtx: --help on stdout, bad input as one line and a pointer.
import { command, failureLines, HelpRequested, parseFlags, UsageError } from '../bin/args.ts';
import { getDefinition, listDefinitions, UnknownDeviceError } from './catalog.ts';
import { createSimClock } from './clock.ts';
import { DEFAULT_TIME_ZONE, isProfileName, localHour, PROFILE_NAMES, type ProfileName } from './profiles.ts';
import { BusSimulator } from './bus-simulator.ts';
import { MeterSimulator } from './simulator.ts';
import { DefinitionError, usesSunSpec, type DeviceDefinition } from './definition.ts';

export const SIMULATE_USAGE = `usage: gtx simulate --model <id|alias|file> --profile <${PROFILE_NAMES.join('|')}> [options]
       gtx simulate --list

Serves a simulated energy meter over Modbus TCP, or over Modbus RTU on a serial port.

options:
  --model <id>       meter model from the catalog (see --list), or a .json/.toml definition file
  --profile <name>   household (load), pv (generation, negative W) or prosumer (net)
  --host <addr>      address to listen on (default 127.0.0.1)
  --port <n>         TCP port, 0 = any free port (default 5020)
  --unit <n>         Modbus unit id to answer (default 1)
  --serial <path>    serve Modbus RTU on this serial port instead of TCP (e.g. one end of
                     socat -d -d pty,raw,echo=0 pty,raw,echo=0)
  --baud <n>         serial speed (default 9600; 8N1)
  --speed <x>        simulated seconds per real second (default 1)
  --seed <n>         noise seed; same seed, same curve (default 1)
  --rated-w <W>      household peak load / PV peak generation in W
  --time-zone <tz>   IANA zone of the daily profile (default ${DEFAULT_TIME_ZONE})
  --list             print the catalog's meter models and exit
  -h, --help         show this help`;

/** Where the command writes and what stops it; the defaults are the process's own. */
export interface SimulateIo {
  stdout: (line: string) => void;
  stderr: (line: string) => void;
  /** Aborting stops the simulator, like SIGINT does. */
  signal?: AbortSignal;
  /** Listen for SIGINT/SIGTERM (default true). */
  handleSignals?: boolean;
  /** Status line period in real ms (default 5000). */
  statusEveryMs?: number;
}

interface SimulateArgs {
  definition: DeviceDefinition;
  profile: ProfileName;
  host: string;
  port: number;
  unitId: number;
  serial: { path: string; baudRate: number } | undefined;
  speed: number;
  seed: number;
  ratedW: number | undefined;
  timeZone: string;
}

function parseNumber(flag: string, text: string | undefined, check: (n: number) => boolean, expected: string): number | undefined {
  if (text === undefined) return undefined;
  const n = Number(text);
  if (text.trim() === '' || !Number.isFinite(n) || !check(n)) {
    throw new UsageError(`--${flag} must be ${expected}, got ${JSON.stringify(text)}`, SIMULATE.name);
  }
  return n;
}

const SIMULATE = command('simulate', SIMULATE_USAGE, {
  model: { type: 'string' },
  profile: { type: 'string' },
  host: { type: 'string' },
  port: { type: 'string' },
  unit: { type: 'string' },
  serial: { type: 'string' },
  baud: { type: 'string' },
  speed: { type: 'string' },
  seed: { type: 'string' },
  'rated-w': { type: 'string' },
  'time-zone': { type: 'string' },
  list: { type: 'boolean' },
});

/** The arguments, or 'list'; throws HelpRequested for --help/-h and UsageError for bad input. */
function parse(argv: string[]): SimulateArgs | 'list' {
  const values = parseFlags(argv, SIMULATE);
  if (values.list) return 'list';

  if (values.model === undefined) throw new UsageError('--model is required', SIMULATE.name);
  if (values.profile === undefined) throw new UsageError('--profile is required', SIMULATE.name);
  let definition: DeviceDefinition;
  try {
    definition = getDefinition(values.model);
  } catch (err) {
    if (err instanceof UnknownDeviceError || err instanceof DefinitionError) throw new UsageError(err.message, SIMULATE.name);
    throw err;
  }
  if (!isProfileName(values.profile)) {
    throw new UsageError(`unknown profile ${JSON.stringify(values.profile)}; use one of ${PROFILE_NAMES.join(', ')}`, SIMULATE.name);
  }
  const timeZone = values['time-zone'] ?? DEFAULT_TIME_ZONE;
  try {
    localHour(0, timeZone);
  } catch {
    throw new UsageError(`unknown time zone ${JSON.stringify(timeZone)}; use an IANA name such as Asia/Bangkok`, SIMULATE.name);
  }
  const integer = (lo: number, hi: number) => (n: number) => Number.isInteger(n) && n >= lo && n <= hi;
  return {
    definition,
    profile: values.profile,
    host: values.host ?? '127.0.0.1',
    port: parseNumber('port', values.port, integer(0, 65535), 'an integer 0..65535') ?? 5020,
    unitId: parseNumber('unit', values.unit, integer(0, 255), 'an integer 0..255') ?? 1,
    serial: values.serial === undefined ? undefined : { path: values.serial, baudRate: parseNumber('baud', values.baud, integer(300, 921_600), 'a whole number 300..921600') ?? 9600 },
    speed: parseNumber('speed', values.speed, (n) => n > 0, 'a positive number') ?? 1,
    seed: parseNumber('seed', values.seed, integer(-(2 ** 31), 2 ** 32 - 1), 'an integer') ?? 1,
    ratedW: parseNumber('rated-w', values['rated-w'], (n) => n > 0, 'a positive number of watts'),
    timeZone,
  };
}

function statusLine(sim: MeterSimulator): string {
  const s = sim.snapshot();
  return `${new Date(s.atMs).toISOString()} power ${s.powerW.toFixed(0)} W  import ${s.importKWh.toFixed(3)} kWh  export ${s.exportKWh.toFixed(3)} kWh`;
}

/** Runs the command and resolves with its exit code (0 ok, 1 runtime failure, 2 bad usage). */
export async function simulateCommand(argv: string[], io: SimulateIo): Promise<number> {
  let args: SimulateArgs | 'list';
  try {
    args = parse(argv);
  } catch (err) {
    if (err instanceof HelpRequested) {
      io.stdout(err.usage);
      return 0;
    }
    if (!(err instanceof UsageError)) throw err;
    for (const line of failureLines(err).lines) io.stderr(line);
    return 2;
  }
  if (args === 'list') {
    for (const def of listDefinitions()) {
      const aliases = def.aliases?.length ? ` (${def.aliases.join(', ')})` : '';
      const sunspec = usesSunSpec(def) ? ', SunSpec' : '';
      io.stdout(`${def.id}${aliases}  ${def.vendor} ${def.model}, ${def.phases}-phase${sunspec}`);
    }
    return 0;
  }

  const sim = new MeterSimulator({
    definition: args.definition,
    profile: args.profile,
    seed: args.seed,
    ratedW: args.ratedW,
    timeZone: args.timeZone,
    clock: createSimClock({ speed: args.speed }).now,
  });
  // RTU: the meter alone on a serial line, as the bus simulator serves it (one unit id).
  const line = args.serial ? new BusSimulator(new Map([[args.unitId, sim]])) : undefined;
  let where: string;
  try {
    if (line && args.serial) {
      await line.openSerial({ path: args.serial.path, baudRate: args.serial.baudRate });
      where = `modbus-rtu://${args.serial.path}@${args.serial.baudRate}/8N1`;
    } else {
      const address = await sim.start({ host: args.host, port: args.port, unitId: args.unitId });
      where = `modbus-tcp://${address.host}:${address.port}`;
    }
  } catch (err) {
    io.stderr(`gtx simulate: ${err instanceof Error ? err.message : String(err)}`);
    return 1;
  }
  io.stdout(`simulating ${args.definition.id} (${args.profile}) on ${where} unit ${args.unitId}`);
  const layout = sim.sunspecLayout;
  if (layout !== undefined) {
    io.stdout(`SunSpec marker at holding register ${layout.base}; models ${layout.models.map((m) => `${m.id} at ${m.address}`).join(', ')}`);
  }
  io.stdout(statusLine(sim));

  await new Promise<void>((resolve) => {
    const status = setInterval(() => io.stdout(statusLine(sim)), io.statusEveryMs ?? 5000);
    const done = () => {
      clearInterval(status);
      process.off('SIGINT', done);
      process.off('SIGTERM', done);
      io.signal?.removeEventListener('abort', done);
      resolve();
    };
    if (io.handleSignals ?? true) {
      process.once('SIGINT', done);
      process.once('SIGTERM', done);
    }
    if (io.signal?.aborted) done();
    else io.signal?.addEventListener('abort', done, { once: true });
  });
  await line?.close();
  await sim.stop();
  io.stdout('simulator stopped');
  return 0;
}

/** Entry for `gtx simulate …`: sets process.exitCode, never throws for bad input. */
export async function runSimulate(argv: string[]): Promise<void> {
  process.exitCode = await simulateCommand(argv, {
    stdout: (line) => process.stdout.write(`${line}\n`),
    stderr: (line) => process.stderr.write(`${line}\n`),
  });
}

// Runnable on its own too: `npx tsx devices/simulate-cli.ts --model sdm120 --profile pv`.
if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  await runSimulate(process.argv.slice(2));
}
