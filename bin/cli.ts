import { UsageError } from './args.ts';

const USAGE = `gtx — GridTokenX command line

  gtx demo [--data DIR] [--homes N] [--speed N] [--mqtt-port N] [--fresh]
        settlement + embedded broker + simulated homes with gateways (what npm start runs)
  gtx simulate --model sdm120|sdm630 --profile household|pv|prosumer [--port N] ...
        serve a simulated meter over Modbus TCP
  gtx settlement run [--config FILE]
  gtx settlement enroll-code --owner ACCOUNT [--market ID] [--ttl-hours N] [--config FILE]
  gtx settlement mosquitto-acl --out DIR [--port N] [--workers N]
  gtx settlement revoke-gateway --id ID [--config FILE]
  gtx settlement api-key create --role admin|utility [--label TEXT] | list | revoke --id ID  [--config FILE]
  gtx gateway init --id ID [--data-dir DIR] [--write-config FILE]
  gtx gateway enroll --config FILE --url SETTLEMENT_HTTP_URL --code CODE
  gtx gateway run --config FILE
  gtx gateway status --config FILE
  gtx gateway requeue --config FILE [--reason R]
  gtx audit meters [--config FILE]
  gtx audit export --meter ID --out DIR [--config FILE]
  gtx audit verify --meter ID [--from ISO] [--to ISO] [--json] [--config FILE]

  Run a command with --help for its options. Logs are JSON on stderr (GTX_LOG_LEVEL=debug|info|warn).`;

const commands: Record<string, () => Promise<{ run(argv: string[]): Promise<void> }>> = {
  demo: () => import('./commands/demo.ts'),
  simulate: async () => ({ run: (await import('../devices/simulate-cli.ts')).runSimulate }),
  settlement: () => import('./commands/settlement.ts'),
  gateway: () => import('./commands/gateway.ts'),
  audit: () => import('./commands/audit.ts'),
};

async function main(argv: string[]): Promise<void> {
  const [name, ...rest] = argv;
  if (!name || name === '--help' || name === '-h' || name === 'help') {
    console.log(USAGE);
    return;
  }
  const load = commands[name];
  if (!load) throw new UsageError(`unknown command "${name}"`, USAGE);
  await (await load()).run(rest);
}

main(process.argv.slice(2)).catch((e: unknown) => {
  if (e instanceof UsageError) {
    console.error(`gtx: ${e.message}\n\n${e.usage}`);
    process.exitCode = 2;
  } else if (e instanceof Error && ['ConfigError', 'GatewayConfigError', 'UnknownDeviceError'].includes(e.name)) {
    console.error(`gtx: ${e.message}`);
    process.exitCode = 2;
  } else {
    console.error(`gtx: ${e instanceof Error ? e.message : String(e)}`);
    if (process.env.GTX_DEBUG) console.error(e);
    process.exitCode = 1;
  }
});
