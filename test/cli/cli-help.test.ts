import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { gtxAsync } from '../support/cli.ts';
import { tempDir } from '../support/tmp.ts';

/**
 * Every `gtx` command answers --help with its usage on stdout (exit 0), and bad input with one
 * line naming the fix and a pointer to --help on stderr (exit 2): the real CLI, spawned.
 */

const dir = tempDir('gtx-cli-help-');
afterAll(() => dir.remove());

// cwd without config/settlement.toml, and no DATABASE_URL: nothing here may open a ledger anyway.
const gtx = (args: string[]) => gtxAsync(args, { cwd: dir.path, withoutDatabaseUrl: true });

/** Runs `jobs` two at a time: a busy 2-core machine, and each job is a node process. */
async function inPairs<T, R>(items: T[], job: (item: T) => Promise<R>): Promise<R[]> {
  const out: R[] = new Array<R>(items.length);
  let next = 0;
  const worker = async () => {
    while (next < items.length) {
      const i = next++;
      out[i] = await job(items[i]!);
    }
  };
  await Promise.all([worker(), worker()]);
  return out;
}

/** Each subcommand and a line its usage must contain. */
const SUBCOMMANDS: Array<[string[], string]> = [
  [['demo'], 'gtx demo [--data DIR]'],
  [['simulate'], 'gtx simulate --model'],
  [['settlement'], 'gtx settlement run [--config FILE]'],
  [['settlement', 'run'], '--mqtt-listen HOST:PORT'],
  [['settlement', 'enroll-code'], 'gtx settlement enroll-code --owner ACCOUNT'],
  [['settlement', 'revoke-gateway'], 'gtx settlement revoke-gateway --id ID'],
  [['settlement', 'mosquitto-acl'], 'gtx settlement mosquitto-acl --out DIR'],
  [['settlement', 'api-key'], 'gtx settlement api-key list'],
  [['settlement', 'api-key', 'create'], 'gtx settlement api-key create --role admin|utility'],
  [['settlement', 'api-key', 'list'], 'gtx settlement api-key list'],
  [['settlement', 'api-key', 'revoke'], 'gtx settlement api-key revoke --id ID'],
  [['gateway'], 'gtx gateway requeue [--config FILE] [--reason REASON]'],
  [['gateway', 'init'], '--reuse-key'],
  [['gateway', 'scan'], 'gtx gateway scan (--serial PATH'],
  [['gateway', 'enroll'], 'gtx gateway enroll --url SETTLEMENT_HTTP_URL --code CODE [--config FILE]'],
  [['gateway', 'test'], 'gtx gateway test [--no-publish] [--config FILE]'],
  [['gateway', 'run'], 'gtx gateway run [--config FILE]'],
  [['gateway', 'status'], 'gtx gateway status [--config FILE]'],
  [['gateway', 'requeue'], 'gtx gateway requeue [--config FILE] [--reason REASON]'],
  [['market'], 'gtx market price --supply WH --demand WH'],
  [['market', 'price'], 'gtx market price --supply WH --demand WH'],
  [['market', 'clear'], 'gtx market clear --book FILE'],
  [['market', 'deposit'], 'gtx market deposit|withdraw --account ID --amount DECIMAL'],
  [['market', 'withdraw'], 'gtx market deposit|withdraw --account ID --amount DECIMAL'],
  [['market', 'balances'], 'gtx market balances [--account ID]'],
  [['market', 'auction'], 'gtx market auction --market ID'],
  [['market', 'check'], 'gtx market check [--config FILE]'],
  [['audit'], 'gtx audit meters'],
  [['audit', 'meters'], 'gtx audit meters [--config FILE]'],
  [['audit', 'export'], 'gtx audit export --meter ID --out DIR'],
  [['audit', 'verify'], 'gtx audit verify --meter ID'],
  [['audit', 'rec'], 'gtx audit rec ID [--config FILE] [--json]'],
];

describe('gtx --help and bad input, for every command', () => {
  it('gtx --help lists the commands', async () => {
    const r = await gtx(['--help']);
    expect([r.status, r.stderr]).toEqual([0, '']);
    expect(r.stdout).toContain('gtx settlement run [--config FILE] [--data DIR] [--mqtt-listen HOST:PORT] [--http-listen HOST:PORT]');
  });

  it('every subcommand answers --help (and -h) with its usage on stdout, exit 0', { timeout: 180_000 }, async () => {
    const runs = await inPairs(
      [
        ...SUBCOMMANDS.map(([args, line]) => ({ args: [...args, '--help'], line })),
        // -h is the same switch in bin/args.ts: a few suffice.
        ...SUBCOMMANDS.filter(([args]) => ['demo', 'simulate', 'settlement run', 'gateway init', 'audit verify'].includes(args.join(' '))).map(
          ([args, line]) => ({ args: [...args, '-h'], line }),
        ),
      ],
      async (c) => ({ ...c, r: await gtx(c.args) }),
    );
    for (const { args, line, r } of runs) {
      expect([args.join(' '), r.status, r.stderr]).toEqual([args.join(' '), 0, '']);
      expect(r.stdout, args.join(' ')).toContain(line);
    }
  });

  it('every subcommand refuses an unknown option with exit 2, at most two lines and a pointer to its --help', { timeout: 180_000 }, async () => {
    const runs = await inPairs(SUBCOMMANDS, async ([args]) => ({ args, r: await gtx([...args, '--bogus']) }));
    for (const { args, r } of runs) {
      const name = args.join(' ');
      const lines = r.stderr.trimEnd().split('\n');
      expect([name, r.status, r.stdout]).toEqual([name, 2, '']);
      expect(lines.length, r.stderr).toBeLessThanOrEqual(2);
      expect(lines[0], name).toMatch(/^gtx: (unknown option --bogus for gtx |.*needs a command first)/);
      // A group (gtx settlement --bogus) points at its own help, a command at its own.
      expect(lines[1], name).toBe(`see: gtx ${name} --help`);
    }
  });

  it('says what to change for a missing value, a bad number, a typo and an unknown command', { timeout: 120_000 }, async () => {
    const cases: Array<[string[], string, string]> = [
      [['settlement', 'run', '--config'], 'gtx: --config needs a value, as in --config FILE', 'settlement run'],
      [['settlement', 'run', '--cofig', 'x.toml'], 'gtx: unknown option --cofig for gtx settlement run; did you mean --config?', 'settlement run'],
      [['settlement', 'run', '--mqtt-listen', '1883'], 'gtx: --mqtt-listen must be HOST:PORT, as in --mqtt-listen 127.0.0.1:18830; got "1883"', 'settlement run'],
      [['settlement', 'enroll-code', '--owner', 'a', '--ttl-hours', 'soon'], 'gtx: --ttl-hours must be a positive number, got "soon"', 'settlement enroll-code'],
      [['settlement', 'rnu'], 'gtx: unknown settlement command "rnu"; did you mean run?', 'settlement'],
      [['settlement'], 'gtx: settlement needs a command first: one of run, enroll-code, revoke-gateway, api-key, mosquitto-acl', 'settlement'],
      [['settlement', 'api-key', 'rotate'], 'gtx: unknown api-key command "rotate"; one of create, list, revoke', 'settlement api-key'],
      [['gateway', 'init', '--id', 'no spaces'], 'gtx: --id: invalid gateway id "no spaces": use 1-64 letters, digits, \'.\', \'_\' or \'-\', starting with a letter or digit', 'gateway init'],
      [['gateway', 'enroll', '--config', 'gw.toml', '--url', '127.0.0.1:8080', '--code', 'X'], 'gtx: --url must start with http:// or https://, e.g. http://127.0.0.1:8080', 'gateway enroll'],
      [['demo', '--homes', '0'], 'gtx: --homes must be a positive number, got "0"', 'demo'],
      [['demo', '--fresh=yes'], 'gtx: --fresh takes no value: write just --fresh', 'demo'],
      [['demo', 'now'], 'gtx: unexpected argument "now": gtx demo takes only --options (--data, --homes, --speed, --mqtt-port, --http-port, --fresh, --duration)', 'demo'],
      [['simulate', '--model', 'sdm120', '--profile', 'pv', '--port', 'x'], 'gtx: --port must be an integer 0..65535, got "x"', 'simulate'],
      [['audit', 'verify', '--meter', 'm', '--from', 'yesterday'], 'gtx: --from "yesterday" is not an ISO-8601 date or date-time with a zone: use a date like 2026-11-01 (UTC) or a date-time with a zone like 2026-11-01T06:00:00Z', 'audit verify'],
      [['settlment', 'run'], 'gtx: unknown command "settlment"; did you mean settlement?', ''],
      [['market', 'price', '--supply', '1.5', '--demand', '2'], 'gtx: --supply must be a whole number of Wh, got "1.5"', 'market price'],
      [['market', 'clear'], 'gtx: --book is required', 'market clear'],
      [['market', 'deposit', '--account', 'a', '--amount', '1.234'], 'gtx: --amount: THB amount "1.234" has 3 decimals; at most 2 allowed', 'market deposit'],
      [['market', 'check'], `gtx: no ledger at ${join(dir.path, 'data', 'ledger.sqlite')}: check --config / [ledger] sqlite_path, or DATABASE_URL`, 'market check'],
    ];
    const runs = await inPairs(cases, async ([args, line, cmd]) => ({ args, line, cmd, r: await gtx(args) }));
    for (const { args, line, cmd, r } of runs) {
      expect([args.join(' '), r.status, r.stderr]).toEqual([args.join(' '), 2, `${line}\nsee: gtx ${cmd ? `${cmd} ` : ''}--help\n`]);
    }
  });
});
