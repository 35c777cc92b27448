import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { gtxSync } from '../support/cli.ts';

/** Runs the real CLI (`node bin/gtx.js …`) and returns its exit code and output. */
export const gtx = (args: string[]) => gtxSync(args);

/**
 * A gateway config file for one simulated sdm120 meter with fast polling, so the CLI
 * (`gtx gateway status|requeue --config`) and an in-process gateway share one outbox.
 */
export function writeGatewayToml(dir: string, o: { id: string; meter: string; meterPort: number; url?: string; ackTimeoutS?: number }): string {
  const file = join(dir, `${o.id}.toml`);
  writeFileSync(
    file,
    `[gateway]
id = "${o.id}"
data_dir = "${o.id}-data"
poll_interval_s = 0.1
batch_max_readings = 4
batch_max_age_s = 0.3

[mqtt]
${o.url ? `url = "${o.url}"` : '# url unset: the enrolled broker'}
ack_timeout_s = ${o.ackTimeoutS ?? 2}
max_in_flight = 8

[[meters]]
id = "${o.meter}"
model = "sdm120"
host = "127.0.0.1"
port = ${o.meterPort}
role = "bidirectional"
energy_source = "Solar"
`,
  );
  return file;
}
