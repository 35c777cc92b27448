import { closest } from '../protocol/config-keys.ts';
import { failureLines, HelpRequested, UsageError } from './args.ts';

const USAGE = `gtx — GridTokenX command line

  gtx demo [--data DIR] [--homes N] [--speed N] [--mqtt-port N] [--http-port N] [--fresh] [--duration S]
        settlement + embedded broker + simulated homes with gateways (what npm start runs)
  gtx simulate --model MODEL --profile household|pv|prosumer [--port N] ...   (gtx simulate --list: the catalog)
        serve a simulated meter over Modbus TCP
  gtx settlement run [--config FILE] [--data DIR] [--mqtt-listen HOST:PORT] [--http-listen HOST:PORT]
  gtx settlement enroll-code --owner ACCOUNT [--market ID] [--ttl-hours N] [--config FILE] [--data DIR]
  gtx settlement revoke-gateway --id ID [--config FILE] [--data DIR]
  gtx settlement api-key create --role admin|utility [--label TEXT] | list | revoke --id ID  [--config FILE] [--data DIR]
  gtx settlement mosquitto-acl --out DIR [--port N] [--workers N]
  gtx gateway init [--id ID] [--config FILE] [--data-dir DIR] [--reuse-key]      (then, from that folder:)
  gtx gateway scan (--serial PATH [--baud N] [--parity P] | --tcp HOST[:PORT]) [--units 1-247] [--yes] [--config FILE]
  gtx gateway enroll --url SETTLEMENT_HTTP_URL --code CODE [--config FILE]
  gtx gateway test [--no-publish] [--config FILE]
  gtx gateway run [--config FILE]
  gtx gateway status [--config FILE]
  gtx gateway requeue [--config FILE] [--reason R]
  gtx market price --supply WH --demand WH [--config FILE]
  gtx market clear --book FILE|-
  gtx market deposit|withdraw --account ID --amount DECIMAL [--currency C] | balances | auction --market ID | check
  gtx audit meters [--config FILE]
  gtx audit export --meter ID --out DIR [--config FILE]
  gtx audit verify --meter ID [--from ISO] [--to ISO] [--json] [--config FILE]

  Every command answers --help with its options. Bad input: one line saying what to change,
  then "see: gtx COMMAND --help", exit code 2. Logs are JSON on stderr (GTX_LOG_LEVEL=debug|info|warn).`;

const commands: Record<string, () => Promise<{ run(argv: string[]): Promise<void> }>> = {
  demo: () => import('./commands/demo.ts'),
  simulate: async () => ({ run: (await import('../devices/simulate-cli.ts')).runSimulate }),
  settlement: () => import('./commands/settlement.ts'),
  gateway: () => import('./commands/gateway.ts'),
  audit: () => import('./commands/audit.ts'),
  market: () => import('./commands/market.ts'),
};

async function main(argv: string[]): Promise<void> {
  const [name, ...rest] = argv;
  if (!name || name === '--help' || name === '-h' || name === 'help') {
    console.log(USAGE);
    return;
  }
  const load = Object.hasOwn(commands, name) ? commands[name] : undefined;
  if (!load) {
    const guess = closest(name, Object.keys(commands));
    throw new UsageError(`unknown command "${name}"; ${guess ? `did you mean ${guess}?` : `one of ${Object.keys(commands).join(', ')}`}`, '');
  }
  await (await load()).run(rest);
}

main(process.argv.slice(2)).catch((e: unknown) => {
  if (e instanceof HelpRequested) {
    console.log(e.usage);
    return;
  }
  const { lines, exitCode } = failureLines(e);
  for (const line of lines) process.stderr.write(`${line}\n`);
  process.exitCode = exitCode;
});
