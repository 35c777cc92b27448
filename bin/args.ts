import { parseArgs, type ParseArgsConfig } from 'node:util';
import { closest } from '../protocol/config-keys.ts';

/**
 * The one way every `gtx` command reads its command line:
 * - `--help` / `-h` anywhere: the command's usage on stdout, exit 0 (HelpRequested);
 * - bad input: one line naming the fix, then `see: gtx <command> --help`, exit 2 (UsageError);
 * - a failure the operator can act on (a port in use, an unreachable settlement): one line, exit 2 (CliError).
 * bin/cli.ts turns these into output and exit codes (failureLines); so does `gtx simulate`.
 */

type Options = NonNullable<ParseArgsConfig['options']>;

/** A command as typed after `gtx` ("settlement run"), its usage text and its flags. */
export interface Command<O extends Options = Options> {
  readonly name: string;
  readonly usage: string;
  readonly options: O;
}

export function command<O extends Options>(name: string, usage: string, options: O): Command<O> {
  return { name, usage, options };
}

/** A failure the operator can act on: one line on stderr (`gtx: …`), exit code 2, no stack trace. */
export class CliError extends Error {
  override readonly name: string = 'CliError';
}

/** Bad command-line input: one line naming the fix and a pointer to the command's --help; exit 2. */
export class UsageError extends CliError {
  override readonly name = 'UsageError';
  constructor(
    message: string,
    /** As typed after `gtx`, e.g. "settlement run"; '' for gtx itself. */
    readonly command: string,
  ) {
    super(message);
  }
}

/** `--help` or `-h` was given: the usage goes to stdout and the exit code is 0. */
export class HelpRequested extends Error {
  override readonly name = 'HelpRequested';
  constructor(readonly usage: string) {
    super('help requested');
  }
}

/** Error names (from modules that cannot import this one) that are bad input, not bugs: one line, exit 2. */
const OPERATOR_ERRORS = new Set(['ConfigError', 'GatewayConfigError', 'UnknownDeviceError', 'EnrollError']);

/**
 * What to print on stderr for a failure, and the exit code: UsageError two lines (message and
 * pointer), other operator errors one line, exit 2; anything else is a bug: one line, exit 1
 * (GTX_DEBUG=1 adds the stack).
 */
export function failureLines(e: unknown): { lines: string[]; exitCode: 1 | 2 } {
  const oneLine = (s: string) => s.replace(/\s*\n\s*/g, ' ');
  if (e instanceof UsageError) return { lines: [`gtx: ${oneLine(e.message)}`, `see: ${['gtx', e.command, '--help'].filter(Boolean).join(' ')}`], exitCode: 2 };
  if (e instanceof CliError || (e instanceof Error && OPERATOR_ERRORS.has(e.name))) return { lines: [`gtx: ${oneLine(e.message)}`], exitCode: 2 };
  const lines = [`gtx: ${e instanceof Error ? oneLine(e.message) : String(e)}`];
  if (process.env.GTX_DEBUG && e instanceof Error && e.stack) lines.push(e.stack);
  return { lines, exitCode: 1 };
}

/** Whether the user asked for help: `--help` or `-h` before a `--`. */
export function wantsHelp(argv: readonly string[]): boolean {
  for (const a of argv) {
    if (a === '--') return false;
    if (a === '--help' || a === '-h') return true;
  }
  return false;
}

const flagList = (options: Options) =>
  Object.keys(options)
    .map((o) => `--${o}`)
    .join(', ');

/** node:util's parse errors, reworded to say what to type instead. */
function reword(e: unknown, cmd: Command): string {
  const err = e as Error & { code?: string };
  const msg = err.message ?? String(e);
  const quoted = /'([^']*)'/.exec(msg)?.[1] ?? '';
  const known = Object.keys(cmd.options);
  switch (err.code) {
    case 'ERR_PARSE_ARGS_UNKNOWN_OPTION': {
      const flag = quoted.replace(/^-+/, '').split('=')[0] ?? '';
      const guess = closest(flag, known);
      const hint = guess ? `did you mean --${guess}?` : known.length ? `its options: ${flagList(cmd.options)}` : 'it takes no options';
      return `unknown option ${quoted.startsWith('-') ? quoted : `--${quoted}`} for gtx ${cmd.name}; ${hint}`;
    }
    case 'ERR_PARSE_ARGS_INVALID_OPTION_VALUE': {
      const flag = /--[\w-]+/.exec(msg)?.[0] ?? quoted;
      if (/argument missing/.test(msg)) return `${flag} needs a value, as in ${flag} ${valueName(cmd, flag)}`;
      if (/does not take an argument/.test(msg)) return `${flag} takes no value: write just ${flag}`;
      return `${flag}: ${msg}`;
    }
    case 'ERR_PARSE_ARGS_UNEXPECTED_POSITIONAL':
      return `unexpected argument "${quoted}": gtx ${cmd.name} takes only --options${known.length ? ` (${flagList(cmd.options)})` : ''}`;
    default:
      return msg;
  }
}

/** The placeholder the usage text shows after `flag` ("--data DIR" → "DIR"), else VALUE. */
function valueName(cmd: Command, flag: string): string {
  const m = new RegExp(`${flag}[ =]([A-Z][A-Z_:|0-9]*|<[^>]+>)`).exec(cmd.usage);
  return m?.[1] ?? 'VALUE';
}

/**
 * The command's flags, strictly (unknown options and stray arguments are refused);
 * `--help`/`-h` throws HelpRequested with the command's usage.
 */
export function parseFlags<O extends Options>(argv: string[], cmd: Command<O>) {
  if (wantsHelp(argv)) throw new HelpRequested(cmd.usage);
  try {
    return parseArgs({ args: argv, options: cmd.options, strict: true, allowPositionals: false }).values;
  } catch (e) {
    throw new UsageError(reword(e, cmd), cmd.name);
  }
}

export function required(value: string | undefined, flag: string, cmd: Command): string {
  if (!value) throw new UsageError(`${flag} is required`, cmd.name);
  return value;
}

export function positiveNumber(value: string | undefined, flag: string, cmd: Command, fallback: number): number {
  if (value === undefined) return fallback;
  const n = Number(value);
  if (value.trim() === '' || !Number.isFinite(n) || n <= 0) throw new UsageError(`${flag} must be a positive number, got "${value}"`, cmd.name);
  return n;
}

/** A TCP port: a whole number 0-65535 (0: any free port). */
export function portNumber(value: string | undefined, flag: string, cmd: Command, fallback: number): number {
  if (value === undefined) return fallback;
  const n = Number(value);
  if (value.trim() === '' || !Number.isInteger(n) || n < 0 || n > 65535) {
    throw new UsageError(`${flag} must be a port number from 0 to 65535, got "${value}"`, cmd.name);
  }
  return n;
}

/** "HOST:PORT" or "[v6]:PORT" (port 0: any free port). */
export function listenAddress(value: string, flag: string, cmd: Command): { host: string; port: number } {
  const m = /^(?:\[([^\]]+)\]|([^:\s]+)):(\d{1,5})$/.exec(value);
  const port = m ? Number(m[3]) : NaN;
  if (!m || port > 65535) throw new UsageError(`${flag} must be HOST:PORT, as in ${flag} 127.0.0.1:${flag.includes('mqtt') ? '18830' : '18080'}; got "${value}"`, cmd.name);
  return { host: (m[1] ?? m[2])!, port };
}

/**
 * Runs the subcommand `argv[0]` of a command group ("settlement", "gateway", "audit"): the
 * group's --help lists them all; a missing or unknown one is a UsageError naming the choices.
 */
export async function runSubcommand(
  group: { name: string; usage: string },
  argv: string[],
  subcommands: Record<string, (argv: string[]) => Promise<void>>,
): Promise<void> {
  const [sub, ...rest] = argv;
  const names = Object.keys(subcommands);
  if (sub === '--help' || sub === '-h' || sub === 'help') throw new HelpRequested(group.usage);
  if (sub === undefined || sub.startsWith('-')) throw new UsageError(`${group.name} needs a command first: one of ${names.join(', ')}`, group.name);
  const run = Object.hasOwn(subcommands, sub) ? subcommands[sub] : undefined;
  if (!run) {
    const guess = closest(sub, names);
    const kind = group.name.split(' ').at(-1);
    throw new UsageError(`unknown ${kind} command "${sub}"; ${guess ? `did you mean ${guess}?` : `one of ${names.join(', ')}`}`, group.name);
  }
  return run(rest);
}
